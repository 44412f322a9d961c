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
import stat
from pathlib import Path

from collapselab.atomic import check_output_file
from collapselab.errors import UserError

MIN_KEY_BYTES = 16


def new_key_file(path: str | Path) -> Path:
    """Write a fresh 256-bit key to ``path`` (mode 0600); refuses to overwrite."""
    path = Path(path)
    check_output_file(path, "key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path}: exists already; a key is never overwritten. Choose another path.") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(32).hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk: no half-written key left to be mistaken for a whole one
        path.unlink(missing_ok=True)
        raise
    return path


def load_key(path: str | Path) -> bytes:
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{path}: no such key file. Create one with `collapselab keys new {path}`.") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: is a folder, not a key file. Name the key file itself (made by `collapselab keys new FILE`).")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path}: the key file is readable by others (mode {stat.S_IMODE(st.st_mode):o}). Run `chmod 600 {path}`.")
    text = path.read_bytes().strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path}: not a key file (expected hex digits). Create one with `collapselab keys new FILE`.") from None
    if len(key) < MIN_KEY_BYTES:
        raise UserError(f"{path}: the key has {len(key) * 8} bits, fewer than 128. Create a new one with `collapselab keys new FILE`.")
    return key


def new_signing_key_file(path: str | Path) -> Path:
    """Write a fresh Ed25519 signing key to ``path`` (PEM, mode 0600) and its public key to
    ``path.pub`` (PEM); refuses to overwrite either. Returns the public key's path."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collapselab.atomic import all_or_nothing, atomic_write
    from collapselab.provenance.vault import _write_private_key

    path = Path(path)
    pub = public_key_path(path)
    for p in (path, pub):
        if p.exists():
            raise UserError(f"{p}: exists already; a key is never overwritten. Choose another path.")
    check_output_file(path, "signing key")
    private = Ed25519PrivateKey.generate()
    with all_or_nothing(path, pub):  # a full disk: no key without its public half
        _write_private_key(path, private)
        atomic_write(pub, lambda tmp: Path(tmp).write_bytes(public_pem(private.public_key())))
    return pub


def public_key_path(path: str | Path) -> Path:
    """Where :func:`new_signing_key_file` puts the public half of signing key ``path``: ``path.pub``."""
    path = Path(path)
    return path.with_name(path.name + ".pub")


def public_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_signing_key(path: str | Path):
    """The Ed25519 private key in ``path``; refuses one that others can read."""
    from collapselab.provenance.vault import _load_private_key

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such signing key. Create one with `collapselab keys new-signing {path}`.")
    return _load_private_key(path)


def load_public_key(path: str | Path):
    """The Ed25519 public key in ``path`` (PEM), as `keys new-signing` writes it beside the key."""
    from collapselab.provenance.vault import _load_public_key

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such public key. Pass the FILE.pub that `collapselab keys new-signing FILE` wrote.")
    return _load_public_key(path)


def signing_key_id(public_key) -> str:
    """The key id of an Ed25519 public key: the first 16 hex digits of SHA-256 of its 32 raw bytes
    (the vault's key ids)."""
    from collapselab.provenance.vault import _key_id, _public_raw

    return _key_id(_public_raw(public_key))
