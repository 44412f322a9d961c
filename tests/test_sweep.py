"""collapselab sweep: grid expansion, the merged metrics (a chain's rows are a plain run's), resuming
after a kill, and the same bytes on the local backend and on Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import cli, write_text_folder

from collapselab.api import run_experiment
from collapselab.errors import UserError
from collapselab.loop.sweep import apply_point, expand_grid, plan_sweep, run_sweep

CONFIG = {"family": "gaussian", "generations": 2, "seeds": [0, 1], "policies": ["replace", "accumulate"],
          "grid": {"train_items": [30, 60]}}
N_CHAINS = 2 * 2 * 2


def write_config(path: Path, config: dict = CONFIG) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The reference: CONFIG swept on the local backend, one process."""
    root = tmp_path_factory.mktemp("sweep")
    return run_sweep(write_config(root / "sweep.yaml"), root / "out", jobs=1)


# ------------------------------------------------------------------------------ the grid
def test_grid_expansion_and_settings():
    points = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert points == [{"a": a, "b": b} for a in (1, 2) for b in "xyz"]  # the first key varies slowest
    assert expand_grid({}) == [{}]
    base = {"family": "ngram", "model": {"order": 2}}
    assert apply_point(base, {"top_p": 0.9, "train_items": 200, "model.temperature": 0.7}) == {
        "family": "ngram", "model": {"order": 2, "top_p": 0.9, "temperature": 0.7}, "train_items": 200}
    assert base == {"family": "ngram", "model": {"order": 2}}  # not changed in place

    manifest, chains = plan_sweep({**CONFIG, "grid": {"train_items": [30, 60], "bias": [1.0, 0.9, 0.8]}}, "/tmp/x")
    assert len(manifest["points"]) == 6 and len(chains) == 6 * 2 * 2
    c = chains[7]  # point 1 (train_items 30, bias 0.9), policy accumulate, seed 1
    assert (c.point, c.values, c.policy, c.seed) == (1, {"train_items": 30, "bias": 0.9}, "accumulate", 1)
    assert c.config["seeds"] == [1] and c.config["policies"] == ["accumulate"] and c.config["model"] == {"bias": 0.9}
    assert c.folder == "/tmp/x/chains/point001/seed1/accumulate"


@pytest.mark.parametrize("grid, message", [
    ({"top_q": [1]}, r"sweep\.yaml, line 10: grid\.top_q: not a config setting nor a setting of the gaussian model"),
    ({"seeds": [1, 2]}, r"line 10: grid\.seeds: list them under seeds:"),
    ({"bias": []}, r"line 10: grid\.bias: give a non-empty list"),
    ({"bias": [0.5, 0.5]}, r"grid\.bias: a value is listed twice"),
    ({"bias": [[0.5]]}, r"grid\.bias: \[0\.5\] is not a number"),
    ({"bias": [0.5, 2.0]}, r"sweep\.yaml \(grid point bias=2\.0\): model\.bias: Input should be less than or equal to 1"),
])
def test_bad_configs_are_one_line_naming_file_line_and_field(tmp_path, grid, message):
    cfg = write_config(tmp_path / "sweep.yaml", {**CONFIG, "grid": grid})
    with pytest.raises(UserError, match=message):
        plan_sweep(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_tree_is_refused(tmp_path):
    with pytest.raises(UserError, match="tree: a sweep runs one chain per seed and policy"):
        plan_sweep({**CONFIG, "tree": True}, tmp_path)


def test_a_new_watermark_key_is_one_key_for_the_sweep(tmp_path):
    corpus = write_text_folder(tmp_path / "corpus")
    cfg = {"family": "ngram", "corpus": str(corpus), "generations": 1, "train_items": 100, "holdout_items": 20,
           "seeds": [0], "policies": ["replace"], "watermark_key": "new", "grid": {"top_p": [0.9, 1.0]}}
    out = run_sweep(cfg, tmp_path / "out", jobs=1).path
    assert (out / "watermark.key").stat().st_mode & 0o777 == 0o600
    ids = {json.loads((out / "chains" / c / "summary.json").read_text())["watermark"]["key_id"]
           for c in ("point000/seed0/replace", "point001/seed0/replace")}
    assert len(ids) == 1  # both chains marked with the sweep's one key


# -------------------------------------------------------------------------- merged metrics
def test_merged_metrics_carry_the_grid_and_equal_plain_runs(local_sweep, tmp_path):
    m = local_sweep.metrics
    assert list(m.columns[:5]) == ["point", "train_items", "policy", "seed", "generation"]
    assert len(m) == N_CHAINS * 3 and set(m["train_items"]) == {30, 60}
    s = local_sweep.summary
    assert (s["chains"], s["ran"], s["skipped"], s["points"]) == (N_CHAINS, N_CHAINS, 0, 2)
    assert {(r["train_items"], r["policy"]) for r in s["final"]} == {(t, p) for t in (30, 60) for p in ("replace", "accumulate")}
    # a point's rows are exactly what `collapselab run` gives with its settings, all seeds and policies in one run
    plain = run_experiment({k: v for k, v in CONFIG.items() if k != "grid"} | {"train_items": 60}, out=tmp_path / "run").metrics
    mine = m[m["train_items"] == 60].drop(columns=["point", "train_items"])
    key = ["policy", "seed", "generation"]
    pd.testing.assert_frame_equal(mine.sort_values(key).reset_index(drop=True), plain.sort_values(key).reset_index(drop=True))
    assert list((tmp_path / "run" / "plots").glob("*.png"))  # a plain run draws its plots
    assert list(local_sweep.path.glob("chains/*/*/*/metrics.parquet"))
    assert not list(local_sweep.path.glob("chains/**/*.png"))  # a sweep's chains do not (plots=False)
    row = s["final"][0]  # point 0, replace: generation 2's variance_ratio over generation 0's, mean over seeds
    rep = m[(m["point"] == 0) & (m["policy"] == "replace")].set_index(["seed", "generation"])["variance_ratio"]
    assert row["diversity_relative"] == pytest.approx(sum(rep[(s, 2)] / rep[(s, 0)] for s in (0, 1)) / 2)


def test_a_model_setting_in_the_grid(tmp_path):
    corpus = write_text_folder(tmp_path / "corpus")
    cfg = {"family": "ngram", "corpus": str(corpus), "generations": 1, "train_items": 150, "holdout_items": 50,
           "seeds": [0], "policies": ["replace"], "grid": {"top_p": [0.3, 1.0]}}
    m = run_sweep(cfg, tmp_path / "out", jobs=1).metrics
    chain = yaml.safe_load((tmp_path / "out/chains/point000/seed0/replace/config.yaml").read_text())
    assert chain["model"]["top_p"] == 0.3 and chain["seeds"] == [0]
    g1 = m[m["generation"] == 1].set_index("top_p")["vocab_size"]
    assert g1[0.3] < g1[1.0]  # nucleus sampling drops the tail: fewer distinct words


def test_a_failing_chain_names_itself_and_keeps_the_finished_ones(tmp_path):
    corpus = write_text_folder(tmp_path / "corpus")  # 400 sentences
    cfg = {"family": "ngram", "corpus": str(corpus), "generations": 3, "holdout_items": 20, "seeds": [0],
           "policies": ["fresh:0.9"], "grid": {"train_items": [40, 300]}}  # 300: too few unseen sentences left
    with pytest.raises(UserError, match=r"^chain point001/seed0/fresh_0\.9 \(seed 0, policy fresh:0\.9, train_items=300\): "
                                        r"policy fresh:0\.9: needs \d+ unseen human items"):
        run_sweep(cfg, tmp_path / "out", jobs=1)
    assert (tmp_path / "out/chains/point000/seed0/fresh_0.9/summary.json").exists()
    assert not (tmp_path / "out/summary.json").exists()


# ---------------------------------------------------------------------------------- resume
def test_resume_after_a_kill_gives_the_same_file(local_sweep, tmp_path):
    cfg = write_config(tmp_path / "sweep.yaml")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "collapselab.cli", "sweep", str(cfg), "--out", str(out), "--jobs", "1", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("chains/*/*/*/summary.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        # killed at once: a chain here takes ~0.05 s, so a pause (it had been 0.3 s) let all 8 finish on a quick machine
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = len(list(out.glob("chains/*/*/*/summary.json")))
    assert 1 <= finished < N_CHAINS and not (out / "summary.json").exists()
    r = cli(["sweep", cfg, "--out", out, "--json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["skipped"] >= finished and s["ran"] == N_CHAINS - s["skipped"]
    assert (out / "metrics.parquet").read_bytes() == (local_sweep.path / "metrics.parquet").read_bytes()


def test_resume_mid_chain(local_sweep, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_sweep.path, out)
    for p in (out / "summary.json", out / "metrics.parquet"):
        p.unlink()
    cut = out / "chains/point001/seed1/accumulate"  # killed after generation 1's checkpoint
    m = pd.read_parquet(cut / "metrics.parquet")
    m[m["generation"] <= 1].to_parquet(cut / "metrics.parquet", index=False)
    (cut / "summary.json").unlink()
    shutil.rmtree(out / "chains/point000/seed0/replace")  # never started
    early = out / "chains/point001/seed0/replace"  # killed before its first generation
    for p in early.iterdir():
        if p.name != "config.yaml":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    s = run_sweep(write_config(tmp_path / "sweep.yaml"), out, jobs=2).summary  # two worker processes
    assert (s["ran"], s["resumed"], s["skipped"]) == (3, 1, N_CHAINS - 3)
    assert (out / "metrics.parquet").read_bytes() == (local_sweep.path / "metrics.parquet").read_bytes()


def test_another_config_into_the_same_folder_is_refused(local_sweep, tmp_path):
    with pytest.raises(UserError, match="holds a sweep of another config"):
        run_sweep({**CONFIG, "generations": 3}, local_sweep.path, jobs=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/file.txt").write_text("x")
    with pytest.raises(UserError, match="not a sweep folder"):
        run_sweep(CONFIG, tmp_path / "other", jobs=1)


def test_cli_bad_config_is_one_line(tmp_path):
    cfg = write_config(tmp_path / "sweep.yaml", {**CONFIG, "grid": {"top_q": [1]}})
    r = cli(["sweep", cfg, "--out", tmp_path / "out"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "line 10: grid.top_q: not a config setting" in r.stderr
    good = write_config(tmp_path / "good.yaml")
    r = cli(["sweep", good, "--out", tmp_path / "out2", "--backend", "ray", "--address", "127.0.0.1:1"], cwd=tmp_path)
    assert r.returncode == 2 and "--address 127.0.0.1:1: nothing answers" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out2").exists()
    r = cli(["sweep", "--help"], cwd=tmp_path)
    assert r.returncode == 0 and "--backend" in r.stdout and "grid" in r.stdout


# --------------------------------------------------------------------------------------- Ray
def test_ray_gives_the_same_bytes_as_local(local_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    from collapselab.backends import make_backend

    with make_backend("ray", jobs=2):  # one local Ray (2 CPUs) that the sweep joins
        s = run_sweep(write_config(tmp_path / "sweep.yaml"), tmp_path / "out", backend="ray").summary
        assert ray.is_initialized()
    assert s["backend"] == "ray" and s["ran"] == N_CHAINS
    assert (tmp_path / "out/metrics.parquet").read_bytes() == (local_sweep.path / "metrics.parquet").read_bytes()
    for chain in local_sweep.manifest["chains"]:
        a = pd.read_parquet(local_sweep.path / "chains" / chain / "metrics.parquet")
        pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "out/chains" / chain / "metrics.parquet"))


@pytest.mark.slow
def test_a_neural_family_gives_the_same_bytes_on_ray(tmp_path, monkeypatch):
    """torch's CPU sums depend on its thread count: every chain runs with one thread, on both backends."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # local workers would use every core
    pytest.importorskip("ray")
    pytest.importorskip("torch")
    from collapselab.backends import make_backend

    corpus = write_text_folder(tmp_path / "corpus")
    cfg = {"family": "gpt", "corpus": str(corpus), "generations": 1, "train_items": 100, "holdout_items": 20,
           "seeds": [0], "policies": ["replace", "accumulate"],
           "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "bpe_vocab": 300, "batch_size": 16,
                     "epochs": 1}, "grid": {"lr": [1e-2]}}
    local = run_sweep(cfg, tmp_path / "local", jobs=2).path
    with make_backend("ray", jobs=2):
        on_ray = run_sweep(cfg, tmp_path / "ray", backend="ray").path
    assert (on_ray / "metrics.parquet").read_bytes() == (local / "metrics.parquet").read_bytes()

