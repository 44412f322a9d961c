"""``collapselab ledger``: verify the provenance ledger and print its head."""

from __future__ import annotations

from typing import Optional

import typer

from collapselab.cli.common import JSON_HELP, console, print_json
from collapselab.jsonout import jsonable
from collapselab.errors import UserError

ledger_app = typer.Typer(help="The provenance ledger: documents, models and snapshots, hash-chained.", no_args_is_help=True)


def _parse_head(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise UserError(f"--head {text!r}: write it as SEQ:HASH, as `collapselab ledger head` prints it, e.g. 42:{'0' * 64}")
    return int(seq), digest.lower()


@ledger_app.command("verify")
def ledger_verify(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help="A ledger file (SQLite) or a postgresql:// URL."),
    head: Optional[str] = typer.Option(None, "--head", help="The head kept from earlier, SEQ:HASH (see `collapselab ledger head`): also detects a cut-off or rewritten ledger."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recompute the hash chain and Merkle roots; name each changed, removed, reordered or inserted entry.

    Exit 0 valid, 1 invalid, 2 not a ledger."""
    from collapselab.provenance.ledger import verify as verify_ledger

    result = verify_ledger(target, expected_head=_parse_head(head))
    if as_json:
        print_json({"ok": result.ok, **jsonable(result)})
    else:
        console.print(str(result), highlight=False, soft_wrap=True, markup=False)
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("head")
def ledger_head(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help="A ledger file (SQLite) or a postgresql:// URL."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the newest entry as SEQ:HASH: keep it elsewhere and pass it to `ledger verify --head`."""
    from collapselab.provenance.ledger import Ledger

    with Ledger(target, create=False) as ledger:
        seq, digest = ledger.head()
    if as_json:
        return print_json({"seq": seq, "hash": digest, "head": f"{seq}:{digest}"})
    console.print(f"{seq}:{digest}", highlight=False, markup=False)
