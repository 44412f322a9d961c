"""``collapselab compose | gate``: training-data transparency (the EU AI Act's public summary) and a CI gate.

Each command is one call of :mod:`collapselab.report.compose` (and :mod:`collapselab.report.gate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from collapselab.cli.common import JSON_HELP, print_json

KIND_HELP = ("NAME=KIND: declare a source's kind (public, licensed, crawled, user, other); NAME is a vault source or an "
             "input file of the mix; repeatable.")

# the inputs compose and gate share (one OptionInfo each, used by both commands)
TRAINSET = typer.Argument(..., metavar="TRAINSET", help="The training set (JSONL or Parquet), e.g. the TRAIN.jsonl "
                                                         "`collapselab mix` wrote.")
MANIFEST = typer.Option(None, "--manifest", help="The mix manifest (default: TRAINSET.json beside it, when there).")
SCORES = typer.Option([], "--scores", help="A scan sidecar S.parquet (its manifest S.parquet.json beside it); repeatable.")
LEDGER = typer.Option([], "--ledger", help="A provenance ledger (SQLite file, postgresql:// URL, or a run folder holding "
                                           "ledger.sqlite); repeatable.")
VAULT = typer.Option(None, "--vault", "-V", help="The vault folder (default: the one the mix manifest names).")
SNAPSHOT = typer.Option(None, "--snapshot", help="The vault snapshot (default: the one the mix manifest names, else the latest).")
FILTERED = typer.Option([], "--filtered", help="A file `collapselab filter` kept (its manifest KEPT.json beside it); repeatable.")
TEXT_FIELD = typer.Option(None, "--text-field", help="The field holding the text (default: the mix's).")


def _compose(trainset, manifest, scores, ledger, vault, snapshot, filtered, kind, text_field):
    from collapselab.report.compose import compose_trainset, parse_kinds

    return compose_trainset(trainset, manifest=manifest, scores=scores, ledgers=ledger, vault=vault, snapshot=snapshot,
                            filtered=filtered, kinds=parse_kinds(kind), text_field=text_field)


def compose_cmd(
    trainset: Path = TRAINSET,
    manifest: Optional[Path] = MANIFEST,
    scores: List[Path] = SCORES,
    ledger: List[str] = LEDGER,
    vault: Optional[Path] = VAULT,
    snapshot: Optional[str] = SNAPSHOT,
    filtered: List[Path] = FILTERED,
    kind: List[str] = typer.Option([], "--kind", help=KIND_HELP),
    text_field: Optional[str] = TEXT_FIELD,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the summary as OUT.md and OUT.json (default: print the Markdown)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The public summary of a training set's content (EU template, July 2025), every number traced.

    Provenance per document, from the SHA-256 of its text: verified human (in the sealed vault
    snapshot, or recorded human in a ledger), synthetic (recorded synthetic in a ledger, with its
    generating model and depth), else unverified."""
    from collapselab.atomic import atomic_write_text, check_output_file
    from collapselab.jsonout import dumps

    paths = None
    if out is not None:
        stem = Path(str(out)[: -len(out.suffix)]) if out.suffix in (".md", ".json") else out
        paths = (Path(str(stem) + ".md"), Path(str(stem) + ".json"))
        for p in paths:
            check_output_file(p, "--out")
    c = _compose(trainset, manifest, scores, ledger, vault, snapshot, filtered, kind, text_field)
    if paths is not None:
        atomic_write_text(paths[0], c.markdown())
        atomic_write_text(paths[1], dumps(c.to_dict(), indent=2) + "\n")
    if as_json:
        print_json(c.to_dict())
    elif paths is None:
        typer.echo(c.markdown())
    else:
        p = c.data["provenance"]
        typer.echo(f"{c.value('general', 'documents')} documents: verified human "
                   f"{p['verified_human']['share']['value']:.2%}, synthetic {p['synthetic']['share']['value']:.2%}, "
                   f"unverified {p['unverified']['share']['value']:.2%}. Wrote {paths[0]} and {paths[1]}.")


def gate_cmd(
    trainset: Path = TRAINSET,
    policy: Path = typer.Option(..., "--policy", help="The policy YAML: min_verified_human_share, max_synthetic_depth, "
                                                      "max_flagged_share, max_unverified_share (all optional)."),
    manifest: Optional[Path] = MANIFEST,
    scores: List[Path] = SCORES,
    ledger: List[str] = LEDGER,
    vault: Optional[Path] = VAULT,
    snapshot: Optional[str] = SNAPSHOT,
    filtered: List[Path] = FILTERED,
    text_field: Optional[str] = TEXT_FIELD,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Pass (exit 0) or fail (exit 1, one line per reason) a training set against a policy; bad input exits 2."""
    from collapselab.report.gate import gate, load_policy

    rules = load_policy(policy)  # a bad policy fails before the training set is read
    result = gate(_compose(trainset, manifest, scores, ledger, vault, snapshot, filtered, [], text_field), rules)
    if as_json:
        print_json(result.to_dict())
    elif result.passed:
        typer.echo(f"PASS: {trainset} meets {policy} ({len(result.rules)} rules).")
    else:
        typer.echo(f"FAIL: {trainset} does not meet {policy}:")
        for r in result.reasons:
            typer.echo(f"  {r}")
    if not result.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("compose")(compose_cmd)
    app.command("gate")(gate_cmd)
