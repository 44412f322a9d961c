"""``collapselab run | report | lineage``: the loop from the command line, one call of the Python API each."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from collapselab.cli.common import JSON_HELP, QUIET_HELP, console, err_console, print_json, progress_bar
from collapselab.cli.options import config_values, parse_seeds, run_parameters
from collapselab.errors import UserError

_parse_seeds = parse_seeds  # its old name (bench scripts import it)


def print_tree(run) -> None:
    from rich.tree import Tree

    from collapselab.report.table import tree_nodes

    nodes = tree_nodes(run.metrics, run.config.diversity_metric, run.config.kind)
    kids: dict = {}
    for n in nodes.values():
        kids.setdefault(n.parent, []).append(n)

    def grow(tree, parent) -> None:
        for n in sorted(kids.get(parent, []), key=lambda n: n.label):
            name = n.label.rsplit(">", 1)[-1]
            grow(tree.add(f"[bold]{name}[/bold]  {n.diversity:.0%}  [dim]{n.degradation}[/dim]"), n.label)

    root = nodes["root"]
    tree = Tree(f"[bold]generation 0[/bold] (human data)  100%  [dim]{root.degradation}[/dim]")
    grow(tree, "root")
    console.print(tree)
    console.print(f"[dim]Each model's children are trained on its output, one per policy. {run.caption()}[/dim]")


def print_matrix(run) -> None:
    """The mitigation matrix of a ``--preset defences`` run (collapselab.presets)."""
    from collapselab.presets import format_matrix, mitigation_matrix

    heads, rows = format_matrix(mitigation_matrix(run.metrics, run.config.policies, run.config.diversity_metric))
    t = Table(title="Defences against the contaminated web", title_justify="left")
    for i, h in enumerate(heads):
        t.add_column(h, justify="left" if i == 1 else "right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    console.print(f"[dim]Ranked by mean rank over the first four columns; rare facts: planted 1, 2 or 4 times; "
                  f"{len(run.config.seeds)} seed(s), ± one standard deviation. Each defence's policy spec: docs/defences.md.[/dim]")


def print_table(run) -> None:
    if run.config.tree:
        return print_tree(run)
    for block in run.table():
        t = Table(title=f"policy: {block.policy}", title_justify="left", show_lines=False)
        t.add_column("Generation", justify="right")
        t.add_column("Output diversity (relative)", justify="right")
        t.add_column("Degradation observed")
        for g, d, spread, text in block.rows:
            div = f"{d:.0%}" + (f" ± {spread:.0%}" if spread > 0 else "")
            t.add_row(str(g), div, text)
        console.print(t)
    console.print(f"[dim]{run.caption()}[/dim]")


def run(
    config: Optional[Path] = typer.Argument(None, help="YAML or TOML config file; flags below override it."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<run-id>)."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run: the one in --out, else the newest unfinished run in runs/."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Processes running policy chains side by side (default: one per core). Results do not depend on it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Implies --quiet."),
    **settings,
) -> None:
    """Run the self-consuming loop and print the article's table.

    With no arguments: a word trigram model learns from 20,000 sentences of the State of the Union
    addresses, then 10 generations each learn from what the previous one wrote, under the
    replace, accumulate, anchor:0.1 and fresh:0.1 data policies side by side.
    """
    from collapselab.api import run_experiment
    from collapselab.config import load_config
    from collapselab.loop.engine import default_jobs
    from collapselab.presets import preset_config

    values = config_values(settings)
    preset = values.pop("preset", None)  # the preset's settings come first, the file's and the flags' on top
    cfg = None
    if not resume:
        cfg = load_config(config, defaults=preset_config(preset) if preset else None, **values)
    elif config is not None or values["model"] or len(values) > 1:
        err_console.print("[yellow]--resume uses the run's own config; the other options are ignored.[/yellow]")

    with progress_bar("loading corpus", quiet=quiet or as_json) as update:
        def on_event(e) -> None:
            if e.kind == "start":
                update(total=e.total, completed=e.generation, description="training")
            elif e.kind == "generation":
                what = "generation 0 (human data)" if e.policy == "all" else f"{e.policy} gen {e.generation}"
                update(advance=1, description=f"seed {e.seed} · {what} ({e.seconds:.1f}s)")
            elif e.kind == "done":
                update(description="plots and summary")
            elif e.kind == "note":
                err_console.print(f"[yellow]note:[/yellow] {escape(e.message)}", highlight=False, soft_wrap=True)

        try:
            result = run_experiment(cfg, out=out, resume=resume, jobs=jobs or default_jobs(len(cfg.seeds) * len(cfg.policies) if cfg else 4), on_event=on_event)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: finished generations are saved; continue with `collapselab run --resume`.[/yellow]")
            raise typer.Exit(130)
    if as_json:
        return print_json(run_record(result))
    if result.config.preset == "defences":
        print_matrix(result)
    else:
        print_table(result)
    s = result.summary
    console.print(f"\nRun folder: [bold]{result.path}[/bold]  ({s.get('seconds', 0):.1f}s) — metrics.parquet, samples/, plots/, summary.json")


def run_record(r) -> dict:
    """What ``run --json`` and ``report --json`` print: the folder, the settings, the table, the last
    generation's metrics and the summary."""
    from collapselab.report.table import table_records

    c = r.config
    return {"run": str(r.path), "complete": r.complete, "family": c.family, "corpus": c.corpus,
            "policies": c.policies, "seeds": c.seeds, "generations": c.generations,
            "diversity_metric": c.diversity_metric, "caption": r.caption(),
            "table": table_records(r.table()) if not c.tree else None,
            "metrics": r.metrics.to_dict("records"), "summary": r.summary}


def report(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders made by `collapselab run` (several: side by side in --html)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Re-draw the PNG plots into RUN/plots (skipped, with a note, when the folder is read-only)."),
    html: bool = typer.Option(False, "--html", help="Also write one self-contained HTML report (charts, tables, samples, lineage; opens offline): RUN/report.html, or report.html here for several runs."),
    html_out: Optional[Path] = typer.Option(None, "--html-out", metavar="FILE", help="Where --html writes the page (implies --html)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Re-print a run's table and re-draw its plots from the folder alone; --html writes a page people can read."""
    from collapselab.api import load_run

    runs = []
    for run_dir in run_dirs:
        r = load_run(run_dir)
        if r.metrics.empty:
            raise UserError(f"{run_dir}: the run has no finished generation yet. Continue it with `collapselab run --resume --out {run_dir}`.")
        if not r.complete:
            err_console.print(f"[yellow]{run_dir}: unfinished run; showing the generations it finished. Continue it with `collapselab run --resume --out {run_dir}`.[/yellow]")
        runs.append(r)
    if html or html_out is not None:  # checked before any work, so a bad path costs nothing
        from collapselab.atomic import check_output_file

        html_out = check_output_file(html_out or (runs[0].path / "report.html" if len(runs) == 1 else Path("report.html")), "--html-out")
    if as_json:
        records = [run_record(r) for r in runs]
        print_json(records[0] if len(records) == 1 else {"runs": records})
    else:
        for r in runs:
            print_table(r)
    if html_out is not None:
        from collapselab.report.html import write

        write(runs, html_out)
        err_console.print(f"HTML report: [bold]{escape(str(html_out))}[/bold]", highlight=False, soft_wrap=True)
    if not plots:
        return
    for r in runs:
        try:
            paths = r.plot()
        except OSError as e:  # a read-only or full run folder: the table is printed, the old plots stay as they were
            from collapselab.oserrors import describe

            err_console.print(f"[yellow]note: plots not re-drawn ({escape(describe(e))}); the table above is complete.[/yellow]",
                              highlight=False, soft_wrap=True)
            continue
        if not as_json:
            console.print(f"\nPlots: {', '.join(str(p) for p in paths[:3])} … ({len(paths)} files in {r.folder.plots_dir})")


def lineage(
    run_dir: Path = typer.Argument(..., help="A run folder made by `collapselab run`."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the run's model lineage from its ledger: who learned from whose output, and how deep.

    A model's synthetic depth is the longest chain of model-made data behind it."""
    from collapselab.report.lineage import lineage as read_lineage
    from collapselab.report.lineage import render

    nodes = read_lineage(run_dir / "ledger.sqlite")
    if as_json:
        return print_json({"run": str(run_dir), "models": list(nodes.values())})
    console.print(render(nodes, str(run_dir)))


def _with_config_options(command):
    """``command``'s signature with one option per config setting (:mod:`collapselab.cli.options`)
    after its config argument, in place of ``**settings``: what typer reads."""
    own = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(command).parameters.values() if p.kind != p.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(own[:1] + run_parameters() + own[1:])
    return command


_with_config_options(run)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``report`` and ``lineage`` to ``app``."""
    app.command("run")(run)
    app.command("report")(report)
    app.command("lineage")(lineage)
