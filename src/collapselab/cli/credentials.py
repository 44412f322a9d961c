"""``collapselab credentials``: make a signing chain, sign images and text shards, verify them.

Wire it into the main CLI with ``app.add_typer(credentials_app, name="credentials")``. Errors are
raised as :class:`~collapselab.errors.UserError`, which ``collapselab.cli.main`` prints on one line
with exit status 2. ``verify`` exits 0 valid (trusted, when --trust is given), 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from collapselab.cli.common import JSON_HELP, console, print_json
from collapselab.errors import UserError
from collapselab.jsonout import jsonable

credentials_app = typer.Typer(
    help="Content credentials: C2PA manifests on PNG images, signed sidecar manifests on text shards.",
    no_args_is_help=True,
)
_console = console


@credentials_app.command("init")
def init(
    folder: Path = typer.Argument(..., metavar="DIR", help="Folder for the root CA and the signing certificate (created)."),
    name: str = typer.Option("collapselab", "--name", help="Name in the certificates' subjects."),
    days: int = typer.Option(3650, "--days", min=1, help="Validity of the certificates in days."),
    force: bool = typer.Option(False, "--force", help="Replace credentials already in DIR."),
) -> None:
    """Create a local certificate chain: a root CA and a leaf signing certificate (ES256).
    Private keys are written 0600 and never printed. Pass DIR to `verify --trust` to check trust."""
    from collapselab.provenance.credentials import init_credentials

    paths = init_credentials(folder, name=name, days=days, force=force)
    _console.print(
        f"Credentials in {paths.folder}: root CA {paths.root_cert.name}, signing certificate {paths.leaf_cert.name}, "
        f"chain {paths.chain.name}; private keys {paths.root_key.name} and {paths.leaf_key.name} (0600, keep them private).",
        highlight=False, markup=False, soft_wrap=True,
    )


@credentials_app.command("sign")
def sign(
    file: Path = typer.Argument(..., metavar="FILE", help="A .png image, or a .jsonl/.txt text shard."),
    credentials: Path = typer.Option(..., "--credentials", "-c", help="Folder made by `collapselab credentials init`."),
    model: str = typer.Option(..., "--model", help="Id of the model that produced the content."),
    generation: int = typer.Option(..., "--generation", min=0, help="The model's generation."),
    origin: str = typer.Option("synthetic", "--origin", help="Text shards: where the text came from: human, synthetic or unknown."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Images: where to write the signed PNG (default: replace FILE)."),
) -> None:
    """Sign FILE: a PNG gets an embedded C2PA manifest (trained algorithmic media, model, generation);
    a text shard gets a signed sidecar FILE.manifest.json."""
    from collapselab.provenance import credentials as cred

    cred.check_origin(origin)  # for an image too: a wrong --origin is never silently ignored
    suffix = file.suffix.lower()
    if suffix == ".png":
        written = cred.sign_png(file, out or file, model_id=model, generation=generation, credentials_dir=credentials)
    elif suffix in cred.TEXT_SUFFIXES:
        if out is not None:
            raise UserError("--out: text shards are not rewritten; their manifest is always written next to them as FILE.manifest.json.")
        written = cred.sign_text_shard(file, origin=origin, model_id=model, generation=generation, credentials_dir=credentials)
    else:
        if not file.exists():
            raise UserError(f"{file}: no such file.")
        raise UserError(f"{file}: unsupported format {suffix or '(no suffix)'!r}. Sign .png images or .jsonl/.txt text shards.")
    _console.print(f"Signed: {written}", highlight=False, markup=False, soft_wrap=True)


@credentials_app.command("verify")
def verify(
    file: Path = typer.Argument(..., metavar="FILE", help="A signed .png, or a .jsonl/.txt shard with its FILE.manifest.json."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Trust anchor: a credentials folder (its root.pem) or a PEM certificate."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check the signature and hashes: prints valid / trusted / invalid with the reasons.
    Exit 0 valid (and trusted when --trust is given), 1 invalid, 2 bad input."""
    from collapselab.provenance.credentials import verify as verify_file

    result = verify_file(file, trust=trust)
    if as_json:
        print_json({"ok": result.ok, "status": result.status, **jsonable(result)})
    else:
        _console.print(str(result), highlight=False, markup=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)
