"""File-system failures as one line a user can act on (the CLI's handler for ``OSError``)."""

from __future__ import annotations

import errno

_HINTS = {
    errno.EACCES: "permission denied: choose a path you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose another path",
    errno.EROFS: "the file system is read-only: choose a path on a writable disk",
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere; nothing half-written was kept",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EISDIR: "it is a folder, not a file: give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "it exists already: choose another path or remove it",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --jobs",
}


def describe(e: OSError, doing: str | None = None) -> str:
    """``PATH: what went wrong: what to do``, for any ``OSError``."""
    where = e.filename if e.filename is not None else ""
    if getattr(e, "filename2", None):
        where = f"{where} -> {e.filename2}"
    hint = _HINTS.get(e.errno or -1, (e.strerror or str(e)).lower())
    head = f"{doing}: " if doing else ""
    return f"{head}{where}: {hint}" if where else f"{head}{hint}"
