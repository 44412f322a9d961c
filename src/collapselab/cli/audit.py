"""``collapselab audit SAMPLES --reference REF``: an early-collapse check, one call of
:func:`collapselab.report.audit.audit` (the measures, tests and verdict rules are documented there
and in docs/audit.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from collapselab.cli.common import JSON_HELP, QUIET_HELP, console, print_json, progress_bar

ARROWS = {-1: "↓", 1: "↑", 0: "±"}
VERDICT_STYLE = {"no evidence": "green", "early signs": "yellow", "collapse": "bold red"}


def audit_cmd(
    samples: Path = typer.Argument(..., metavar="SAMPLES", help="The model's outputs: a run's sample shard (runs/<id>/samples/<policy>/seed<s>/genGG.parquet), JSONL, Parquet or .txt."),
    reference: Path = typer.Option(..., "--reference", "-r", metavar="REF", help="Human reference text or a previous model version's outputs (same formats)."),
    text_field: str = typer.Option("text", "--text-field", help="The field (JSONL) or column (Parquet) holding the text."),
    n: Optional[int] = typer.Option(None, "--n", "--sample-size", help="Sentences per side of each test (default: all of SAMPLES, at most half of REF; the judge is fitted on the rest of REF)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw: the sentences used, the split of REF, the permutations."),
    permutations: int = typer.Option(999, "--permutations", help="Permutations (p-values are multiples of 1/(permutations+1)); they also give the ratios' 95% intervals and the power."),
    alpha: float = typer.Option(0.05, "--alpha", help="Family-wise error rate over all measures (Holm-Bonferroni)."),
    order: int = typer.Option(3, "--order", min=1, help="Order of the n-gram judge fitted on REF (perplexity)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Is SAMPLES measurably less diverse than REF? Permutation tests, Holm-corrected, and a verdict.

    Diversity (distinct-n, MATTR, entropy, self-BLEU), tail retention, novel 4-grams and
    perplexity under an n-gram fitted on part of REF are compared with an equal-sized sample of
    the rest of REF. Verdict: no evidence, early signs or collapse (rules: docs/audit.md)."""
    from collapselab.report.audit import audit

    with progress_bar("audit", quiet=quiet or as_json) as update:
        def progress(done: int, total: int, what: str) -> None:
            update(completed=done, total=total, description=f"audit: {what}")

        result = audit(samples, reference, seed=seed, n=n, text_field=text_field, permutations=permutations,
                       alpha=alpha, order=order, progress=progress)
    if as_json:
        return print_json(result.to_dict())
    print_audit(result)


def _num(x: Optional[float], decimals: Optional[int] = None) -> str:
    if x is None:
        return "-"
    if decimals is not None:
        return f"{x:.{decimals}f}"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def print_audit(r) -> None:
    t = Table(title=escape(f"audit: {r.samples_path} vs {r.reference_path}"), title_justify="left",
              box=None, pad_edge=False, header_style="bold")
    for head in ("Measure", "Samples", "Ref", "Ratio (95% CI)", "p", "Power", "Signal"):
        t.add_column(head, justify="left" if head in ("Measure", "Signal") else "right", no_wrap=True)
    for m in r.measures:
        ratio = "-" if m.ratio is None else f"{m.ratio:.3f} ({_num(m.ratio_ci[0], 2)}-{_num(m.ratio_ci[1], 2)})"
        signal = "[red]clear[/red]" if m.clear else "[yellow]early[/yellow]" if m.collapse_like else (
            "differs" if m.significant else "")
        t.add_row(f"{m.name} {ARROWS[m.direction]}", _num(m.samples), _num(m.reference), ratio, f"{m.p_holm:.2g}",
                  f"{m.power:.0%}", signal)
    console.print(t)
    console.print(f"[dim]{r.n} sentences a side; the judge (order {r.judge_order}), rare words and 4-grams from the other "
                  f"{r.n_fit} sentences of REF; {r.permutations} permutations, seed {r.seed}, "
                  f"p: Holm-adjusted, alpha {r.alpha} family-wise; the arrow: the collapse direction. Signal: clear = significant towards collapse by more than 5%, early = significant towards collapse, differs = significant the other way or no collapse direction (±). Power: at alpha/measures for the observed effect.[/dim]")
    console.print(f"Verdict: [{VERDICT_STYLE[r.verdict]}]{r.verdict}[/{VERDICT_STYLE[r.verdict]}] ({escape(r.reason)})", highlight=False)
    console.print(f"[dim]Rules: {r.rules}[/dim]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``audit`` to ``app`` as a top-level command."""
    app.command("audit")(audit_cmd)
