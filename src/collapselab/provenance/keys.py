"""Secret key files: created 0600, read only when private, never printed or logged.

A key file holds 32 random bytes as 64 hex digits and a newline. Reading one fails closed: a
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
