"""``collapselab keys``: secret key files (watermark keys), created 0600 and never printed."""

from __future__ import annotations

from pathlib import Path

import typer

from collapselab.cli.common import console

keys_app = typer.Typer(help="Secret keys (watermark keys): created 0600, never printed.", no_args_is_help=True)


@keys_app.command("new")
def keys_new(path: Path = typer.Argument(..., help="Where to write the key file (must not exist).")) -> None:
    """Create a 256-bit key file, readable by you only (0600). The key itself is never shown."""
    from collapselab.provenance.keys import load_key, new_key_file
    from collapselab.provenance.watermark import Watermark

    new_key_file(path)
    console.print(f"key written to {path} (mode 600); key id {Watermark(load_key(path)).key_id}")
