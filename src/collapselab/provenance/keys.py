"""Secret key files: created 0600, read only when private, never printed or logged.

Two kinds: a *watermark key* (:func:`new_key_file`, :func:`load_key`) and an Ed25519 *signing
key* (:func:`new_signing_key_file`, :func:`load_signing_key`), the vault's PEM format, that signs
ledger tree heads and in-toto attestations; its public key lies beside it as ``FILE.pub``.

A watermark key file holds 32 random bytes as 64 hex digits and a newline. Reading one fails closed: a
missing file, one that others may read, or one that does not hold at least 128 bits of hex is a
:class:`UserError` (the message names the file, never its content).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from collapselab.atomic import check_output_file
from collapselab.errors import UserError
from collapselab.provenance import core

MIN_KEY_BYTES = 16


def new_key_file(path: str | os.PathLike) -> Path:
    """Write a fresh 256-bit key to ``path`` (mode 0600); refuses to overwrite."""
    path = Path(path)
    check_output_file(path, "key")
    return core.write_secret_file(path, (secrets.token_bytes(32).hex() + "\n").encode("ascii"))


def load_key(path: str | os.PathLike) -> bytes:
    path = core.check_secret_file(path, "key file", f"Create one with `collapselab keys new {path}`.")
    text = path.read_bytes().strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path}: not a key file (expected hex digits). Create one with `collapselab keys new FILE`.") from None
    if len(key) < MIN_KEY_BYTES:
        raise UserError(f"{path}: the key has {len(key) * 8} bits, fewer than 128. Create a new one with `collapselab keys new FILE`.")
    return key


def new_signing_key_file(path: str | os.PathLike) -> Path:
    """Write a fresh Ed25519 signing key to ``path`` (PEM, mode 0600) and its public key to
    ``path.pub`` (PEM); refuses to overwrite either. Returns the public key's path."""
    from collapselab.atomic import all_or_nothing, atomic_write

    path = Path(path)
    pub = public_key_path(path)
    for p in (path, pub):
        if p.exists():
            raise UserError(f"{p}: exists already; a key is never overwritten. Choose another path.")
    check_output_file(path, "signing key")
    private = core.new_ed25519()
    with all_or_nothing(path, pub):  # a full disk: no key without its public half
        core.write_secret_file(path, core.private_pem(private))
        atomic_write(pub, lambda tmp: Path(tmp).write_bytes(core.public_pem(private.public_key())))
    return pub


def public_key_path(path: str | Path) -> Path:
    """Where :func:`new_signing_key_file` puts the public half of signing key ``path``: ``path.pub``."""
    path = Path(path)
    return path.with_name(path.name + ".pub")


def load_signing_key(path: str | Path):
    """The Ed25519 private key in ``path``; refuses one that others can read."""
    return core.load_private_key(path, missing_hint=f"Create one with `collapselab keys new-signing {path}`.",
                                 wrong_hint="Pass a key made by `collapselab keys new-signing`.")


def load_public_key(path: str | Path):
    """The Ed25519 public key in ``path`` (PEM), as `keys new-signing` writes it beside the key."""
    return core.load_public_key(path, missing_hint="Pass the FILE.pub that `collapselab keys new-signing FILE` wrote.",
                                wrong_hint="Pass the FILE.pub that `collapselab keys new-signing FILE` wrote.")


# The key id and PEM encoding of every Ed25519 key in collapselab (the vault's too).
signing_key_id = core.key_id
public_pem = core.public_pem
