"""Shared helpers for the side-by-side benchmarks: corpus loading, timing, tables, JSON output.

Every benchmark runs its peers and our code in one process on the same data, and reports ratios:
the machine is noisy and absolute times drift, ratios much less.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once, even through a pipe

OUT_DIR = Path(__file__).resolve().parent / "out"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "loadavg_1_5_15": load,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def announce() -> None:
    """Print the machine and its current load: other work on a shared machine skews timings."""
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average "
          f"{', '.join(f'{x:.2f}' for x in m['loadavg_1_5_15'] or [])} ({m['date']})")


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``fn`` and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def load_sotu():
    """The default corpus, all of it: all State of the Union addresses tokenised by collapselab."""
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents

    return build_text_corpus(sotu_documents(), name="sotu", n_train=None)


def word_lists(corpus_vocab, seqs) -> list[list[str]]:
    """The items of ``seqs`` as Python lists of words (the peers' natural input)."""
    words = corpus_vocab.words[seqs.tokens].tolist()
    off = seqs.offsets.tolist()
    return [words[off[i] : off[i + 1]] for i in range(len(off) - 1)]


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:,.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:,.1f} k"
    return f"{x:,.1f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}x"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, title_justify="left")
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for r in rows:
            t.add_row(*r)
        Console(width=220).print(t)  # the table is only as wide as its content
    except ImportError:  # plain text fallback
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        print(title)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        for r in rows:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"results written to {path}")
    return path


def write_section(path: Path, name: str, markdown: str) -> Path:
    """Put ``markdown`` into ``path`` between ``<!-- begin NAME -->`` / ``<!-- end NAME -->``,
    replacing that section if present (appending it if not), so that several scripts can each own
    a part of one results page. Atomic."""
    from collapselab.atomic import atomic_write_text

    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + after if after else "")  # one blank line before the next section
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + block
    atomic_write_text(path, new)
    return path


def publish(name: str, text: str, write: bool = True) -> None:
    """Print ``text`` and, when ``write``, put it into docs/results.md as the section ``name``."""
    print(text)
    if write:
        write_section(Path(__file__).resolve().parent.parent / "docs" / "results.md", name, text)
        print(f"docs/results.md: section {name} written")


# The reproductions (repro_*.py): a kept run folder per experiment, resumed or reused on a rerun.

SEEDS = [0, 1, 2, 3, 4]  # the results scripts' default: 5 seeds (the Nature paper's 5 runs), each its own data


def seeds_arg(text: str) -> list[int]:
    """``--seeds`` for argparse, parsed as ``collapselab run --seeds`` parses it (0-2, 0,3)."""
    import argparse

    from collapselab.cli.run import _parse_seeds
    from collapselab.errors import UserError

    try:
        return _parse_seeds(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def ci(values) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95% t interval (nan for one seed):
    :func:`collapselab.metrics.verdicts.mean_interval`."""
    from collapselab.metrics.verdicts import mean_interval

    i = mean_interval(values)
    return i.mean, (i.high - i.mean) if i.seeds > 1 else float("nan")


def fmt_ci(mean_hw: tuple[float, float], fmt: str, unit: str = "") -> str:
    """``mean ± half-width`` (the mean alone when there is no interval)."""
    import math

    m, hw = mean_hw
    return f"{m:{fmt}}{unit}" if not math.isfinite(hw) else f"{m:{fmt}}{unit} ± {hw:{fmt}}{unit}"


def pm(values, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    """Per-seed ``values`` (times ``scale``) as ``mean ± half-width of the 95% t interval``."""
    import numpy as np

    return fmt_ci(ci(np.asarray(values, dtype=float) * scale), fmt, unit)


def run_or_load(config: dict, out: Path, jobs: int):
    """Run ``config`` into ``out`` and return the :class:`collapselab.Run`; resume the run when
    ``out`` holds it unfinished; only load it when it is finished."""
    import collapselab as cl

    if (out / "config.yaml").exists():
        run = cl.load_run(out)
        have = run.config.model_dump()
        same = all(have.get(k) == v for k, v in config.items() if k != "model") and \
            all(have["model"].get(k) == v for k, v in config.get("model", {}).items())
        if not same:
            raise SystemExit(f"{out}: holds a run with other settings; pass another --out or delete it")
        if run.complete:
            print(f"{out}: finished run with these settings; rebuilding the tables only")
            return run
        print(f"{out}: resuming the unfinished run")
        return cl.run_experiment(out=out, resume=True, jobs=jobs, on_event=progress)
    return cl.run_experiment(config, out=out, jobs=jobs, on_event=progress)


def progress(ev) -> None:
    if ev.kind == "generation":
        print(f"  {ev.policy:>10} seed {ev.seed} gen {ev.generation:>2}: {ev.seconds:.0f} s", flush=True)

