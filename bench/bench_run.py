"""The default experiment end to end: wall time and peak memory of ``collapselab run``.

Runs ``collapselab run --out <temp dir> --quiet`` (the default experiment: word trigram model on
the State of the Union addresses, 10 generations, four data policies) in a subprocess and polls
the whole process tree with psutil every ~50 ms:

- peak RSS summed over the process and all its descendants (the worker processes) — the
  figure the target is about; it counts pages shared between processes once per process, so it
  over-states real use;
- peak PSS summed over the tree (shared pages split between the processes that map them: the
  physical memory actually used), read every ~4th poll because it is dearer to read;
- peak RSS of any single process, and, as a cross-check that needs no polling, the kernel's
  ``ru_maxrss`` of the largest waited-for descendant.

The tree's CPU time (user + sys, from ``getrusage(RUSAGE_CHILDREN)``) is also reported: on a
shared, loaded machine wall time grows with other people's work, CPU time much less; CPU time /
cores is the wall time the run would need on idle cores with perfect parallelism.

Polling can miss a peak shorter than the interval. Targets: under 60 s wall on 2 cores, peak
memory under 2 GB (GB = 10**9 bytes; GiB also shown).

Run: ``python bench/bench_run.py [--repeat N] [-- extra collapselab run args]``
(writes bench/out/bench_run.json). About 1 minute per repeat.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, print_table, write_json  # noqa: E402

POLL_S = 0.05
PSS_EVERY = 4
TARGET_WALL_S = 60.0
TARGET_PEAK_B = 2e9


def command(out: Path, extra: list[str]) -> list[str]:
    exe = shutil.which("collapselab")
    base = [exe] if exe else [sys.executable, "-c", "from collapselab.cli import app; app()"]
    return [*base, "run", "--out", str(out), "--quiet", *extra]


def role(p: psutil.Process, root: psutil.Process) -> str:
    if p.pid == root.pid:
        return "collapselab run (parent)"
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "multiprocessing" in cmd or "spawn_main" in cmd or "forkserver" in cmd:
        return "worker"
    return cmd[:60]


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def measure_once(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="collapselab-bench-") as tmp:
        out = Path(tmp) / "run"
        cmd = command(out, extra)
        load0 = list(os.getloadavg())
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        root = psutil.Process(popen.pid)
        peak_sum_rss = peak_single_rss = peak_sum_pss = 0
        max_procs = polls = 0
        pids: set[int] = set()
        per_proc: dict[int, dict] = {}
        # drain output in a thread-free way: the run is --quiet, its output is small
        while popen.poll() is None:
            procs = tree(root)
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                peak_single_rss = max(peak_single_rss, rss)
                pids.add(p.pid)
                entry = per_proc.get(p.pid)
                if entry is None:
                    entry = per_proc[p.pid] = {"role": role(p, root), "peak_rss_bytes": 0}
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
            peak_sum_rss = max(peak_sum_rss, total)
            max_procs = max(max_procs, len(procs))
            if polls % PSS_EVERY == 0:
                pss = 0
                for p in procs:
                    try:
                        pss += p.memory_full_info().pss
                    except (psutil.Error, AttributeError):
                        continue
                peak_sum_pss = max(peak_sum_pss, pss)
            polls += 1
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        output = popen.stdout.read().decode(errors="replace") if popen.stdout else ""
        ok = popen.returncode == 0 and (out / "summary.json").exists()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru = ru1.ru_maxrss * 1024  # KiB on Linux
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return dict(
        command=" ".join(cmd), returncode=popen.returncode, finished=ok, wall_s=wall, cpu_s=cpu,
        loadavg_before_after=[load0, list(os.getloadavg())],
        peak_tree_rss_bytes=peak_sum_rss, peak_tree_pss_bytes=peak_sum_pss,
        peak_single_rss_bytes=peak_single_rss, ru_maxrss_children_bytes=ru,
        max_processes=max_procs, distinct_pids=len(pids), polls=polls,
        per_process=sorted(per_proc.values(), key=lambda e: -e["peak_rss_bytes"]),
        output_tail=output[-2000:],
    )


def main() -> None:
    announce()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs to make (the best wall time is kept)")
    ap.add_argument("extra", nargs="*", help="extra arguments for `collapselab run` (after --)")
    args = ap.parse_args()
    runs = []
    for i in range(args.repeat):
        r = measure_once(args.extra)
        runs.append(r)
        print(f"run {i + 1}: rc {r['returncode']}, {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
              f"load average before {r['loadavg_before_after'][0][0]:.2f}, tree RSS peak "
              f"{r['peak_tree_rss_bytes'] / 1e9:.2f} GB, tree PSS peak {r['peak_tree_pss_bytes'] / 1e9:.2f} GB")
        for e in r["per_process"]:
            print(f"    peak RSS {e['peak_rss_bytes'] / 1e9:5.2f} GB  {e['role']}")
        if not r["finished"]:
            print("the run failed or left no summary.json; its output:\n" + r["output_tail"])
    best = min(runs, key=lambda r: r["wall_s"])
    peak = max(r["peak_tree_rss_bytes"] for r in runs)
    pss = max(r["peak_tree_pss_bytes"] for r in runs)
    single = max(r["peak_single_rss_bytes"] for r in runs)
    ru = max(r["ru_maxrss_children_bytes"] for r in runs)
    gb = lambda b: f"{b / 1e9:.2f} GB ({b / 2**30:.2f} GiB)"  # noqa: E731
    rows = [
        ["wall time", f"{best['wall_s']:.1f} s", f"{TARGET_WALL_S:.0f} s", f"{best['wall_s'] / TARGET_WALL_S:.2f}",
         "MET" if best["wall_s"] < TARGET_WALL_S else "MISSED"],
        ["CPU time, whole tree (user+sys)", f"{best['cpu_s']:.1f} s", "-", "-",
         f"= {best['cpu_s'] / (os.cpu_count() or 1):.1f} s of wall on {os.cpu_count()} idle cores at best"],
        ["peak RSS, whole tree (summed)", gb(peak), "2 GB", f"{peak / TARGET_PEAK_B:.2f}",
         "MET" if peak < TARGET_PEAK_B else "MISSED"],
        ["peak PSS, whole tree (summed)", gb(pss), "2 GB", f"{pss / TARGET_PEAK_B:.2f}",
         "MET" if pss < TARGET_PEAK_B else "MISSED"],
        ["peak RSS, one process", gb(single), "-", "-", ""],
        ["ru_maxrss, largest child", gb(ru), "-", "-", ""],
        ["processes (max at once)", str(max(r["max_processes"] for r in runs)), "-", "-", ""],
    ]
    print_table(
        f"`collapselab run` (default experiment), {os.cpu_count()} cores; ratio = measured / target (< 1 is good)",
        ["measure", "value", "target", "ratio", "status"], rows,
    )
    all_ok = all(r["finished"] for r in runs)
    if not all_ok:
        print("WARNING: at least one run did not finish cleanly")
    write_json("bench_run", {
        "runs": runs,
        "best_wall_s": best["wall_s"],
        "peak_tree_rss_bytes": peak,
        "peak_tree_pss_bytes": pss,
        "peak_single_rss_bytes": single,
        "targets": {
            "wall_s": {"target": TARGET_WALL_S, "value": best["wall_s"], "ratio": best["wall_s"] / TARGET_WALL_S,
                       "met": best["wall_s"] < TARGET_WALL_S},
            "peak_tree_rss": {"target_bytes": TARGET_PEAK_B, "value": peak, "ratio": peak / TARGET_PEAK_B,
                              "met": peak < TARGET_PEAK_B},
        },
        "all_runs_finished": all_ok,
    })


if __name__ == "__main__":
    main()
