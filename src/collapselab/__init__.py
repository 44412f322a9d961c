"""Collapse Lab: make AI model collapse happen on purpose, measure it, and prove which defences stop it.

The public names below are imported on first use (PEP 562), so ``import collapselab.pipeline``
in a pipeline worker does not pay for the loop's libraries (pandas, SQLAlchemy, torch).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_WHERE = {
    "run_experiment": "collapselab.api",
    "load_run": "collapselab.api",
    "Run": "collapselab.api",
    "ExperimentConfig": "collapselab.config",
    "load_config": "collapselab.config",
    "UserError": "collapselab.errors",
    "run_sweep": "collapselab.loop.sweep",
    "Sweep": "collapselab.loop.sweep",
    "make_backend": "collapselab.backends",
}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'collapselab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
