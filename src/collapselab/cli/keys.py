"""``collapselab keys``: secret key files (watermark keys, signing keys), created 0600 and never printed."""

from __future__ import annotations

from pathlib import Path

import typer

from collapselab.cli.common import console

keys_app = typer.Typer(help="Secret keys (watermark keys, Ed25519 signing keys): created 0600, never printed.", no_args_is_help=True)


@keys_app.command("new")
def keys_new(
    path: Path = typer.Argument(..., help="Where to write the key file (must not exist)."),
    scheme: str = typer.Option("collapselab", "--scheme", help="The watermark scheme the key is for: collapselab (256 "
                               "random bits, hex), hf-kgw (a hashing key), synthid (a list of keys), gumbel or gumbel-dual "
                               "(a 64-bit key). A spec file names the key file (docs/watermark.md)."),
    depth: int = typer.Option(30, "--depth", min=1, help="synthid: how many keys (the watermarking depth)."),
) -> None:
    """Create a watermark key file, readable by you only (0600). The key itself is never shown."""
    from collapselab.detect.schemes.spec import SCHEMES

    if scheme not in SCHEMES:
        raise typer.BadParameter(f"{scheme!r}: use one of {', '.join(SCHEMES)}", param_hint="--scheme")
    if scheme == "collapselab":
        from collapselab.provenance.keys import load_key, new_key_file
        from collapselab.provenance.watermark import Watermark

        new_key_file(path)
        key_id = Watermark(load_key(path)).key_id
    else:
        from collapselab.detect.schemes import build, parse_spec
        from collapselab.detect.schemes.spec import new_key, write_key

        key = new_key(scheme, depth=depth)
        key_id = build(parse_spec({"scheme": scheme, "key_file": str(path), "vocab_size": 2}), key).key_id
        write_key(scheme, path, key)
    console.print(f"{scheme} key written to {path} (mode 600); key id {key_id}", highlight=False)


@keys_app.command("new-signing")
def keys_new_signing(path: Path = typer.Argument(..., help="Where to write the signing key (must not exist); the public key goes to PATH.pub.")) -> None:
    """Create an Ed25519 signing key (PEM, 0600) for ledger tree heads and in-toto exports, and PATH.pub beside it."""
    from collapselab.provenance.keys import load_public_key, new_signing_key_file, signing_key_id

    pub = new_signing_key_file(path)
    console.print(f"signing key written to {path} (mode 600), public key to {pub}; key id {signing_key_id(load_public_key(pub))}",
                  highlight=False, markup=False, soft_wrap=True)
