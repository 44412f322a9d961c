"""Ray backend: two local Ray workers vs one on a 1 GB JSONL file, for ``scan --detector length``
and the one-pass ``filter --detector length`` (issue 14 item 4: target >= 1.6x).

Data: bench/bench_pipeline.py's synthetic corpus (JSONL documents of 2-40 State of the Union
sentences plus 5 % watermarked ones), ``--mb`` MB (default 1000), generated under ``--dir``
(default /tmp/collapselab-bench-ray) and deleted afterwards (``--keep`` keeps it).

In one process: one local Ray with two CPUs is started (``collapselab.backends.make_backend("ray",
jobs=2)``) and warmed up (both workers have imported the pipeline); then, interleaved, best of
``--repeat``:

- ``scan_corpus([f], detector="length", backend="ray", jobs=1)`` and the same with ``jobs=2``
  (``jobs``: Ray tasks in flight, one CPU each; the scan joins the running Ray);
- ``filter_corpus(f, detector="length", threshold=6000, backend="ray", jobs=1|2)``;
- ``scan_corpus([f], detector="watermark", ...)`` (the corpus's key and vocabulary) on the file's
  first ``--watermark-mb`` MB (250): the same map with far more work per byte, to tell the
  machine's limits from the backend's;
- for reference, the same on the local backend with one process (``backend="local", jobs=1``).

Shards of ``--shard-mb`` MiB (default 64: 15 shards for 1 GB, so two workers share them evenly).
Besides each command's wall time, its *shard phase* (from its map's start to its last shard,
through the ``progress`` callback) is timed: the part that the workers share, without the serial
planning, merge and final writes.
The sidecar of the two Ray runs and of the local run must be the same bytes, and the kept and
quarantine files too (asserted). Prints the load average before and after, and, each round, the
time of 8 equal pure-Python CPU-bound tasks on one and on two Ray workers: the parallelism this
machine offers at that moment (2.0x on two idle cores), the ceiling for any backend's ratio.

Run: ``python bench/bench_ray.py`` (about 5 minutes on 2 cores). Writes bench/out/bench_ray.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, fmt_ratio, machine, print_table, write_json  # noqa: E402
from bench_pipeline import make_data  # noqa: E402


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def burn(n: int) -> int:
    """Pure Python work, no I/O: what two workers can get out of this machine right now."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1_000_003
    return x


def parallelism(tasks: int = 8, n: int = 3_000_000) -> tuple[float, float]:
    """Seconds for ``tasks`` equal CPU-bound tasks on 1 and on 2 Ray workers (the running Ray)."""
    from collapselab.backends import make_backend

    seconds = []
    for jobs in (1, 2):
        with make_backend("ray", jobs=jobs) as b:
            t = time.perf_counter()
            b.map(burn, [n] * tasks)
            seconds.append(time.perf_counter() - t)
    return seconds[0], seconds[1]


def head(path: Path, to: Path, nbytes: int) -> Path:
    """The whole lines of ``path``'s first ``nbytes`` bytes, in ``to``."""
    with open(path, "rb") as src, open(to, "wb") as dst:
        n = 0
        for line in src:
            if n + len(line) > nbytes:
                break
            dst.write(line)
            n += len(line)
    return to


class Phase:
    """The shard phase of a command: from its map's start (0 shards done) to its last shard."""

    def __init__(self) -> None:
        self.start = self.end = None

    def __call__(self, done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if done == 0 and self.start is None:
            self.start = now
        if done == total:
            self.end = now

    @property
    def seconds(self) -> float:
        return self.end - self.start


def scan(path: Path, out: Path, backend: str, jobs: int, shard_bytes: int, **detector) -> tuple[dict, float]:
    """``detector``: ``detector="length"`` (the default), or the watermark's key and vocabulary."""
    from collapselab.pipeline import scan_corpus

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    phase = Phase()
    scan_corpus([path], out=out / "s.parquet", jobs=jobs, backend=backend, shard_bytes=shard_bytes, progress=phase,
                **(detector or {"detector": "length"}))
    return {"sidecar": digest(out / "s.parquet")}, phase.seconds


def one_pass(path: Path, out: Path, backend: str, jobs: int, shard_bytes: int, max_chars: int) -> tuple[dict, float]:
    from collapselab.pipeline import filter_corpus

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    phase = Phase()
    filter_corpus(path, detector="length", threshold=float(max_chars), out=out / "kept.jsonl",
                  quarantine=out / "q.jsonl", jobs=jobs, backend=backend, shard_bytes=shard_bytes, progress=phase)
    return {"kept": digest(out / "kept.jsonl"), "quarantine": digest(out / "q.jsonl")}, phase.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1000, help="input size in MB (default 1000)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/collapselab-bench-ray"))
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--max-chars", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--watermark-mb", type=int, default=250, help="the watermark scan's input: the first MB of the file")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    args = ap.parse_args()
    announce()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    data = make_data(args.dir, args.mb)
    path = data["path"]
    size = path.stat().st_size
    print(f"data: {path} ({size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.0f}s")
    shard_bytes = args.shard_mb << 20
    work = args.dir / "work"

    from collapselab.backends import make_backend

    steps = {"scan --detector length": lambda inp, out, backend, jobs: scan(inp, out, backend, jobs, shard_bytes),
             "filter --detector length (one pass)": lambda inp, out, backend, jobs: one_pass(inp, out, backend, jobs, shard_bytes, args.max_chars),
             "scan --detector watermark": lambda inp, out, backend, jobs: scan(inp, out, backend, jobs, shard_bytes,
                                                                               key=data["key"], vocab=data["vocab"])}
    inputs = {name: path for name in steps}
    if args.watermark_mb < args.mb:  # the watermark scan on the file's first --watermark-mb MB (it is ~15x slower)
        inputs["scan --detector watermark"] = head(path, args.dir / "head.jsonl", args.watermark_mb * 1_000_000)
    sizes = {name: p.stat().st_size for name, p in inputs.items()}
    settings = [("ray", 1), ("ray", 2), ("local", 1)]
    best: dict = {}  # whole command, best of the rounds
    phases: dict = {}  # its shard phase (the part the workers share), best of the rounds
    outputs: dict = {}
    cpu = [float("inf"), float("inf")]  # the machine's parallelism now: pure-CPU tasks on 1 and 2 workers
    try:
        t0 = time.perf_counter()
        with make_backend("ray", jobs=2) as ray_backend:
            print(f"local Ray with 2 CPUs started in {time.perf_counter() - t0:.1f}s")
            small = head(path, args.dir / "warm.jsonl", 20_000_000)  # both workers import the pipeline before timing
            scan(small, work / "warm", "ray", 2, 1 << 20)  # 1 MiB shards: work for both workers
            scan(small, work / "warm", "ray", 2, 1 << 20, key=data["key"], vocab=data["vocab"])
            one_pass(small, work / "warm", "ray", 2, 1 << 20, args.max_chars)
            for r in range(args.repeat):
                cpu1, cpu2 = parallelism()
                cpu[0], cpu[1] = min(cpu[0], cpu1), min(cpu[1], cpu2)
                print(f"  round {r + 1}: 8 CPU-bound Python tasks: 1 worker {cpu1:.1f}s, 2 workers {cpu2:.1f}s ({cpu1 / cpu2:.2f}x)")
                for name, step in steps.items():
                    for backend, jobs in settings:
                        t = time.perf_counter()
                        outputs[(name, backend, jobs)], shards = step(inputs[name], work / f"{backend}{jobs}", backend, jobs)
                        dt = time.perf_counter() - t
                        best[(name, backend, jobs)] = min(dt, best.get((name, backend, jobs), float("inf")))
                        phases[(name, backend, jobs)] = min(shards, phases.get((name, backend, jobs), float("inf")))
                        print(f"  round {r + 1}: {name}, {backend} x{jobs}: {dt:.1f}s ({sizes[name] / 1e6 / dt:.0f} MB/s; "
                              f"shards {shards:.1f}s)")
            assert ray_backend.jobs == 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    for name in steps:
        same = {str(outputs[(name, b, j)]) for b, j in settings}
        assert len(same) == 1, f"{name}: the outputs differ between backends and worker counts: {outputs}"
    load_after = os.getloadavg()
    rows, records = [], []
    for name in steps:
        one, two, local = (best[(name, "ray", 1)], best[(name, "ray", 2)], best[(name, "local", 1)])
        p1, p2 = phases[(name, "ray", 1)], phases[(name, "ray", 2)]
        mb = sizes[name] / 1e6
        rows.append([f"{name} ({mb:,.0f} MB)", f"{local:.1f}s", f"{one:.1f}s", f"{two:.1f}s", f"{mb / two:.0f} MB/s", fmt_ratio(one / two),
                     f"{p1:.1f}s / {p2:.1f}s", fmt_ratio(p1 / p2)])
        records.append({"step": name, "bytes": sizes[name], "local_1_process_s": local, "ray_1_worker_s": one,
                        "ray_2_workers_s": two, "ratio_2_vs_1": one / two, "ray_1_vs_local_1": local / one,
                        "shards_1_worker_s": p1, "shards_2_workers_s": p2, "shards_ratio_2_vs_1": p1 / p2})
    print_table(f"Ray: 2 local workers vs 1 on {size / 1e6:,.0f} MB ({args.shard_mb} MiB shards), best of {args.repeat}",
                ["step", "local, 1 process", "Ray, 1 worker", "Ray, 2 workers", "2 workers", "2 vs 1",
                 "shard phase 1 / 2", "2 vs 1 (shards)"], rows)
    print(f"the machine meanwhile: 8 pure-Python CPU-bound tasks take {cpu[0]:.1f}s on 1 worker, {cpu[1]:.1f}s on 2 "
          f"({cpu[0] / cpu[1]:.2f}x: the most any backend could give here)")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {', '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} cores)")
    print("outputs identical on local x1, Ray x1 and Ray x2: yes (sidecars, kept and quarantine SHA-256)")
    write_json("bench_ray", {"machine": machine(), "bytes": size, "shard_mb": args.shard_mb, "repeat": args.repeat,
                             "loadavg_before": list(load_before), "loadavg_after": list(load_after), "results": records,
                             "cpu_tasks_1_worker_s": cpu[0], "cpu_tasks_2_workers_s": cpu[1]})


if __name__ == "__main__":
    main()
