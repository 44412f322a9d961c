"""Issue 10 for ``run``, ``report``, ``lineage``: file-system mistakes are one line and exit 2 with
nothing half-written, capped settings are said and recorded, a run folder has one writer at a
time, ``--json`` is strict JSON, outputs follow the umask, and a family without its extra says
which extra to install."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import write_text_file

TINY = ["--train-items", "100", "-g", "1", "-p", "replace", "-j", "1", "--quiet"]


def strict(text: str):
    """``json.loads`` that refuses NaN and Infinity (they are not JSON)."""
    def bad(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=bad)


def one_error_line(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_text_file(tmp_path / "tiny.txt", 200)


@pytest.fixture
def finished(tmp_path, corpus, run_main) -> Path:
    status, out, err = run_main(["run", "--corpus", corpus, *TINY, "--out", tmp_path / "r"], tmp_path)
    assert status == 0, err
    return tmp_path / "r"


def test_version(run_main, tmp_path):
    status, out, _ = run_main(["--version"], tmp_path)
    assert status == 0 and out.startswith("collapselab ") and any(c.isdigit() for c in out)


def test_out_is_a_file_or_under_a_file(tmp_path, corpus, run_main):
    (tmp_path / "afile").write_text("mine")
    one_error_line(*run_main(["run", "--corpus", corpus, *TINY, "--out", "afile"], tmp_path)[::2], "afile", "file")
    one_error_line(*run_main(["run", "--corpus", corpus, *TINY, "--out", "afile/run"], tmp_path)[::2], "afile", "file")
    assert (tmp_path / "afile").read_text() == "mine"


def test_unwritable_run_parent_fails_before_any_work(tmp_path, corpus, run_main, monkeypatch):
    """Root ignores permissions, so the refusal is simulated where the check asks the OS."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p).endswith("ro") else real(p, mode, *a, **k))
    (tmp_path / "ro").mkdir()
    status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "ro/run"], tmp_path)
    one_error_line(status, err, "ro", "not writable")
    assert not (tmp_path / "ro" / "run").exists()


def test_full_disk_mid_run_is_one_line_and_leaves_no_run_folder(tmp_path, corpus, run_main, monkeypatch):
    from collapselab.runfolder import RunFolder

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.metrics_path))

    monkeypatch.setattr(RunFolder, "write_metrics", full)
    status, out, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "r"], tmp_path)
    one_error_line(status, err, "no space left", "metrics.parquet")
    assert not (tmp_path / "r").exists()  # the run made the folder, and took it away again


def test_train_items_cap_is_said_and_recorded(tmp_path, corpus, run_main):
    status, out, err = run_main(["run", "--corpus", corpus, "--train-items", "10000000", "-g", "1", "-p", "replace",
                                 "-j", "1", "--quiet", "--out", "r"], tmp_path)
    assert status == 0, err
    assert "10000000" in err and "note:" in err
    import yaml

    used = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train_items"]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert used == summary["corpus"]["train_items"] < 10000000
    assert summary["corpus"]["train_items_requested"] == 10000000
    assert f"uses {used}" in err


def test_watermark_key_that_is_a_folder(tmp_path, corpus, run_main):
    (tmp_path / "keys").mkdir()
    status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "r", "--watermark-key", "keys"], tmp_path)
    one_error_line(status, err, "keys", "folder")
    assert not (tmp_path / "r").exists()


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path, corpus, run_main):
    from collapselab.runfolder import RunLock

    status, _, err = run_main(["run", "--corpus", corpus, "--train-items", "100", "-g", "2", "-p", "replace",
                               "-j", "1", "--quiet", "--out", "r"], tmp_path)
    assert status == 0, err
    (tmp_path / "r" / "summary.json").unlink()  # unfinished again: --resume would pick it up
    with RunLock(tmp_path / "r"):  # another process is running it
        status, _, err = run_main(["run", "--resume", "--out", "r", "--quiet"], tmp_path)
        one_error_line(status, err, "in use by process", str(os.getpid()))
    status, _, err = run_main(["run", "--resume", "--out", "r", "--quiet"], tmp_path)  # free again
    assert status == 0, err


def test_run_report_lineage_json(finished, run_main, tmp_path):
    for args in (["report", finished, "--json", "--no-plots"], ["lineage", finished, "--json"]):
        status, out, err = run_main(args, tmp_path)
        assert status == 0, err
        d = strict(out)
        assert d["run"] == str(finished)
    report = strict(run_main(["report", finished, "--json", "--no-plots"], tmp_path)[1])
    assert report["complete"] and report["family"] == "ngram" and report["policies"] == ["replace"]
    assert [r["generation"] for r in report["table"]] == [0, 1]
    assert len(report["metrics"]) == 2  # generation 0 and 1 of the one chain
    models = strict(run_main(["lineage", finished, "--json"], tmp_path)[1])["models"]
    assert sorted(m["depth"] for m in models) == [0, 1]
    status, out, err = run_main(["run", "--corpus", tmp_path / "tiny.txt", *TINY, "--out", "j", "--json"], tmp_path)
    assert status == 0, err
    assert strict(out)["summary"]["status"] == "complete"


def test_json_has_null_not_nan(finished, run_main, tmp_path):
    import pandas as pd

    m = pd.read_parquet(finished / "metrics.parquet")
    m.loc[0, "ppl_holdout"] = float("nan")
    m.to_parquet(finished / "metrics.parquet", index=False)
    status, out, err = run_main(["report", finished, "--json", "--no-plots"], tmp_path)
    assert status == 0, err
    assert strict(out)["metrics"][0]["ppl_holdout"] is None


def test_report_on_damaged_files(finished, run_main, tmp_path):
    metrics = finished / "metrics.parquet"
    good = metrics.read_bytes()
    metrics.write_bytes(good[: len(good) // 2])
    one_error_line(*run_main(["report", finished], tmp_path)[::2], "metrics.parquet", "truncated")
    metrics.write_bytes(good)
    (finished / "config.yaml").write_text("family: ngram\npolicies: [replace\n")
    one_error_line(*run_main(["report", finished], tmp_path)[::2], "config.yaml", "line")


def test_report_on_a_read_only_run_folder_still_prints(finished, run_main, tmp_path, monkeypatch):
    from collapselab import atomic

    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    before = {p: p.read_bytes() for p in (finished / "plots").iterdir()}
    monkeypatch.setattr(atomic, "check_output_file", refuse)
    status, out, err = run_main(["report", finished], tmp_path)
    assert status == 0, err
    assert "policy: replace" in out and "plots not re-drawn" in err and "permission denied" in err
    assert {p: p.read_bytes() for p in (finished / "plots").iterdir()} == before


def test_outputs_follow_the_umask(tmp_path, corpus, run_main):
    old = os.umask(0o022)
    try:
        status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "r"], tmp_path)
    finally:
        os.umask(old)
    assert status == 0, err
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"]
    assert {"config.yaml", "metrics.parquet", "summary.json", "ledger.sqlite", "gen01.parquet"} <= {p.name for p in files}
    assert any(p.suffix == ".png" for p in files)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes


def test_a_neural_family_without_torch_names_the_extra(tmp_path, run_main, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    for family in ("gpt", "vae"):
        status, _, err = run_main(["run", "--family", family, *TINY, "--out", family], tmp_path)
        one_error_line(status, err, f"--family {family}", "collapselab[neural]")
        assert not (tmp_path / family).exists()


def test_progress_bar_only_on_a_terminal_and_without_quiet(tmp_path, corpus, run_main, monkeypatch):
    loud = [a for a in TINY if a != "--quiet"]
    status, out, err = run_main(["run", "--corpus", corpus, *loud, "--out", "pipe"], tmp_path)
    assert status == 0 and err == "", err  # stderr is not a terminal here: no bar
    from collapselab.cli import common

    monkeypatch.setattr(common.err_console, "_force_terminal", True)  # now it is one
    monkeypatch.setattr(common.sys.stderr, "isatty", lambda: True)
    status, _, err = run_main(["run", "--corpus", corpus, *loud, "--out", "tty"], tmp_path)
    assert status == 0 and "2/2" in err, err  # the bar, drawn to the end
    for flag in ("--quiet", "--json"):
        status, _, err = run_main(["run", "--corpus", corpus, *loud, flag, "--out", f"q{flag}"], tmp_path)
        assert status == 0 and err == "", (flag, err)


def test_full_disk_after_a_generation_keeps_whole_files_and_says_resume(tmp_path, corpus, run_main, monkeypatch):
    """The disk fills while generation 2's samples are written: the half-written temporary file goes,
    generation 1 stays, and the one line says how to continue."""
    import pyarrow.parquet as pq

    from collapselab import runfolder

    real = pq.write_table

    def fills_up(table, where, *a, **k):
        if "gen02" in str(where):
            Path(where).write_bytes(b"half a parquet")
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *a, **k)

    monkeypatch.setattr(runfolder.pq, "write_table", fills_up)
    args = ["run", "--corpus", corpus, "--train-items", "100", "-g", "2", "-p", "replace", "-j", "1", "--quiet", "--out", "r"]
    one_error_line(*run_main(args, tmp_path)[::2], "no space left", "--resume --out r")
    run = tmp_path / "r"
    assert not list(run.rglob("*.tmp")) and not (run / "summary.json").exists()
    import pandas as pd

    assert pd.read_parquet(run / "metrics.parquet")["generation"].max() == 1
    monkeypatch.setattr(runfolder.pq, "write_table", real)  # space again
    status, _, err = run_main(["run", "--resume", "--out", "r", "--quiet"], tmp_path)
    assert status == 0 and (run / "summary.json").exists(), err


def test_report_of_a_file(tmp_path, run_main):
    (tmp_path / "afile").write_text("x")
    one_error_line(*run_main(["report", "afile"], tmp_path)[::2], "afile: a file, not a run folder")


def test_snapshot_flag_and_its_deprecated_old_spelling(tmp_path, corpus, run_main):
    from collapselab.provenance.vault import init_vault

    v = init_vault(tmp_path / "vault")
    v.add([corpus], source="test corpus", licence="CC0", captured_before="2020-01-01")
    old = v.seal("old").merkle_root
    v.add([write_text_file(tmp_path / "more.txt", 50, seed=1)], source="more", licence="CC0", captured_before="2020-01-01")
    v.seal("new")
    base = ["run", "--corpus", corpus, *TINY, "-p", "anchor:0.2", "--vault", "vault"]
    for flag in ("--snapshot", "--vault-snapshot"):
        status, _, err = run_main([*base, flag, "old", "--out", flag.strip("-")], tmp_path)
        assert status == 0, err
        ref = json.loads((tmp_path / flag.strip("-") / "summary.json").read_text())["corpus"]["vault"]
        assert ref["snapshot"] == "old" and ref["merkle_root"] == old
    import typer

    from collapselab.cli import app

    (option,) = [p for p in typer.main.get_command(app).commands["run"].params if "--snapshot" in p.opts]
    assert option.opts == ["--snapshot", "--vault-snapshot"] and "old spelling --vault-snapshot: deprecated" in option.help


def test_a_run_signs_its_ledger_head_and_verify_checks_it(tmp_path, corpus, run_main):
    status, _, err = run_main(["keys", "new-signing", "led.key"], tmp_path)
    assert status == 0, err
    status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "r", "--ledger-signing-key", "led.key"], tmp_path)
    assert status == 0, err
    head = json.loads((tmp_path / "r" / "summary.json").read_text())["ledger_head"]
    assert head["tree_size"] >= 3 and len(head["signature"]) == 128  # an Ed25519 signature, hex
    pub = next(p for p in tmp_path.iterdir() if p.name.startswith("led.key") and p.name.endswith(".pub"))
    status, out, err = run_main(["ledger", "verify", tmp_path / "r" / "ledger.sqlite", "--sth", tmp_path / "r" / "summary.json",
                                 "--public-key", pub, "--json"], tmp_path)
    assert status == 0 and strict(out)["ok"], (out, err)
    status, _, err = run_main(["ledger", "verify", tmp_path / "r" / "ledger.sqlite", "--sth", tmp_path / "r" / "summary.json",
                               "--public-key", tmp_path / "r" / "ledger.sqlite"], tmp_path)
    assert status in (1, 2) and "Traceback" not in err  # not the key: refused


def test_a_missing_ledger_signing_key_fails_before_the_run(tmp_path, corpus, run_main):
    status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", "r", "--ledger-signing-key", "nope.key"], tmp_path)
    one_error_line(status, err, "nope.key", "keys new-signing")
    assert not (tmp_path / "r").exists()
