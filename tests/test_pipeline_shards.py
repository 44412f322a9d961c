"""The corpus pipeline over shards: every line read once, the same outputs whatever --jobs is,
done-markers that notice changed inputs, kill (SIGKILL) and rerun, malformed lines in later
shards, and flat memory (the reader's batches are bounded)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sentences

from collapselab.errors import UserError
from collapselab.pipeline import filter_corpus, mix_corpus, scan_corpus
from collapselab.pipeline import io as pio
from collapselab.pipeline import shards as sh

CLI = [sys.executable, "-m", "collapselab.pipeline.pipeline_cli"]
SHARD = 16 << 10  # small shards so that small files have many


def _docs(n: int, seed: int = 0) -> list[dict]:
    """Documents of 1-12 sentences; every third has no id (its id is then FILE:LINE)."""
    rng = np.random.default_rng(seed)
    sents = make_sentences(8 * n, seed)
    out, at = [], 0
    for i in range(n):
        k = int(rng.integers(1, 13))
        d = {"text": " ".join(sents[at : at + k]), "n": i}
        at += k
        if i % 3:
            d["id"] = f"d{i}"
        out.append(d)
    return out


def _write(path: Path, docs, blank_every: int = 0) -> Path:
    lines = []
    for i, d in enumerate(docs):
        lines.append(json.dumps(d) + "\n")
        if blank_every and i % blank_every == blank_every - 1:
            lines.append("\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    docs = _docs(900)
    return {"dir": d, "docs": docs, "jsonl": _write(d / "web.jsonl", docs, blank_every=97)}


# -------------------------------------------------------------------------------- the reader
def test_shards_hold_every_line_once_and_blocks_are_bounded(tmp_path):
    rng = np.random.default_rng(3)
    lines = [b"x" * int(rng.integers(0, 300)) + b"\n" for _ in range(400)]
    lines[50] = b"y" * 5000 + b"\n"  # longer than several shards
    data = b"".join(lines) + b"tail without newline"
    f = tmp_path / "f.jsonl"
    f.write_bytes(data)
    for shard_bytes in (97, 1000, 4096, len(data), 10 * len(data)):
        got, lines_seen = [], 0
        for s in sh.plan([f], shard_bytes):
            r = pio.LineReader(f, s.start, s.end, block_bytes=512)
            blocks = [(off, b"".join(x + b"\n" for x in lines)[: None if t else -1]) for off, lines, t in r]
            assert all(len(b) <= 512 + 5001 for _, b in blocks)  # one block and the line it began in
            assert all(s.start <= off < s.end and data[off : off + len(b)] == b for off, b in blocks)
            got += [b for _, b in blocks]
            lines_seen += r.lines
            assert r.sha256 == sh.input_digest(s) == pio.LineReader(f, s.start, s.end, block_bytes=64).digest()
        assert b"".join(got) == data and lines_seen == 401  # every line once, in order


def test_records_come_in_bounded_batches_and_memory_is_flat(tmp_path, monkeypatch):
    """Constant memory: the peak of Python allocations while scanning is the same for a 4x larger
    file (one block and one batch at a time), far below the file's size."""
    monkeypatch.setattr(pio, "BLOCK_BYTES", 64 << 10)
    small = _write(tmp_path / "small.jsonl", _docs(4000, seed=1))  # big enough that the ~1.2 MB of fixed
    big = _write(tmp_path / "big.jsonl", _docs(16000, seed=2))  # allocations sit well below half the big file
    shard = sh.plan([big], 10**9)[0]
    sizes = [len(b.texts) for b in pio.shard_records(shard, text_field="text", on_error="fail", batch_size=100,
                                                      found=pio.Found())]
    assert max(sizes) == 100 and sum(sizes) == 16000
    peaks = []
    for f in (small, big):
        tracemalloc.start()
        scan_corpus([f], detector="length", out=tmp_path / f"{f.stem}.parquet", jobs=1, batch_size=500)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert big.stat().st_size > 3.5 * small.stat().st_size
    assert peaks[1] < 1.5 * peaks[0] + (256 << 10)
    assert peaks[1] < big.stat().st_size / 2


# ----------------------------------------------------------------------------- --shard-size
def test_shard_size_takes_bytes_or_units(corpus, tmp_path):
    import typer

    from collapselab.pipeline.pipeline_cli import parse_size

    assert [parse_size(x) for x in ("268435456", "64MiB", "64M", "64 mib", "500MB", "1.5GiB", "2kB", 7)] == \
        [268435456, 64 << 20, 64 << 20, 64 << 20, 500 * 10**6, 3 << 29, 2000, 7]
    for bad in ("64Q", "0MB", "-1", "MB", "1e9", ""):
        with pytest.raises(typer.BadParameter, match="not a size"):
            parse_size(bad)
    # through the command line: a unit gives the same shards as the bytes it stands for
    for size, tag in ((f"{SHARD // 1024}KiB", "unit"), (str(SHARD), "bytes")):
        proc = subprocess.run(CLI + ["scan", str(corpus["jsonl"]), "--detector", "length", "--out", str(tmp_path / tag / "s.parquet"),
                                     "--jobs", "1", "--shard-size", size], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    shards = [json.loads((tmp_path / t / "s.parquet.json").read_text())["inputs"][0]["shards"] for t in ("unit", "bytes")]
    assert shards[0] == shards[1] and len(shards[0]) > 10
    proc = subprocess.run(CLI + ["scan", str(corpus["jsonl"]), "--detector", "length", "--out", str(tmp_path / "x.parquet"),
                                 "--shard-size", "64Q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a size" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.parquet").exists()


# ----------------------------------------------------------------------------- any --jobs
def test_same_outputs_whatever_jobs_and_shard_size(corpus, tmp_path):
    inp, docs = corpus["jsonl"], corpus["docs"]
    T = 400.0
    runs = {}
    for tag, jobs, shard_bytes in (("one", 1, 10**9), ("j1", 1, SHARD), ("j2", 2, SHARD)):
        d = tmp_path / tag
        s = scan_corpus([inp], detector="length", out=d / "s.parquet", jobs=jobs, shard_bytes=shard_bytes)
        f = filter_corpus(inp, scores=d / "s.parquet", out=d / "k.jsonl", quarantine=d / "q.jsonl", threshold=T, jobs=jobs)
        runs[tag] = (s, f, d)
    (s1, _, d1), (_, _, d2), (s3, f3, d3) = runs["one"], runs["j1"], runs["j2"]
    assert len(json.loads((d2 / "s.parquet.json").read_text())["inputs"][0]["shards"]) > 10
    # the sidecar: identical bytes for any jobs; the same rows whatever the shard size
    assert (d2 / "s.parquet").read_bytes() == (d3 / "s.parquet").read_bytes()
    side = pd.read_parquet(d1 / "s.parquet")
    assert side.equals(pd.read_parquet(d2 / "s.parquet"))
    lines = inp.read_text(encoding="utf-8").splitlines()
    want_lines = [i + 1 for i, x in enumerate(lines) if x.strip()]
    assert side["line"].tolist() == want_lines
    assert side["id"].tolist() == [d.get("id", f"{inp}:{n}") for d, n in zip(docs, want_lines)]
    assert side["score"].tolist() == [float(len(d["text"])) for d in docs]
    assert s1.documents == s3.documents == 900 and s3.rule == "none"
    # filter: the same bytes, whatever jobs and shard size; the same decision as a plain loop
    for name in ("k.jsonl", "q.jsonl", "q.jsonl.reasons.jsonl"):
        assert (d1 / name).read_bytes() == (d2 / name).read_bytes() == (d3 / name).read_bytes()
    kept = [json.loads(x)["n"] for x in (d3 / "k.jsonl").read_text().splitlines() if x.strip()]
    assert kept == [d["n"] for d in docs if len(d["text"]) < T]
    assert f3.kept == len(kept) and f3.flagged == 900 - len(kept) and f3.malformed == 0
    reasons = [json.loads(x) for x in (d3 / "q.jsonl.reasons.jsonl").read_text().splitlines()]
    assert [r["score"] >= T for r in reasons] == [True] * len(reasons) and len(reasons) == f3.flagged
    assert not (d3 / "s.parquet.parts").exists() and not (d3 / "k.jsonl.parts").exists()
    # scoring while filtering (one pass, no sidecar): the same outputs, in order, any jobs
    for jobs in (1, 2):
        d = tmp_path / f"fused{jobs}"
        f = filter_corpus(inp, detector="length", out=d / "k.jsonl", quarantine=d / "q.jsonl", threshold=T, jobs=jobs,
                          shard_bytes=SHARD)
        blank = {"out": "", "quarantine": "", "reasons": "", "stats": {}}  # stats: timings
        assert f.to_dict() | blank == f3.to_dict() | blank
        for name in ("k.jsonl", "q.jsonl", "q.jsonl.reasons.jsonl"):
            assert (d / name).read_bytes() == (d1 / name).read_bytes()


def test_watermark_scan_of_mixed_formats_is_the_same_with_two_jobs(corpus, tmp_path):
    from collapselab.corpus.tokenize import Vocabulary

    docs = corpus["docs"]
    vocab = Vocabulary(sorted({w for d in docs for w in d["text"].lower().replace(".", " .").split()}))
    pq_in = tmp_path / "p.parquet"
    pd.DataFrame(docs[:300]).to_parquet(pq_in)
    import gzip

    gz_in = tmp_path / "g.jsonl.gz"
    with gzip.open(gz_in, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs[300:600])
    inputs = [corpus["jsonl"], pq_in, gz_in]
    kw = dict(vocab=vocab, key=b"k" * 32, shard_bytes=SHARD, tpr=0.9)
    a = scan_corpus(inputs, out=tmp_path / "a.parquet", jobs=1, **kw)
    b = scan_corpus(inputs, out=tmp_path / "b.parquet", jobs=2, **kw)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert {k: v for k, v in a.to_dict().items() if k not in ("out", "stats")} == {k: v for k, v in b.to_dict().items() if k not in ("out", "stats")}
    assert [f["documents"] for f in a.per_file] == [900, 300, 300] and a.fpr > 0
    side = pd.read_parquet(tmp_path / "a.parquet")
    assert (side["n_tokens"] > 0).all() and side["file"].tolist() == [str(p) for p, n in zip(inputs, (900, 300, 300)) for _ in range(n)]


# ----------------------------------------------------------------------------- done-markers
def test_a_done_marker_holds_only_while_its_input_and_settings_do(corpus, tmp_path):
    from collapselab.pipeline.scan import _Job, LengthScorer, _scan_shard

    inp = tmp_path / "in.jsonl"
    inp.write_bytes(corpus["jsonl"].read_bytes())
    parts = tmp_path / "parts"
    parts.mkdir()
    shards = sh.plan([inp], SHARD)
    job = dict(scorer=LengthScorer(), text_field="text", on_error="fail", batch_size=1000, parts=str(parts), digest="A")
    marks = [_scan_shard(_Job(s, **job)) for s in shards]
    assert all(sh.finished(parts, s, "A") == m for s, m in zip(shards, marks))
    assert sh.finished(parts, shards[0], "B") is None  # other settings
    data = bytearray(inp.read_bytes())
    at = shards[2].start + SHARD // 2  # past the line that shard 1 reads to its end
    data[at] = ord("Q") if data[at] != ord("Q") else ord("R")  # same size, one byte changed in shard 2
    inp.write_bytes(bytes(data))
    assert [sh.finished(parts, s, "A") is None for s in shards[:4]] == [False, False, True, False]
    (parts / "part-00003.parquet").write_bytes(b"")  # an output that is not what the marker says
    assert sh.finished(parts, shards[3], "A") is None


# ------------------------------------------------------------------------- kill and rerun
def _kill_when(cmd, parts: Path, n_markers: int, timeout: float = 60.0) -> bool:
    """Start ``cmd``; SIGKILL it once ``parts`` holds ``n_markers`` done-markers. True if killed mid-job."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout and p.poll() is None:
            if len(list(parts.glob("part-*.json"))) >= n_markers:
                p.send_signal(signal.SIGKILL)
                p.wait()
                return True
            time.sleep(0.002)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return False


def test_killed_jobs_rerun_to_the_same_outputs(corpus, tmp_path, monkeypatch):
    shard = 4 * SHARD  # 90 shards
    big = tmp_path / "big.jsonl"
    with open(big, "w", encoding="utf-8") as f:
        for i in range(8):
            f.writelines(json.dumps({**d, "copy": i}) + "\n" for d in corpus["docs"])
    ref = tmp_path / "ref"
    scan_corpus([big], detector="length", out=ref / "s.parquet", jobs=1, shard_bytes=shard)  # uninterrupted
    filter_corpus(big, scores=ref / "s.parquet", out=ref / "k.jsonl", quarantine=ref / "q.jsonl", threshold=300.0, jobs=1)
    reused = []
    real = sh.finished

    def spy(parts, shard, digest):
        m = real(parts, shard, digest)
        reused.append(m is not None)
        return m

    monkeypatch.setattr(sh, "finished", spy)
    run = tmp_path / "run"
    out = run / "s.parquet"
    scan = CLI + ["scan", str(big), "--detector", "length", "--out", str(out), "--jobs", "1", "--shard-size", str(shard)]
    assert _kill_when(scan, Path(str(out) + ".parts"), 3)
    assert not out.exists()  # a killed job leaves no output
    r = scan_corpus([big], detector="length", out=out, jobs=1, shard_bytes=shard)
    assert sum(reused) >= 3 and not all(reused)  # the finished shards were kept, the rest done
    assert out.read_bytes() == (ref / "s.parquet").read_bytes() and r.documents == 7200
    # filter: no duplicates, nothing lost
    reused.clear()
    k, q = run / "k.jsonl", run / "q.jsonl"
    filt = CLI + ["filter", str(big), "--scores", str(out), "--threshold", "300", "--out", str(k), "--quarantine", str(q),
                  "--jobs", "1"]
    assert _kill_when(filt, Path(str(k) + ".parts"), 2)
    assert not k.exists()
    filter_corpus(big, scores=out, out=k, quarantine=q, threshold=300.0, jobs=1)
    assert sum(reused) >= 2
    for name in ("k.jsonl", "q.jsonl", "q.jsonl.reasons.jsonl"):
        assert (run / name).read_bytes() == (ref / name).read_bytes()
    assert not list(run.glob("*.parts")) and not list(run.glob(".*.tmp"))


# ---------------------------------------------------------------------------- bad input
def test_malformed_lines_in_later_shards(corpus, tmp_path):
    lines = corpus["jsonl"].read_text(encoding="utf-8").splitlines(True)
    bad_at = [200, 611, 777]  # 0-based; well past the first shard
    for i in bad_at:
        lines[i] = '{"text": broken\n' if i != 611 else '["a list"]\n'
    inp = tmp_path / "bad.jsonl"
    inp.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(UserError, match=rf"bad\.jsonl:{bad_at[0] + 1}: malformed record"):
        scan_corpus([inp], detector="length", out=tmp_path / "s.parquet", jobs=1, shard_bytes=SHARD)
    assert not (tmp_path / "s.parquet").exists()
    with pytest.raises(UserError, match="given twice"):
        scan_corpus([inp, inp], detector="length", out=tmp_path / "s.parquet")
    with pytest.raises(UserError, match="--jobs 0"):
        scan_corpus([inp], detector="length", out=tmp_path / "s.parquet", jobs=0)
    r = scan_corpus([inp], detector="length", out=tmp_path / "s.parquet", jobs=1, shard_bytes=SHARD, on_error="skip")
    assert r.malformed_skipped == 3 and [m["line"] for m in r.malformed_lines] == [i + 1 for i in bad_at]
    assert "a JSON list" in r.malformed_lines[1]["detail"]
    side = pd.read_parquet(tmp_path / "s.parquet")
    assert not set(side["line"]) & {i + 1 for i in bad_at} and len(side) == r.documents
    with pytest.raises(UserError, match=rf"bad\.jsonl:{bad_at[0] + 1}: malformed"):
        filter_corpus(inp, scores=tmp_path / "s.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl",
                      threshold=1e9, jobs=1)
    f = filter_corpus(inp, scores=tmp_path / "s.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl",
                      threshold=1e9, jobs=1, on_error="skip")
    assert (f.malformed, f.flagged, f.quarantined) == (3, 0, 3)
    assert (tmp_path / "q.jsonl").read_text().splitlines(True) == [lines[i] for i in bad_at]
    why = [json.loads(x) for x in (tmp_path / "q.jsonl.reasons.jsonl").read_text().splitlines()]
    assert [(w["line"], w["reason"]) for w in why] == [(i + 1, "malformed") for i in bad_at]
    # the same when scoring while filtering
    with pytest.raises(UserError, match=rf"bad\.jsonl:{bad_at[0] + 1}: malformed"):
        filter_corpus(inp, detector="length", out=tmp_path / "f" / "k.jsonl", quarantine=tmp_path / "f" / "q.jsonl",
                      threshold=1e9, jobs=1, shard_bytes=SHARD)
    filter_corpus(inp, detector="length", out=tmp_path / "f" / "k.jsonl", quarantine=tmp_path / "f" / "q.jsonl",
                  threshold=1e9, jobs=1, shard_bytes=SHARD, on_error="skip")
    for name in ("k.jsonl", "q.jsonl", "q.jsonl.reasons.jsonl"):
        assert (tmp_path / "f" / name).read_bytes() == (tmp_path / name).read_bytes()


def test_a_changed_input_is_refused_by_filter(corpus, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(corpus["jsonl"].read_bytes())
    scan_corpus([inp], detector="length", out=tmp_path / "s.parquet", jobs=1, shard_bytes=SHARD)
    data = bytearray(inp.read_bytes())
    at = data.index(b'"text": "', 5 * SHARD) + 9
    data[at] = ord("Z")  # same size, one letter changed in shard 5
    inp.write_bytes(bytes(data))
    with pytest.raises(UserError, match="changed since it was scanned"):
        filter_corpus(inp, scores=tmp_path / "s.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl",
                      threshold=300.0, jobs=1)
    assert not (tmp_path / "k.jsonl").exists() and not (tmp_path / "q.jsonl").exists()


def test_cli_user_errors_are_one_line_and_exit_2(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine ."}\n{"text": nope\n')
    s = tmp_path / "s.parquet"
    scan_corpus([bad], detector="length", out=s, on_error="skip", jobs=1)
    cases = [
        ["filter", bad, "--scores", s, "--threshold", "5", "--out", tmp_path / "k.jsonl", "--quarantine", tmp_path / "q.jsonl"],
        ["mix", bad, "--vault", tmp_path / "no-vault", "--min-human", "0.1", "--out", tmp_path / "t.jsonl"],
        ["scan", bad, "--detector", "length", "--out", tmp_path / "x.parquet", "--on-error", "maybe", "--jobs", "0"],
    ]
    wants = ["bad.jsonl:2: malformed record", "", "--on-error 'maybe'"]
    for args, want in zip(cases, wants):
        p = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and want in p.stderr, p.stderr


def test_mix_counts_malformed_lines_with_their_place(corpus, tmp_path):
    from collapselab.provenance.vault import init_vault

    v = init_vault(tmp_path / "vault")
    v.add_texts([(f"h{i}", d["text"]) for i, d in enumerate(corpus["docs"][:60])], source="test",
                licence="public domain", captured_before="2020-01-01")
    v.seal("s1")
    lines = [json.dumps(d) + "\n" for d in corpus["docs"][100:400]]
    lines[250] = "not json\n"
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(UserError, match=r"in\.jsonl:251: malformed"):
        mix_corpus([inp], vault=v.path, min_human=0.1, out=tmp_path / "t.jsonl", jobs=1)
    r = mix_corpus([inp], vault=v.path, min_human=0.1, out=tmp_path / "t.jsonl", on_error="skip", jobs=1)
    assert r.input_records == 299 and r.malformed_skipped == 1 and r.malformed_lines[0]["line"] == 251
    out = (tmp_path / "t.jsonl").read_text().splitlines(True)
    assert [x for x in out if '"vault:' not in x] == lines[:250] + lines[251:]
