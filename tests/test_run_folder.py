"""The run folder: what a run leaves, determinism, resume after a kill, and ``collapselab report``.

One serial API run (``reference``) is the yardstick: the CLI run (default jobs, parallel worker
processes, another interpreter), a repeated run, a resumed run and a run killed outright must all
end with exactly its numbers.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import collapselab as cl
from collapselab.runfolder import slug
from conftest import KEY_COLUMNS, assert_same_metrics, cli

POLICIES = ["replace", "fresh:0.1"]
G = 3
N = 200


def config(corpus: Path, **kw) -> dict:
    return {"corpus": str(corpus), "train_items": N, "generations": G, "policies": list(POLICIES), "seeds": [0], **kw}


def all_keys(policies=POLICIES, seeds=(0,), generations=G) -> set:
    return {(p, s, g) for p in policies for s in seeds for g in range(generations + 1)}


def keys(metrics: pd.DataFrame) -> list:
    return [(r.policy, int(r.seed), int(r.generation)) for r in metrics[KEY_COLUMNS].itertuples()]


def sample_tokens(run_path: Path, policy: str, seed: int, g: int) -> list:
    path = run_path / "samples" / slug(policy) / f"seed{seed}" / f"gen{g:02d}.parquet"
    return pq.read_table(path, columns=["tokens"]).column("tokens").to_pylist()


def assert_same_samples(a: Path, b: Path, policies=POLICIES) -> None:
    for p in policies:
        for g in range(G + 1):
            assert sample_tokens(a, p, 0, g) == sample_tokens(b, p, 0, g), (p, g)


def is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class StopAfter:
    """An ``on_event`` that raises KeyboardInterrupt (Ctrl-C) after the k-th 'generation' event."""

    def __init__(self, k: int):
        self.k, self.n, self.events = k, 0, []

    def __call__(self, e) -> None:
        self.events.append(e)
        if e.kind == "generation":
            self.n += 1
            if self.n == self.k:
                raise KeyboardInterrupt


def interrupted_run(corpus: Path, out: Path, k: int, jobs) -> pd.DataFrame:
    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(config(corpus), out=out, jobs=jobs, on_event=StopAfter(k))
    assert (out / "config.yaml").exists()
    assert not (out / "summary.json").exists(), "an interrupted run must not look finished"
    assert not cl.load_run(out).complete
    return pd.read_parquet(out / "metrics.parquet")


def resume(out: Path, jobs) -> tuple[cl.Run, list]:
    events = []
    run = cl.run_experiment(out=out, resume=True, jobs=jobs, on_event=events.append)
    return run, events


def chain_steps(events) -> set:
    return {(e.policy, e.seed, e.generation) for e in events if e.kind == "generation" and e.policy != "all"}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def reference(shared_text_folder, tmp_path_factory) -> cl.Run:
    out = tmp_path_factory.mktemp("reference") / "run"
    return cl.run_experiment(config(shared_text_folder), out=out, jobs=1)


@pytest.fixture(scope="module")
def cli_run(shared_text_folder, tmp_path_factory):
    """``collapselab run`` in a subprocess with the reference's settings, default --jobs."""
    cwd = tmp_path_factory.mktemp("cli_run")
    proc = cli(
        ["run", "--corpus", shared_text_folder, "--train-items", N, "-g", G, "-p", ",".join(POLICIES), "--seeds", "0", "--out", "out"],
        cwd=cwd,
    )
    return cwd, proc


# ------------------------------------------------------------------ a CLI run, end to end
def test_cli_run_prints_table_and_folder(cli_run):
    cwd, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    titles = [ln.strip() for ln in out.splitlines() if ln.startswith("policy: ")]
    assert titles == [f"policy: {p}" for p in POLICIES], out  # one block per policy, in the run's order
    assert "Generation" in out and "Output diversity" in out
    run_line = [ln for ln in out.splitlines() if ln.startswith("Run folder:")]
    assert len(run_line) == 1 and "out" in run_line[0].split()[2]


def test_cli_run_folder_layout(cli_run, shared_text_folder):
    cwd, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = cwd / "out"

    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["generations"] == G and cfg["policies"] == POLICIES and cfg["train_items"] == N
    assert cfg["corpus"] == str(shared_text_folder) and cfg["family"] == "ngram"
    assert cfg["model"]["order"] == 3  # resolved, not just what was typed

    m = pd.read_parquet(run / "metrics.parquet")
    assert list(m.columns[:3]) == KEY_COLUMNS
    assert {"family", "synthetic_share", "vocab_size", "ppl_holdout", "tail_retention"} <= set(m.columns)
    assert sorted(keys(m)) == sorted(all_keys())  # one row per (policy, seed, generation), no repeats
    share = m.set_index(["policy", "generation"])["synthetic_share"]
    assert share[("replace", 0)] == 0 and share[("fresh:0.1", 0)] == 0
    assert all(share[("replace", g)] == 1.0 for g in range(1, G + 1))
    assert all(share[("fresh:0.1", g)] == pytest.approx(0.9) for g in range(1, G + 1))

    for p in POLICIES:
        for g in range(G + 1):
            f = run / "samples" / slug(p) / "seed0" / f"gen{g:02d}.parquet"
            t = pq.read_table(f)
            assert {"text", "tokens", "ppl_under_gen0"} <= set(t.column_names)
            assert t.num_rows == N  # each generation writes as many items as generation 0 learnt from
            assert all(isinstance(s, str) and s for s in t.column("text").to_pylist()[:20])
    # generation 0 is shared by all policies
    assert sample_tokens(run, "replace", 0, 0) == sample_tokens(run, "fresh:0.1", 0, 0)
    assert sample_tokens(run, "replace", 0, 1) != sample_tokens(run, "fresh:0.1", 0, 1)

    vocab = (run / "vocab.txt").read_text(encoding="utf-8").split()
    assert "nation" in vocab and "zephyr" in vocab

    pngs = sorted((run / "plots").glob("*.png"))
    assert len(pngs) >= 5 and all(is_png(p) for p in pngs)

    s = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert s["status"] == "complete" and s["family"] == "ngram"
    assert s["corpus"]["train_items"] == N
    assert set(s["final"]) == set(POLICIES)
    assert s["final"]["replace"]["vocab_size"] == pytest.approx(m.query("policy == 'replace' and generation == @G")["vocab_size"].item())


def test_cli_run_matches_api_run(cli_run, reference):
    """Another interpreter, parallel workers (default --jobs) and the CLI: the same numbers and samples."""
    cwd, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_metrics(pd.read_parquet(cwd / "out" / "metrics.parquet"), reference.metrics)
    assert_same_samples(cwd / "out", reference.path)


def test_report_reprints_table_and_redraws_plots(cli_run):
    cwd, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = cwd / "out"
    names = sorted(p.name for p in (run / "plots").glob("*.png"))
    summary = (run / "summary.json").read_bytes()
    metrics = (run / "metrics.parquet").read_bytes()
    shutil.rmtree(run / "plots")

    rep = cli(["report", "out"], cwd=cwd)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "Traceback" not in rep.stderr
    # the same table, character for character
    assert rep.stdout.split("\nPlots:")[0] == proc.stdout.split("\nRun folder:")[0]
    assert sorted(p.name for p in (run / "plots").glob("*.png")) == names
    assert all(is_png(run / "plots" / n) for n in names)
    # report reads the folder; it does not rewrite the results
    assert (run / "summary.json").read_bytes() == summary
    assert (run / "metrics.parquet").read_bytes() == metrics


# ------------------------------------------------------------------ determinism
def test_same_config_and_seed_gives_identical_run(reference, shared_text_folder, tmp_path):
    again = cl.run_experiment(config(shared_text_folder), out=tmp_path / "again", jobs=1)
    assert_same_metrics(again.metrics, reference.metrics)
    assert_same_samples(again.path, reference.path)


def test_other_seeds_and_policies_leave_a_chain_alone_and_a_new_seed_differs(reference, shared_text_folder, tmp_path):
    """Each (seed, policy) chain has its own random streams: dropping a policy and adding a seed
    leave seed 0's 'replace' numbers as they were, while seed 1 draws different numbers."""
    run = cl.run_experiment(config(shared_text_folder, policies=["replace"], seeds=[0, 1]), out=tmp_path / "r", jobs=1)
    m, ref = run.metrics, reference.metrics
    assert_same_metrics(m[m["seed"] == 0].reset_index(drop=True), ref[ref["policy"] == "replace"].reset_index(drop=True))
    a = m[m["seed"] == 0].set_index("generation").sort_index()
    b = m[m["seed"] == 1].set_index("generation").sort_index()
    assert a.index.equals(b.index) and list(a.index) == list(range(G + 1))
    # every generation's samples differ, so does their perplexity under generation 0
    assert (a["ppl_under_gen0"] != b["ppl_under_gen0"]).all()
    assert (a["ppl_holdout"].iloc[1:] != b["ppl_holdout"].iloc[1:]).all()
    assert sample_tokens(run.path, "replace", 0, 0) != sample_tokens(run.path, "replace", 1, 0)


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("jobs", [1, None], ids=["jobs1", "default-jobs"])
def test_interrupted_run_resumes_to_identical_numbers(reference, shared_text_folder, tmp_path, jobs):
    out = tmp_path / "run"
    # 'generation' events: 1 = generation 0 (shared), then one per (policy, generation)
    partial = interrupted_run(shared_text_folder, out, k=3, jobs=jobs)
    assert len(partial) == len(POLICIES) + 2  # generation 0 of each policy + the two finished steps
    assert set(keys(partial)) >= {(p, 0, 0) for p in POLICIES}
    assert not multiprocessing.active_children()  # no worker left running after Ctrl-C
    if jobs == 1:  # serial: chains run in the run's policy order
        assert set(keys(partial)) == {("replace", 0, 0), ("fresh:0.1", 0, 0), ("replace", 0, 1), ("replace", 0, 2)}
    done_before = set(keys(partial))

    run, events = resume(out, jobs)
    start = [e for e in events if e.kind == "start"]
    assert len(start) == 1 and start[0].generation == len(partial)
    # it continued from the last finished generation: only the missing steps were computed
    assert chain_steps(events) == all_keys() - done_before
    assert run.complete and json.loads((out / "summary.json").read_text())["status"] == "complete"
    assert_same_metrics(run.metrics, reference.metrics)
    assert_same_samples(out, reference.path)


def test_resume_via_cli(reference, shared_text_folder, tmp_path):
    out = tmp_path / "run"
    partial = interrupted_run(shared_text_folder, out, k=5, jobs=1)  # gen 0, replace 1-3, fresh 1
    assert len(partial) == len(POLICIES) + 4

    proc = cli(["run", "--resume", "--out", "run", "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ignored" not in proc.stderr
    titles = [ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("policy: ")]
    assert titles == [f"policy: {p}" for p in POLICIES] and "Run folder: run" in proc.stdout
    assert (out / "summary.json").exists()
    assert_same_metrics(pd.read_parquet(out / "metrics.parquet"), reference.metrics)
    assert_same_samples(out, reference.path)


def test_report_of_unfinished_run(shared_text_folder, tmp_path, run_main):
    out = tmp_path / "run"
    interrupted_run(shared_text_folder, out, k=5, jobs=1)  # replace reached generation 3, fresh only 1
    status, stdout, stderr = run_main(["report", "run"], tmp_path)
    assert status == 0, stderr
    assert "unfinished" in stderr and "--resume" in stderr
    titles = [ln.strip() for ln in stdout.splitlines() if ln.startswith("policy: ")]
    assert titles == [f"policy: {p}" for p in POLICIES]
    assert list((out / "plots").glob("*.png"))
    assert not (out / "summary.json").exists()  # showing a partial run does not finish it


def test_report_of_run_without_finished_generation(shared_text_folder, tmp_path, run_main):
    out = tmp_path / "run"
    def stop_at_start(e):  # Ctrl-C before generation 0 is written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(config(shared_text_folder), out=out, jobs=1, on_event=stop_at_start)
    assert (out / "config.yaml").exists() and not (out / "metrics.parquet").exists()
    status, stdout, stderr = run_main(["report", "run"], tmp_path)
    assert status == 2 and "no finished generation" in stderr and "--resume" in stderr


KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import collapselab as cl

    if __name__ == "__main__":
        cfg, out, k = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        n = 0

        def on_event(e):
            global n
            if e.kind == "generation":
                n += 1
                if n == k:
                    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally, no atexit

        cl.run_experiment(cfg, out=out, jobs=1, on_event=on_event)
    """
)


def test_killed_run_resumes_to_identical_numbers(reference, shared_text_folder, tmp_path):
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(config(shared_text_folder)), str(out), "4"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not (out / "summary.json").exists()
    partial = pd.read_parquet(out / "metrics.parquet")
    assert len(partial) == len(POLICIES) + 3
    assert not list(out.rglob("*.tmp"))  # only whole files

    run, events = resume(out, jobs=1)
    assert chain_steps(events) == all_keys() - set(keys(partial))
    assert_same_metrics(run.metrics, reference.metrics)
    assert_same_samples(out, reference.path)
    # the provenance ledger survived the SIGKILL: valid, and no entry twice
    from collapselab.provenance.ledger import Ledger, verify

    assert verify(out / "ledger.sqlite").ok
    with Ledger(out / "ledger.sqlite", create=False) as a, Ledger(reference.path / "ledger.sqlite", create=False) as b:
        assert len(a) == len(b)
        assert sorted(d.content_hash for d in a.documents()) == sorted(d.content_hash for d in b.documents())


def test_cannot_start_a_new_run_over_a_finished_one(reference, shared_text_folder):
    before = (reference.path / "metrics.parquet").read_bytes()
    with pytest.raises(cl.UserError, match="not empty"):
        cl.run_experiment(config(shared_text_folder), out=reference.path, jobs=1)
    assert (reference.path / "metrics.parquet").read_bytes() == before


def test_load_run_reads_the_folder_back(reference):
    r = cl.load_run(reference.path)
    assert r.complete and r.config.policies == POLICIES and r.config.generations == G
    assert sorted(keys(r.metrics)) == sorted(all_keys())
    blocks = r.table()
    assert [b.policy for b in blocks] == POLICIES
    assert [row[0] for row in blocks[0].rows] == list(range(G + 1))
    assert blocks[0].rows[0][1] == pytest.approx(1.0)  # diversity relative to generation 0


# ------------------------------------------------------------------ theory families
@pytest.mark.parametrize(
    "family,extra,jobs",
    [
        ("gaussian", ["--train-items", "100", "--estimator", "unbiased", "--bias", "0.9"], "1"),
        ("gmm", ["--train-items", "200"], None),  # default jobs: worker processes
    ],
)
def test_theory_family_end_to_end(tmp_path, family, extra, jobs):
    policies = ["replace", "accumulate", "anchor:0.2"]
    args = ["run", "--family", family, "-g", "2", "-p", ",".join(policies), *extra, "--out", "out", "-q"]
    if jobs:
        args += ["--jobs", jobs]
    proc = cli(args, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("policy: ") == len(policies)
    run = tmp_path / "out"
    m = pd.read_parquet(run / "metrics.parquet")
    assert sorted(keys(m)) == sorted(all_keys(policies, generations=2))
    assert {"variance_ratio", "mean_error", "w2", "nll_holdout"} <= set(m.columns)
    assert (m["family"] == family).all()
    gen0 = m[m["generation"] == 0]
    assert gen0["variance_ratio"].nunique() == 1  # generation 0 is shared
    assert np.isfinite(m.select_dtypes("number").to_numpy()).all()
    n = int(extra[1])
    for p in policies:
        for g in range(3):
            x = np.load(run / "samples" / slug(p) / "seed0" / f"gen{g:02d}.npy")
            assert x.shape == (n, 1)
    assert all(is_png(p) for p in (run / "plots").glob("*.png")) and list((run / "plots").glob("*.png"))
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "complete" and s["family"] == family
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if family == "gaussian":
        assert cfg["model"] == {"estimator": "unbiased", "bias": 0.9}
