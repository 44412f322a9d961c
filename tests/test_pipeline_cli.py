"""Issue 10 for ``scan``, ``filter``, ``mix``: every mistake is one line and exit 2 with nothing
half-written or misleading left behind; ``--json`` is strict JSON; the renamed flags keep their
old spellings."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import fixed_key_file, make_documents
from test_run_cli import one_error_line, strict

DOCS = make_documents(60, 3)


def _no_space(path="") -> OSError:
    """What a write on a full disk raises."""
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _jsonl(path: Path, texts) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture
def d(tmp_path) -> Path:
    _jsonl(tmp_path / "docs.jsonl", DOCS)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "vocab.txt").write_text("\n".join(sorted({w for t in DOCS for w in t.lower().split()})) + "\n")
    fixed_key_file(tmp_path / "wm.key")
    return tmp_path


@pytest.fixture
def vault(tmp_path):
    from collapselab.provenance.vault import init_vault

    v = init_vault(tmp_path / "vault")
    v.add_texts([(f"h{i}", t) for i, t in enumerate(make_documents(40, 3, seed=7))], source="test",
                licence="public domain", captured_before="2020-01-01")
    v.seal("s1")
    return tmp_path / "vault"


SCAN = ["scan", "docs.jsonl", "--detector", "length", "--out", "s.parquet", "-j", "1"]


@pytest.mark.parametrize("args, needles", [
    (["--fpr", "-1"], ["--fpr -1", "[0, 1)"]),
    (["--tpr", "5"], ["--tpr 5", "(0, 1]"]),
    (["--tpr", "0"], ["--tpr 0", "(0, 1]"]),
    (["--shard-size", "1"], ["--shard-size 1", "16384"]),
])
def test_scan_rates_and_shard_size_are_checked(d, run_main, args, needles):
    one_error_line(*run_main([*SCAN, *args], d)[::2], *needles)
    assert not (d / "s.parquet").exists() and not (d / "s.parquet.parts").exists()


def test_scan_of_an_empty_input_is_an_error_not_nan(d, run_main):
    status, out, err = run_main(["scan", "empty.jsonl", "--detector", "length", "--out", "e.parquet"], d)
    one_error_line(status, err, "empty.jsonl", "no document")
    assert "nan" not in err.lower() and not list(d.glob("e.parquet*"))


def test_scan_with_a_garbage_vocabulary(d, run_main):
    (d / "garbage.vocab").write_bytes(b"ok\nword\n" + bytes(range(128, 256)))
    status, out, err = run_main(["scan", "docs.jsonl", "--vocab", "garbage.vocab", "--watermark-key", "wm.key",
                                 "--out", "s.parquet"], d)
    one_error_line(status, err, "garbage.vocab", "line 3", "UTF-8")
    (d / "dup.vocab").write_text("the\nnation\nthe\n")
    status, out, err = run_main(["scan", "docs.jsonl", "--vocab", "dup.vocab", "--watermark-key", "wm.key",
                                 "--out", "s.parquet"], d)
    one_error_line(status, err, "dup.vocab", "'the'", "twice")


@pytest.mark.parametrize("out", ["afile/s.parquet", "."])
def test_scan_output_that_cannot_be_a_file(d, run_main, out):
    status, _, err = run_main(["scan", "docs.jsonl", "--detector", "length", "--out", out], d)
    one_error_line(status, err)
    assert (d / "afile").read_text() == "mine"


def test_scan_key_flag_new_and_old_spelling(d, run_main):
    outs = []
    for flag in ("--watermark-key", "--key"):
        status, out, err = run_main(["scan", "docs.jsonl", "--vocab", "vocab.txt", flag, "wm.key", "--json",
                                     "--out", f"s{flag}.parquet", "-j", "1"], d)
        assert status == 0, err
        outs.append(strict(out))
    assert outs[0]["documents"] == outs[1]["documents"] == len(DOCS)
    assert outs[0]["flagged"] == outs[1]["flagged"]


def test_filter_with_a_bad_quarantine_writes_nothing(d, run_main):
    status, _, err = run_main(["filter", "docs.jsonl", "--detector", "length", "--threshold", "100",
                               "--out", "kept.jsonl", "--quarantine", "afile/q.jsonl"], d)
    one_error_line(status, err, "afile", "--quarantine")
    assert not list(d.glob("kept.jsonl*"))


def test_filter_of_a_truncated_parquet(d, run_main):
    pq.write_table(pa.table({"text": DOCS}), d / "p.parquet")
    b = (d / "p.parquet").read_bytes()
    (d / "t.parquet").write_bytes(b[: len(b) // 2])
    status, _, err = run_main(["filter", "t.parquet", "--detector", "length", "--threshold", "100",
                               "--out", "k.parquet", "--quarantine", "q.parquet"], d)
    one_error_line(status, err, "t.parquet", "truncated")
    assert not list(d.glob("k.parquet*")) or not (d / "k.parquet").exists()


def test_filter_disk_full_while_writing_the_quarantine_leaves_neither_file(d, run_main, monkeypatch):
    from collapselab.pipeline import runner

    real = runner.concat

    def concat(parts, dest, *a):
        if "q.jsonl" in dest.name:
            raise _no_space(dest)
        real(parts, dest, *a)

    monkeypatch.setattr(runner, "concat", concat)
    status, _, err = run_main(["filter", "docs.jsonl", "--detector", "length", "--threshold", "100", "-j", "1",
                               "--out", "kept.jsonl", "--quarantine", "q.jsonl"], d)
    one_error_line(status, err, "q.jsonl", "no space left")
    assert not (d / "kept.jsonl").exists() and not (d / "q.jsonl").exists() and not (d / "kept.jsonl.json").exists()


def test_filter_disk_full_at_the_manifest_leaves_no_output(d, run_main, monkeypatch):
    from collapselab.pipeline import runner as flt  # the runner writes the manifest

    def full(path, obj, *a, **kw):
        raise _no_space(path)

    monkeypatch.setattr(flt, "atomic_write_json", full)
    status, _, err = run_main(["filter", "docs.jsonl", "--detector", "length", "--threshold", "100", "-j", "1",
                               "--out", "kept.jsonl", "--quarantine", "q.jsonl"], d)
    one_error_line(status, err, "kept.jsonl.json", "no space left")
    assert not list(d.glob("q.jsonl*"))  # kept.jsonl.parts/ may stay: the shards a rerun resumes from
    assert not (d / "kept.jsonl").exists() and not (d / "kept.jsonl.json").exists()


def test_filter_json_is_strict(d, run_main):
    status, out, err = run_main(["filter", "docs.jsonl", "--detector", "length", "--threshold", "100",
                                 "--out", "kept.jsonl", "--quarantine", "q.jsonl", "--json"], d)
    assert status == 0, err
    r = strict(out)
    assert r["kept"] + r["quarantined"] == r["records"] == len(DOCS)


def test_mix_of_an_empty_input_is_an_error(d, vault, run_main):
    status, out, err = run_main(["mix", "empty.jsonl", "--vault", vault, "--min-human", "0.1", "--out", "t.jsonl"], d)
    one_error_line(status, err, "empty.jsonl", "no record")
    assert ">=" not in err and not list(d.glob("t.jsonl*"))


def test_mix_negative_seed(d, vault, run_main):
    one_error_line(*run_main(["mix", "docs.jsonl", "--vault", vault, "--min-human", "0.1", "--seed", "-1",
                              "--out", "t.jsonl"], d)[::2], "--seed -1")
    assert not list(d.glob("t.jsonl*"))


def test_mix_json_is_strict_and_holds_the_share(d, vault, run_main):
    status, out, err = run_main(["mix", "docs.jsonl", "--vault", vault, "--min-human", "0.2", "--out", "t.jsonl",
                                 "--json"], d)
    assert status == 0, err
    r = strict(out)
    assert r["human_share"] >= 0.2 and r["input_records"] == len(DOCS)
    assert sum(1 for _ in open(d / "t.jsonl")) == r["total"]


def test_the_api_reports_progress_per_shard(d):
    from collapselab.pipeline.scan import scan_corpus

    big = _jsonl(d / "big.jsonl", make_documents(400, 10))
    seen = []
    scan_corpus([big], detector="length", out=d / "b.parquet", jobs=1, shard_bytes=64 << 10,
                progress=lambda done, total, what: seen.append((done, total)))
    total = seen[0][1]
    assert total > 1 and seen == [(i, total) for i in range(total + 1)]


def test_scan_that_fails_before_any_shard_leaves_no_parts_folder(d, run_main):
    status, _, err = run_main(["scan", "docs.jsonl", "--detector", "length", "--text-field", "nope", "-j", "1",
                               "--out", "s.parquet"], d)
    one_error_line(status, err, "docs.jsonl:1", "'nope'")
    assert not list(d.glob("s.parquet*"))


@pytest.mark.parametrize("args, needles", [
    (["--vocab", "."], ["is a folder", "vocabulary"]),
    (["--vocab", "vocab.txt", "--gamma", "2"], ["--gamma 2", "(0, 1)"]),
    (["--vocab", "vocab.txt", "--context-width", "0"], ["--context-width 0"]),
])
def test_scan_watermark_settings_name_their_flag(d, run_main, args, needles):
    one_error_line(*run_main(["scan", "docs.jsonl", "--watermark-key", "wm.key", *args, "--out", "s.parquet"], d)[::2],
                   *needles)
    assert not list(d.glob("s.parquet*"))


def test_filter_out_that_is_a_folder_is_said(d, run_main):
    (d / "kept").mkdir()
    one_error_line(*run_main(["filter", "docs.jsonl", "--detector", "length", "--threshold", "100",
                              "--out", "kept", "--quarantine", "q.jsonl"], d)[::2], "kept", "is a folder")
    assert not list(d.glob("q.jsonl*"))


def _unwritable(monkeypatch, folder: Path) -> None:
    """``folder`` reads as not writable (root may write anywhere, so the check is simulated)."""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).resolve() != folder.resolve() and real(p, mode, **kw))


@pytest.mark.parametrize("command", [
    ["scan", "docs.jsonl", "--detector", "length", "--out", "ro/s.parquet"],
    ["filter", "docs.jsonl", "--detector", "length", "--threshold", "100", "--out", "kept.jsonl",
     "--quarantine", "ro/q.jsonl"],
    ["mix", "docs.jsonl", "--min-human", "0.1", "--out", "ro/t.jsonl"],
])
def test_an_unwritable_output_folder_is_one_line_before_any_work(d, vault, run_main, monkeypatch, command):
    (d / "ro").mkdir()
    _unwritable(monkeypatch, d / "ro")
    if command[0] == "mix":
        command = [*command, "--vault", vault]
    one_error_line(*run_main(command, d)[::2], "ro", "permission denied")
    assert not list((d / "ro").iterdir()) and not list(d.glob("kept.jsonl*"))


def test_scan_disk_full_at_the_manifest_leaves_neither_sidecar_nor_manifest(d, run_main, monkeypatch):
    from collapselab.pipeline import runner as scan  # the runner writes the manifest

    run_main(["scan", "docs.jsonl", "--detector", "length", "--out", "s.parquet", "-j", "1"], d)
    assert (d / "s.parquet.json").is_file()

    def full(path, obj, *a, **kw):
        raise _no_space(path)

    monkeypatch.setattr(scan, "atomic_write_json", full)
    status, _, err = run_main(["scan", "docs.jsonl", "--detector", "length", "--out", "s.parquet", "-j", "1",
                               "--force"], d)
    one_error_line(status, err, "s.parquet.json", "no space left")
    assert not (d / "s.parquet").exists() and not (d / "s.parquet.json").exists()


def test_mix_disk_full_while_writing_leaves_nothing(d, vault, run_main, monkeypatch):
    from collapselab.pipeline.io import JsonlWriter

    real = JsonlWriter.write

    def write(self, line):
        if self.count >= 10:
            raise _no_space()
        real(self, line)

    monkeypatch.setattr(JsonlWriter, "write", write)
    status, _, err = run_main(["mix", "docs.jsonl", "--vault", vault, "--min-human", "0.1", "--out", "t.jsonl"], d)
    one_error_line(status, err, "no space left")
    assert not [p.name for p in d.iterdir() if p.name.startswith("t.jsonl") or p.name.startswith(".t.jsonl")]


def test_scan_vault_flag_new_and_old_spelling(d, vault, run_main):
    outs = []
    for flag in ("--vault", "--reference-vault"):
        status, out, err = run_main(["scan", "docs.jsonl", "--detector", "perplexity", "--vocab", "vocab.txt", flag, vault,
                                     "--json", "--out", f"s{flag}.parquet", "-j", "1"], d)
        assert status == 0, err
        outs.append(strict(out))
    assert outs[0]["threshold"] == outs[1]["threshold"] and outs[0]["flagged"] == outs[1]["flagged"]


def test_help_marks_the_old_spellings_deprecated(d, run_main):
    import re

    status, out, _ = run_main(["scan", "--help"], d)
    text = re.sub(r"[\s│]+", " ", re.sub(r"\x1b\[[0-9;]*m", "", out))
    assert status == 0
    assert "(old spelling --key: deprecated)" in text and "(old spelling --reference-vault: deprecated)" in text
