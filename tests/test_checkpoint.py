"""Checkpoints of theory-family runs (thousands of cheap chains): metrics.parquet is rewritten at most
once a second, the ledger written just before it, samples synced with it; a killed run still resumes
to the same numbers, and every row on disk has its provenance entries."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd

import collapselab as cl
from collapselab.runfolder import RunFolder
from test_run_folder import KILL_SCRIPT, keys

CFG = {"family": "gaussian", "corpus": "normal", "train_items": 50, "generations": 4, "policies": ["replace", "accumulate"],
       "seeds": list(range(12))}


def test_rows_are_held_back_until_the_interval_passes_and_the_hook_runs_first(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path, checkpoint_every=3600.0)
    calls = []
    folder.before_checkpoint = lambda: calls.append(folder.metrics_path.exists())
    rows = [{"policy": "replace", "seed": 0, "generation": 0, "x": 1.0}]
    folder.write_metrics(rows)  # the first is written at once
    assert calls == [False] and len(pd.read_parquet(folder.metrics_path)) == 1
    rows.append({"policy": "replace", "seed": 0, "generation": 1, "x": 2.0})
    folder.write_metrics(rows)
    assert len(pd.read_parquet(folder.metrics_path)) == 1 and calls == [False]  # held back
    folder.flush_metrics()
    assert len(pd.read_parquet(folder.metrics_path)) == 2 and calls == [False, True]
    folder.flush_metrics()  # nothing held back: no rewrite
    assert calls == [False, True]
    # a worker process gets the paths and the interval, not the parent's hook or rows
    clone = pickle.loads(pickle.dumps(folder))
    assert clone.before_checkpoint is None and clone.checkpoint_every == 3600.0 and clone.path == folder.path

    every = RunFolder(tmp_path / "b")  # the default: every call writes
    every.path.mkdir()
    for i in range(3):
        every.write_metrics(rows[: i % 2 + 1])
        assert len(pd.read_parquet(every.metrics_path)) == i % 2 + 1


def test_a_killed_gaussian_run_resumes_to_the_same_numbers_with_provenance_for_every_row(tmp_path):
    from collapselab.loop.provenance import model_id
    from collapselab.provenance.ledger import Ledger, verify

    reference = cl.run_experiment(CFG, out=tmp_path / "ref", jobs=1)
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    out = tmp_path / "run"
    steps = len(CFG["seeds"]) * (1 + len(CFG["policies"]) * CFG["generations"])
    proc = subprocess.run([sys.executable, str(script), json.dumps(CFG), str(out), str(steps // 2)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not list(out.rglob("*.tmp"))
    partial = pd.read_parquet(out / "metrics.parquet")
    assert 0 < len(partial) < len(reference.metrics)
    with Ledger(out / "ledger.sqlite", create=False) as ledger:  # provenance first: every row on disk has its entries
        models = {m.model_id for m in ledger.models()}
    assert {model_id(p, s, g) for p, s, g in keys(partial)} <= models
    run = cl.run_experiment(out=out, resume=True, jobs=2)
    a = run.metrics.sort_values(["policy", "seed", "generation"]).reset_index(drop=True)
    b = reference.metrics.sort_values(["policy", "seed", "generation"]).reset_index(drop=True)
    num = a.select_dtypes("number").columns
    assert sorted(keys(a)) == sorted(keys(b))
    np.testing.assert_array_equal(a[num].to_numpy(), b[num].to_numpy())  # to the bit
    assert verify(out / "ledger.sqlite").ok
    with Ledger(out / "ledger.sqlite", create=False) as x, Ledger(tmp_path / "ref" / "ledger.sqlite", create=False) as y:
        assert len(x) == len(y)


def test_title_names_many_seeds_as_ranges():
    from collapselab.api import seed_ranges

    assert seed_ranges(range(4000)) == "0-3999"
    assert seed_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert seed_ranges([1, 3, 5, 7, 9, 11]) == "1, 3, 5, 7, …"
