"""``collapselab sweep CONFIG``: a grid of experiments, each (point, seed, policy) chain a task
on the local process pool or on Ray; one call of :func:`collapselab.loop.sweep.run_sweep`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from collapselab.cli.common import JSON_HELP, QUIET_HELP, console, err_console, print_json, progress_bar


def sweep_cmd(
    config: Path = typer.Argument(..., help="YAML or TOML: an experiment config (the settings of `collapselab run`) plus "
                                            "grid: {SETTING: [VALUES...], ...}; seeds: and policies: as in a run."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The sweep folder (default runs/sweep-<config name>). "
                                                                  "Rerunning into it skips the finished chains."),
    backend: str = typer.Option("local", "--backend", help="'local' (processes on this machine) or 'ray' (each chain a Ray "
                                                           "task; needs the ray extra). The output is the same on either."),
    address: Optional[str] = typer.Option(None, "--address", help="With --backend ray: the cluster to join ('auto', "
                                                                  "'ray://HOST:10001'); default: a local Ray on this machine."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Chains running at once (default: one per core, "
                                                                         "or per CPU of the Ray cluster)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Implies --quiet."),
) -> None:
    """Run an experiment over a grid of settings × seeds × policies and merge every chain's metrics.

    Each chain (one grid point, one seed, one policy) is one `collapselab run` into
    OUT/chains/pointNNN/seedS/POLICY; OUT/metrics.parquet holds all their rows with a column per
    grid setting. A killed sweep rerun with the same command continues where it stopped.
    """
    from collapselab.loop.sweep import run_sweep

    out = out or Path("runs") / f"sweep-{config.stem}"
    with progress_bar("chains", quiet=quiet or as_json) as update:
        def progress(done: int, total: int, what: str) -> None:
            update(completed=done, total=total, description=what)

        try:
            sweep = run_sweep(config, out, backend=backend, jobs=jobs, address=address, progress=progress)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted: finished chains are saved; rerun the same command to continue "
                              f"({escape(str(out))}).[/yellow]", highlight=False, soft_wrap=True)
            raise typer.Exit(130)
    s = sweep.summary
    if as_json:
        return print_json({"sweep": str(sweep.path), "metrics": str(sweep.path / "metrics.parquet"), **s})
    print_summary(s)
    console.print(f"\nSweep folder: [bold]{escape(str(sweep.path))}[/bold] ({s['chains']} chains: {s['ran']} run, "
                  f"{s['skipped']} already finished; {s['seconds']:.1f}s) — metrics.parquet, chains/, summary.json",
                  highlight=False, soft_wrap=True)


def print_summary(summary: dict) -> None:
    """The last generation's output diversity (relative to generation 0) per point and policy."""
    keys = list(summary["grid"])
    t = Table(title="Output diversity at the last generation, relative to generation 0", title_justify="left")
    for k in ["point", *keys, "policy", "metric", "diversity"]:
        t.add_column(k, justify="right" if k in ("point", "diversity") else "left")
    for r in summary["final"]:
        div = f"{r['diversity_relative']:.0%}" + (f" ± {r['diversity_spread']:.0%}" if r["diversity_spread"] > 0 else "")
        t.add_row(str(r["point"]), *(str(r[k]) for k in keys), r["policy"], r["diversity_metric"], div)
    console.print(t)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` to ``app``."""
    app.command("sweep")(sweep_cmd)
