"""Issue 16's layout holds: the loop's modules import one way, the config parses the policies
once, the run command's options come from the config's fields, and sampling with a watermark is
part of the family protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import collapselab
from collapselab.cli import app
from collapselab.cli.options import MODEL_FLAGS, config_values
from collapselab.config import ExperimentConfig, make_config
from collapselab.errors import UserError
from collapselab.loop.types import Origin

LOOP = Path(collapselab.__file__).parent / "loop"


def _loop_imports(path: Path) -> tuple[set[str], list[str]]:
    """(loop modules imported at the top, loop modules imported inside functions)."""
    tree = ast.parse(path.read_text())
    top, inner = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("collapselab.loop"):
            name = node.module.split(".")[2] if node.module.count(".") >= 2 else None
            (top.add(name) if node in tree.body else inner.append(name))
    return top, inner


def test_the_loop_imports_one_way_and_hides_no_circle():
    graph = {}
    for path in LOOP.glob("*.py"):
        top, inner = _loop_imports(path)
        assert not inner, f"{path.name} imports {inner} inside a function"
        graph[path.stem] = top - {None}
    seen, done = set(), set()

    def visit(m, stack):
        assert m not in stack, f"import circle: {' -> '.join(stack + [m])}"
        if m in done:
            return
        for n in graph.get(m, ()):
            visit(n, stack + [m])
        done.add(m)

    for m in graph:
        visit(m, [])
    assert "spec" not in set().union(*(graph[m] for m in graph if m != "policies"))  # only the config (and the old name) parse


def test_the_config_parses_its_policies_once():
    cfg = make_config({"policies": ["anchor", "web:0.2-0.8+filter:likelihood"], "generations": 3, "train_items": 100})
    assert [p.name for p in cfg.parsed_policies] == cfg.policies == ["anchor:0.1", "web:0.2-0.8+filter:likelihood:0.01"]
    assert cfg.model_copy(update={"train_items": 50}).parsed_policies == cfg.parsed_policies
    assert make_config({"policies": ["fresh:0.2"], "generations": 3, "samples": 10}).human_pool_needed() == 6
    assert [int(o) for o in Origin] == [-1, -2, -3]


def test_run_help_lists_every_setting_with_help():
    out = CliRunner().invoke(app, ["run", "--help"], terminal_width=400, env={"COLUMNS": "400"}).output
    names = {"policies": "--policy", "vault_snapshot": "--snapshot", "resample_data": "--resample-data", "tree": "--tree"}
    for field in [f for f in ExperimentConfig.model_fields if f != "model"] + list(MODEL_FLAGS):
        flag = names.get(field, "--" + field.replace("_", "-"))
        line = next((l for l in out.splitlines() if f" {flag} " in l or f" {flag}," in l), None)
        assert line is not None, f"{flag} missing from run --help"
        assert len(line.split(flag, 1)[1].strip()) > 20, f"{flag} has no help"


def test_options_become_config_settings():
    given = {k: None for k in ExperimentConfig.model_fields if k != "model"} | {k: None for k in MODEL_FLAGS}
    given |= {"seeds": "0-2,5", "policies": ["replace,anchor:0.2", "fresh"], "order": 2, "vault": Path("v"), "facts": False}
    values = config_values(given)
    assert values == {"seeds": [0, 1, 2, 5], "policies": ["replace", "anchor:0.2", "fresh"], "model": {"order": 2},
                      "vault": "v", "facts": False}


def test_a_family_that_cannot_watermark_says_so():
    from collapselab.models import GaussianModel
    from collapselab.models.base import sample

    model = GaussianModel().fit(np.zeros((5, 1)) + np.arange(5)[:, None], rng=np.random.default_rng(0))
    assert sample(model, 3, rng=np.random.default_rng(0)).shape == (3, 1)
    with pytest.raises(UserError, match="cannot sample with a watermark"):
        sample(model, 3, rng=np.random.default_rng(0), watermark=object())
