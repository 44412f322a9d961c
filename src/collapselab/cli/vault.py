"""``collapselab vault ...``: the human-data vault from the command line.

Each command is one call of :class:`collapselab.provenance.vault.Vault`. Bad input raises
:class:`~collapselab.errors.UserError`, which ``collapselab.cli.main`` prints on one line with exit
status 2; ``vault verify`` exits 1 when it finds any problem. Key material is never printed: the
commands show key *ids* (a fingerprint of the public key) and key file paths only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from collapselab.cli.common import JSON_HELP, QUIET_HELP, print_json, progress_bar
from collapselab.errors import UserError

vault_app = typer.Typer(
    help="The human-data vault: pre-AI human text, content-addressed, sealed in signed snapshots.",
    no_args_is_help=True,
)

VAULT_OPT = typer.Option(None, "--vault", "-V", help="The vault folder (default: $COLLAPSELAB_VAULT, else ./vault).")
SNAPSHOT_OPT = typer.Option(None, "--snapshot", metavar="NAME", help="The snapshot, as in `vault sample` and `run` (the same as the SNAPSHOT argument).")
KEY_OPT = typer.Option(None, "--signing-key", "--key", help="The vault's Ed25519 signing key (default: VAULT/private/ed25519.key). (old spelling --key: deprecated)")


def _vault_dir(vault: Optional[Path]) -> Path:
    return vault if vault is not None else Path(os.environ.get("COLLAPSELAB_VAULT", "vault"))


def _snapshot(argument: Optional[str], option: Optional[str]) -> Optional[str]:
    """A snapshot named as the argument or with --snapshot NAME (the flag every command shares)."""
    if argument is not None and option is not None and argument != option:
        raise UserError(f"snapshot {argument!r} and --snapshot {option!r}: name one snapshot.")
    return argument if argument is not None else option


def _open(vault: Optional[Path], key: Optional[Path] = None):
    from collapselab.provenance.vault import Vault

    return Vault(_vault_dir(vault), key=key)


def _echo(text: str) -> None:
    typer.echo(text)


@vault_app.command("init")
def vault_init(
    directory: Path = typer.Argument(..., metavar="DIR", help="A new or empty folder for the vault."),
    key: Optional[Path] = typer.Option(None, "--signing-key", "--key", help="Where to create the Ed25519 signing key (default: DIR/private/ed25519.key). Keep it somewhere safe. (old spelling --key: deprecated)"),
) -> None:
    """Create a vault and its Ed25519 key pair (the private key file is created mode 0600)."""
    from collapselab.provenance.vault import init_vault

    v = init_vault(directory, key=key)
    _echo(f"vault created in {v.path} (key id {v.key_id}); signing key: {v.key_path} (mode 0600, keep it private)")


@vault_app.command("add")
def vault_add(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="Files, folders, glob patterns or URLs (file://, memory://; s3://, gs://, hf:// with their fsspec backend) of .txt/.md, .jsonl(.gz), dolma .json.gz, .jsonl.zst, Parquet or a HF datasets folder; each document becomes one object."),
    source: str = typer.Option(..., "--source", help="Where the documents come from."),
    licence: str = typer.Option(..., "--licence", help="Their licence, e.g. CC-BY-4.0 or public-domain."),
    captured_before: str = typer.Option(..., "--captured-before", help="YYYY-MM-DD: the documents existed before this date."),
    vault: Optional[Path] = VAULT_OPT,
    text_field: str = typer.Option("text", "--text-field", help="JSON field / Parquet or Arrow column with the text; a dotted path for a nested one (meta.body)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Store documents content-addressed (SHA-256), deduplicated, never evicted. All or nothing: a
    malformed document adds none of them."""
    from collapselab.provenance.vault import parse_date

    parse_date(captured_before)
    v = _open(vault)
    with progress_bar("vault add: reading documents", quiet=quiet or as_json) as update:
        r = v.add(paths, source=source, licence=licence, captured_before=captured_before, text_field=text_field,
                  progress=lambda n: update(completed=n, description=f"vault add: {n:,} documents read"))
    if as_json:
        return print_json({"vault": str(v.path), "added": r.added, "present": r.present, "documents": r.documents})
    _echo(f"{r.added} added, {r.present} already present ({r.documents} documents read)")


def _snapshot_json(s) -> dict:
    return {"name": s.name, "documents": s.count, "created_at": s.created_at, "merkle_root": s.merkle_root, "key_id": s.key_id}


@vault_app.command("seal")
def vault_seal(
    name: Optional[str] = typer.Option(None, "--name", help="Snapshot name (default: snap-<UTC time>). A name is sealed once."),
    vault: Optional[Path] = VAULT_OPT,
    key: Optional[Path] = KEY_OPT,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Make an immutable snapshot of every document in the vault, its Merkle root signed (Ed25519)."""
    v = _open(vault, key)
    s = v.seal(name)
    if as_json:
        return print_json({"vault": str(v.path), **_snapshot_json(s)})
    _echo(f"sealed {s.name}: {s.count} documents, Merkle root {s.merkle_root}, key id {s.key_id}")


@vault_app.command("verify")
def vault_verify(
    snapshot: Optional[str] = typer.Argument(None, help="Check only this snapshot and its objects (default: everything)."),
    vault: Optional[Path] = VAULT_OPT,
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="A trusted copy of the vault's public key, kept elsewhere."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    snapshot_opt: Optional[str] = SNAPSHOT_OPT,
) -> None:
    """Re-hash every object, check every snapshot's signature, count and Merkle root. Exit 0 valid, 1 invalid, 2 bad input."""
    report = _open(vault).verify(_snapshot(snapshot, snapshot_opt), public_key=public_key)
    if as_json:
        print_json(report)
    else:
        _echo(str(report))
    if not report.ok:
        raise typer.Exit(1)


@vault_app.command("ls")
def vault_ls(vault: Optional[Path] = VAULT_OPT, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Snapshots and document counts."""
    v = _open(vault)
    total = len(v.hashes())
    names = v.snapshot_names()
    if as_json:
        return print_json({"vault": str(v.path), "documents": total, "key_id": v.key_id,
                           "snapshots": [_snapshot_json(v.snapshot(n, check=False)) for n in names]})
    _echo(f"{v.path}: {total} documents, {len(names)} snapshots (key id {v.key_id})")
    for n in names:
        s = v.snapshot(n, check=False)
        _echo(f"  {s.name}\t{s.count} documents\t{s.created_at}\troot {s.merkle_root[:16]}...")


def _records(v, pairs) -> list[dict]:
    meta = v.records()
    out = []
    for h, text in pairs:
        m = meta.get(h, {})
        out.append({"hash": h, "text": text, **{k: m.get(k) for k in ("source", "licence", "captured_before", "added_at")}})
    return out


def _check_out(out: Path) -> None:
    """Before any work: a .jsonl/.parquet name, not a folder, not under a file, in a writable folder."""
    from collapselab.atomic import check_output_file

    if not out.name.lower().endswith((".jsonl", ".parquet", ".pq")):
        raise UserError(f"--out {out}: write .jsonl or .parquet.")
    check_output_file(out, "--out file")


def _write(rows: list[dict], out: Path) -> None:
    """All of ``rows`` or nothing (temp file + rename): a full disk leaves no partial file."""
    from collapselab.atomic import atomic_write, atomic_write_text

    if out.name.lower().endswith(".jsonl"):
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = ["hash", "text", "source", "licence", "captured_before", "added_at"]
        table = pa.table({c: pa.array([r[c] for r in rows], type=pa.string()) for c in cols})
        atomic_write(out, lambda tmp: pq.write_table(table, tmp))


@vault_app.command("sample")
def vault_sample(
    n: int = typer.Argument(..., help="How many documents."),
    seed: int = typer.Option(..., "--seed", help="The draw depends only on the seed and the snapshot."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", metavar="NAME", help="Snapshot to draw from (default: the newest)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write .jsonl or .parquet instead of printing JSONL."),
    vault: Optional[Path] = VAULT_OPT,
) -> None:
    """N documents drawn deterministically from a snapshot."""
    if out is not None:
        _check_out(out)
    v = _open(vault)
    name = snapshot or v.latest_snapshot()
    rows = _records(v, v.sample(name, n, seed))
    if out is None:
        for r in rows:
            _echo(json.dumps(r, ensure_ascii=False))
    else:
        _write(rows, out)
        _echo(f"{len(rows)} documents from {name} written to {out}")


@vault_app.command("export")
def vault_export(
    snapshot: Optional[str] = typer.Argument(None, help="The snapshot to export (default: the newest)."),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.jsonl or FILE.parquet (written atomically)."),
    vault: Optional[Path] = VAULT_OPT,
    snapshot_opt: Optional[str] = SNAPSHOT_OPT,
) -> None:
    """Write a snapshot's documents (hash order, with their provenance) to JSONL or Parquet."""
    _check_out(out)
    v = _open(vault)
    snapshot = _snapshot(snapshot, snapshot_opt) or v.latest_snapshot()
    snap = v.snapshot(snapshot)
    rows = _records(v, zip(snap.hashes, v.texts(snapshot)))
    _write(rows, out)
    _echo(f"{len(rows)} documents from {snapshot} written to {out}")
