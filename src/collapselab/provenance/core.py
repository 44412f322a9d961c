"""The provenance core: what the ledger, the vault, content credentials, tree heads and in-toto share.

One definition each:

* **Canonical JSON** (:func:`canonical_json`): sorted keys, no whitespace, UTF-8, no NaN. For the
  strings, integers, lists and objects provenance records hold, these are the bytes of RFC 8785
  (JSON Canonicalization Scheme). Everything that is hashed or signed is hashed or signed over these
  bytes.
* **Content hash** (:func:`content_hash`): SHA-256 of a document's bytes (text as UTF-8), 64
  lowercase hex digits. A ledger document, a vault object and a credentials sidecar's ``sha256``
  all mean this.
* **Timestamps** (:func:`utc_now`, :func:`utc_iso`): ISO 8601 in UTC with microseconds and ``Z``.
* **Secret files** (:func:`write_secret_file`, :func:`check_secret_file`): created 0600 from their
  first byte (never readable by others, not for an instant), never overwritten, removed again if
  the write fails (a full disk leaves no half key); refused on reading when others can read them.
* **Ed25519** keys: PEM files (PKCS#8 private, SubjectPublicKeyInfo public) and key ids, the first
  16 hex digits of SHA-256 of the 32 raw public-key bytes.

Private keys never reach a message, a log or an output: errors name the file, never its content.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collapselab.errors import UserError

__all__ = ["canonical_json", "content_hash", "utc_now", "utc_iso", "write_secret_file", "check_secret_file",
           "new_ed25519", "private_pem", "public_pem", "public_raw", "key_id", "load_private_key", "load_public_key"]

_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


# ------------------------------------------------------------------------------ canonical JSON


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not ``\\u`` escapes), NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# ------------------------------------------------------------------------------------ hashing


def content_hash(content: bytes | str) -> str:
    """SHA-256 of ``content`` (text is encoded as UTF-8), as 64 lowercase hex digits."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    return hashlib.sha256(content).hexdigest()


# --------------------------------------------------------------------------------- timestamps


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime(_ISO)


def utc_iso(value: datetime) -> str:
    """An aware datetime in the provenance timestamp format; a naive one is a UserError."""
    if value.tzinfo is None:
        raise UserError(f"{value!r} has no time zone; pass an aware datetime (UTC)")
    return value.astimezone(timezone.utc).strftime(_ISO)


# ------------------------------------------------------------------------------- secret files


def write_secret_file(path: str | os.PathLike, data: bytes, *, exists_hint: str = "Choose another path.") -> Path:
    """Create ``path`` holding ``data``, mode 0600 whatever the umask; refuse to overwrite anything."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path}: exists already; a key is never overwritten. {exists_hint}") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; this is not
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:  # a full disk: no half-written key left to be mistaken for a whole one
        path.unlink(missing_ok=True)
        raise
    return path


def check_secret_file(path: str | os.PathLike, what: str, missing_hint: str) -> Path:
    """``path`` if it is a regular file that only its owner can read; else a UserError naming the file."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{path}: {what} missing (no such file). {missing_hint}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: is a folder, not a {what}. {missing_hint}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path}: the {what} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}). Run: chmod 600 {path}")
    return path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror}).") from None


# ------------------------------------------------------------------------------------ Ed25519


def new_ed25519():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_pem(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def public_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_raw(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key) -> str:
    """The first 16 hex digits of SHA-256 of the public key's 32 raw bytes."""
    return hashlib.sha256(public_raw(public_key)).hexdigest()[:16]


def load_private_key(path: str | os.PathLike, *, missing_hint: str, wrong_hint: str):
    """The Ed25519 private key in ``path`` (unencrypted PEM); refuses a file that others can read."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = check_secret_file(path, "signing key", missing_hint)
    try:
        key = serialization.load_pem_private_key(_read(path, "signing key"), password=None)
    except (ValueError, TypeError):
        raise UserError(f"{path}: not an unencrypted PEM private key. {wrong_hint}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: not an Ed25519 private key. {wrong_hint}")
    return key


def load_public_key(path: str | os.PathLike, *, missing_hint: str, wrong_hint: str):
    """The Ed25519 public key in ``path`` (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: public key missing. {missing_hint}")
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except ValueError:
        raise UserError(f"{path}: not a PEM public key. {wrong_hint}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path}: not an Ed25519 public key. {wrong_hint}")
    return key
