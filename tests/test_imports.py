"""Every module of the package imports in the environment the README's install makes.

An import of a package that ``pyproject.toml`` does not declare fails here, not at a user's (it
happened: ``orjson`` was imported, never declared, and present only by chance). A module that
needs an optional extra may skip, only when a package of that extra is absent, naming the extra.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import collapselab

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, str]:
    """Import name -> the extra that declares it, for packages only extras declare."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_import_name(s) for s in project["dependencies"]}
    out: dict[str, str] = {}
    for extra, specs in project["optional-dependencies"].items():
        if extra in ("test", "bench"):
            continue
        for spec in specs:
            name = _import_name(spec)
            if name not in core:
                out.setdefault(name, extra)
    return out


def _import_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", spec.strip(), maxsplit=1)[0].replace("-", "_").lower()


EXTRAS = _extras()
MODULES = sorted(m.name for m in pkgutil.walk_packages(collapselab.__path__, "collapselab.")
                 if not m.name.endswith("__main__"))


def test_the_extras_are_read_from_pyproject():
    assert EXTRAS.get("torch") == "neural" and EXTRAS.get("gguf") == "smollm2"
    assert "numpy" not in EXTRAS and "orjson" not in EXTRAS  # core dependencies never skip
    assert "collapselab.cli" in MODULES and "collapselab.pipeline.io" in MODULES and len(MODULES) > 60


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in EXTRAS:
            pytest.skip(f"{name} needs {top}, from the [{EXTRAS[top]}] extra, which is not installed")
        raise  # a core module importing an undeclared package: declare it in pyproject.toml


def test_the_lean_core_does_not_load_torch():
    """The CLI and the data-team commands (scan, filter, mix, vault, ledger) start without PyTorch."""
    code = ("import sys, collapselab, collapselab.cli, collapselab.api, collapselab.pipeline.scan, "
            "collapselab.pipeline.filter, collapselab.pipeline.mix, collapselab.provenance.vault, "
            "collapselab.provenance.ledger, collapselab.provenance.credentials, collapselab.models; "
            "from collapselab.models import make_model; make_model('ngram', {}, vocab=list(range(10))); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
