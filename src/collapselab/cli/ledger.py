"""``collapselab ledger``: verify the provenance ledger, print and sign its head, prove entries, export attestations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from collapselab.cli.common import JSON_HELP, console, print_json
from collapselab.jsonout import jsonable
from collapselab.errors import UserError

ledger_app = typer.Typer(help="The provenance ledger: documents, models, snapshots and pipeline steps, hash-chained.", no_args_is_help=True)


def _parse_head(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise UserError(f"--head {text!r}: write it as SEQ:HASH, as `collapselab ledger head` prints it, e.g. 42:{'0' * 64}")
    return int(seq), digest.lower()


TARGET_HELP = "A ledger file (SQLite) or a postgresql:// URL."


def _run_summary(target: str) -> Path | None:
    """``RUN/summary.json`` when ``target`` is a ledger file in a run folder whose summary holds a head."""
    if "://" in target:
        return None
    summary = Path(target).expanduser().parent / "summary.json"
    try:
        return summary if "ledger_head" in json.loads(summary.read_text(encoding="utf-8")) else None
    except (OSError, ValueError, TypeError):
        return None


@ledger_app.command("verify")
def ledger_verify(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    head: Optional[str] = typer.Option(None, "--head", help="The head kept from earlier, SEQ:HASH (see `collapselab ledger head`): also detects a cut-off or rewritten ledger."),
    sth: Optional[Path] = typer.Option(None, "--sth", help="A tree head kept from earlier (the JSON of `ledger head --sign KEY --json`, or a run's summary.json): the ledger must extend it (a consistency proof)."),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="The signer's public key (KEY.pub of `keys new-signing KEY`): the tree head's signature must be its."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recompute the hash chain and Merkle roots; name each changed, removed, reordered or inserted entry.

    A ledger in a run folder is also checked against the head in the run's summary.json.
    Exit 0 valid, 1 invalid, 2 not a ledger."""
    from collapselab.provenance.keys import load_public_key
    from collapselab.provenance.ledger import verify as verify_ledger
    from collapselab.provenance.sth import load_head

    head_file = sth if sth is not None else (_run_summary(target) if head is None else None)
    tree_head = load_head(head_file) if head_file is not None else None
    key = load_public_key(public_key) if public_key is not None else None
    if key is not None and tree_head is None:
        raise UserError("--public-key checks a signed tree head: pass it with --sth FILE")
    result = verify_ledger(target, expected_head=_parse_head(head), expected_sth=tree_head, public_key=key)
    unchecked = tree_head is not None and tree_head.signed and key is None
    if as_json:
        extra = {"tree_head_file": str(head_file) if head_file else None, "signature_checked": key is not None}
        print_json({"ok": result.ok, **jsonable(result), **extra})
    else:
        console.print(str(result), highlight=False, soft_wrap=True, markup=False)
        if tree_head is not None:
            how = "signature checked" if key is not None else ("signature NOT checked: pass --public-key" if unchecked else "unsigned")
            console.print(f"checked against the tree head of {tree_head.tree_size} entries in {head_file} ({how})",
                          highlight=False, soft_wrap=True, markup=False)
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("head")
def ledger_head(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    sign: Optional[Path] = typer.Option(None, "--sign", help="Sign the tree head with this Ed25519 key (`collapselab keys new-signing KEY`)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the newest entry as SEQ:HASH, and with --json the Merkle tree head (signed with --sign): keep it elsewhere."""
    from collapselab.provenance.ledger import Ledger

    with Ledger(target, create=False) as ledger:
        seq, digest = ledger.head()
        tree_head = ledger.sign_head(sign) if sign is not None else ledger.tree_head()
    if as_json:
        return print_json({"seq": seq, "hash": digest, "head": f"{seq}:{digest}", **tree_head.to_dict()})
    console.print(f"{seq}:{digest}", highlight=False, markup=False)
    if sign is not None:
        console.print(f"tree size {tree_head.tree_size}, root {tree_head.root_hash}, signed by key {tree_head.key_id} "
                      f"at {tree_head.timestamp} ms; save the --json output and check it later with `ledger verify --sth`",
                      highlight=False, markup=False, soft_wrap=True)


@ledger_app.command("prove")
def ledger_prove(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    entry: int = typer.Argument(..., metavar="ENTRY_SEQ", help="The entry's sequence number."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Prove that entry ENTRY_SEQ is in the ledger's current Merkle tree (an RFC 9162 inclusion proof)."""
    from collapselab.provenance.ledger import Ledger

    with Ledger(target, create=False) as ledger:
        proof = ledger.prove_entry(entry)
    if as_json:
        return print_json({"ok": proof.verify(), **jsonable(proof)})
    console.print(f"entry {proof.seq} ({proof.entry_hash}) is leaf {proof.index} of the tree of {proof.tree_size} entries, "
                  f"root {proof.root_hash}; proof of {len(proof.path)} hashes: {' '.join(proof.path) or '(none)'}",
                  highlight=False, markup=False, soft_wrap=True)


@ledger_app.command("consistency")
def ledger_consistency(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    old_size: int = typer.Argument(..., metavar="OLD_SIZE", help="The size of the older tree (a tree head's tree_size)."),
    new_size: Optional[int] = typer.Option(None, "--to", help="The newer size (default: the whole ledger)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Prove that the tree of the first OLD_SIZE entries is a prefix of the current one (RFC 9162 consistency proof)."""
    from collapselab.provenance.ledger import Ledger

    with Ledger(target, create=False) as ledger:
        proof = ledger.consistency(old_size, new_size)
    if as_json:
        return print_json({"ok": proof.verify(), **jsonable(proof)})
    console.print(f"tree of {proof.old_size} entries (root {proof.old_root}) is a prefix of the tree of {proof.new_size} "
                  f"(root {proof.new_root}); proof of {len(proof.path)} hashes: {' '.join(proof.path) or '(none)'}",
                  highlight=False, markup=False, soft_wrap=True)


@ledger_app.command("steps")
def ledger_steps(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the pipeline steps recorded (scan, filter, mix with --ledger): the files each read and wrote."""
    from collapselab.provenance.ledger import Ledger

    with Ledger(target, create=False) as ledger:
        steps = ledger.steps()
    if as_json:
        return print_json([{"seq": st.seq, "step_id": st.step_id, "name": st.name, "created_at": st.created_at,
                            "inputs": [{"name": n, "sha256": d} for n, d in st.inputs],
                            "outputs": [{"name": n, "sha256": d} for n, d in st.outputs], **st.parameters} for st in steps])
    if not steps:
        console.print(f"{target}: no pipeline steps recorded (scan, filter and mix record one with --ledger)",
                      highlight=False, markup=False, soft_wrap=True)
    for st in steps:
        console.print(f"entry {st.seq}  {st.created_at}  {st.name}: {', '.join(n for n, _ in st.inputs) or '-'} -> "
                      f"{', '.join(n for n, _ in st.outputs) or '-'}", highlight=False, markup=False, soft_wrap=True)


@ledger_app.command("export")
def ledger_export(
    target: str = typer.Argument(..., metavar="PATH_OR_URL", help=TARGET_HELP),
    fmt: str = typer.Option("in-toto", "--format", help="in-toto: DSSE-signed in-toto Statements v1, one line each."),
    key: Path = typer.Option(..., "--signing-key", "--key", help="The Ed25519 signing key (`collapselab keys new-signing KEY`). (--key: the same, kept as the vault's old spelling)"),
    out: Path = typer.Option(..., "--out", help="The JSON Lines file to write (one DSSE envelope a line)."),
) -> None:
    """Export the lineage as signed attestations: one DSSE envelope per model, per untrained snapshot and per pipeline step."""
    from collapselab.atomic import atomic_write_text
    from collapselab.provenance.intoto import export_in_toto
    from collapselab.provenance.keys import load_signing_key
    from collapselab.provenance.ledger import Ledger

    if fmt != "in-toto":
        raise UserError(f"--format {fmt!r}: the one export format is in-toto")
    private = load_signing_key(key)
    with Ledger(target, create=False) as ledger:
        envelopes = export_in_toto(ledger, private)
    atomic_write_text(out, "".join(json.dumps(e, sort_keys=True) + "\n" for e in envelopes))
    console.print(f"{len(envelopes)} DSSE envelope(s) written to {out}", highlight=False, markup=False, soft_wrap=True)
