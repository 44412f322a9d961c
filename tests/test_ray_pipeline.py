"""scan, filter and mix on Ray write the same bytes as on the local backend (issue 14 item 3).

Every command of tests/test_steps_identity.py (scan: watermark with --tpr-from, length,
perplexity; filter: --scores with --threshold and --fpr, one-pass --detector length on plain and
gzip JSONL; mix), over a plain JSONL file cut into several shards, a .jsonl.gz and a Parquet file,
runs once on the local backend with one process and once on a local Ray with two workers; every
output file and manifest must be the same (and the same as the recorded baseline).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import collapselab.pipeline as pipeline  # noqa: E402
from collapselab.backends import RayBackend, make_backend  # noqa: E402
from collapselab.errors import UserError  # noqa: E402

STEPS = ("scan_corpus", "filter_corpus", "mix_corpus")
pytestmark = pytest.mark.skipif(
    not all("backend" in inspect.signature(getattr(pipeline, f)).parameters for f in STEPS),
    reason="scan_corpus/filter_corpus/mix_corpus take no backend= yet")


def test_the_cli_runs_scan_on_its_own_ray(tmp_path):
    """First in the module: before the module's Ray starts (the command starts and stops its own)."""
    from conftest import cli
    from test_steps_identity import make_inputs

    f = make_inputs(tmp_path)
    args = ["scan", f["gz"], f["parquet"], "--detector", "length", "--jobs", "2"]
    a = cli([*args, "--out", "local.parquet"], cwd=tmp_path)
    b = cli([*args, "--out", "ray.parquet", "--backend", "ray"], cwd=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert os.path.getsize(tmp_path / "ray.parquet") > 0


@pytest.fixture(scope="module")
def ray_backend():
    """One local Ray for the module (two CPUs); the pipeline's backends join it."""
    assert not ray.is_initialized()
    with make_backend("ray", jobs=2) as backend:
        yield backend


def on(monkeypatch, backend: str, jobs: int) -> None:
    """Make every pipeline step run on ``backend`` with ``jobs`` workers, whatever its caller asks."""
    for name in STEPS:
        step = getattr(pipeline, name)

        def wrapped(*args, _step=step, **kw):
            return _step(*args, **{**kw, "backend": backend, "jobs": jobs})

        monkeypatch.setattr(pipeline, name, wrapped)


def run_in(folder: Path, monkeypatch, backend: str, jobs: int) -> dict:
    from test_steps_identity import hashes, run_all

    folder.mkdir()
    with monkeypatch.context() as m:
        m.chdir(folder)
        on(m, backend, jobs)
        run_all(folder)
    return hashes(folder)


def test_every_output_is_the_same_on_ray(ray_backend, tmp_path, monkeypatch):
    from test_steps_identity import BASELINE, compare

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    local = run_in(tmp_path / "local", monkeypatch, "local", 1)
    ran = []  # the Ray tasks, counted: the steps really ran there
    real_map = RayBackend.map
    monkeypatch.setattr(RayBackend, "map", lambda self, fn, tasks, on_done=None: ran.extend(tasks) or real_map(self, fn, tasks, on_done))
    on_ray = run_in(tmp_path / "ray", monkeypatch, "ray", 2)
    assert len(ran) >= 20  # shards of scan, filter and mix's counting pass
    assert on_ray == local
    assert compare(json.loads(BASELINE.read_text()), on_ray) == []
    assert ray.is_initialized()  # the steps joined the module's Ray and left it running


def test_a_bad_line_is_the_same_user_error_on_ray(ray_backend, tmp_path, monkeypatch):
    from test_steps_identity import make_inputs

    monkeypatch.chdir(tmp_path)
    f = make_inputs(tmp_path)
    errors = []
    for backend, jobs in (("local", 1), ("ray", 2)):
        with pytest.raises(UserError) as e:
            pipeline.scan_corpus([f["jsonl"]], detector="length", out=f"{backend}.parquet", shard_bytes=16 << 10,
                                 backend=backend, jobs=jobs)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "web.jsonl" in errors[0]
    assert not any(p.name.startswith("ray.parquet") and p.suffix == ".parquet" for p in tmp_path.iterdir())
