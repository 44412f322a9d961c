"""Files that are either complete or absent: every write goes to a temporary file, then renames.

The finished file gets the mode an ordinary ``open(path, "w")`` would give it (0666 less the
umask), so run outputs, plots and public certificates are readable by whoever the user's umask
allows. Secret keys are written elsewhere (``provenance/keys.py``), 0600 from their first byte.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from collapselab.errors import UserError


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read by setting, then restore at once
    os.umask(mask)
    return mask


def public_mode() -> int:
    return 0o666 & ~current_umask()


def check_writable_dir(folder: str | os.PathLike, what: str = "output") -> Path:
    """Make ``folder`` (and its parents) or fail with one line saying why, before any work starts."""
    folder = Path(folder)
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            raise UserError(f"{folder}: cannot hold the {what}: {p} is a file, not a folder. Choose another path.")
        if p.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from collapselab.oserrors import describe

        raise UserError(describe(e, f"cannot create the folder for the {what}")) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: not writable, so it cannot hold the {what} (permission denied). "
                        "Choose another folder or fix its permissions.")
    return folder


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early, with one line, when ``path`` cannot become a file: it is a folder, lies under a
    file, or its folder is not writable. Creates the folder, as the write would."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: the {what} is a folder; give a file name (a new file, or one inside it: {path / 'NAME'}).")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what)
    return path


class AtomicFile:
    """A file written under a temporary name in the same folder and renamed on :meth:`commit`.

    Leftovers of a killed job (``.NAME.*.tmp``) are removed when the same output is started again.
    """

    def __init__(self, path: str | os.PathLike, *, check: bool = True) -> None:
        if not check:  # a file of a folder the caller made and owns (a run's samples): no checks, no sweep
            self.path = Path(path)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            self._opened(fd, tmp)
            return
        self.path = check_output_file(path)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._opened(fd, tmp)

    def _opened(self, fd: int, tmp: str) -> None:
        try:
            os.fchmod(fd, public_mode())  # mkstemp makes 0600; the finished file follows the umask
        finally:
            os.close(fd)
        self.tmp = Path(tmp)

    def commit(self, *, durable: bool = True) -> None:
        """Move the finished file into place; ``durable``: on disk first (fsync), not only in the page cache."""
        if durable:
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.tmp.unlink()
        except OSError:
            pass


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, durable: bool = True, check: bool = True) -> None:
    """Call ``write(tmp_path)``, then move the finished file onto ``path`` in one rename.

    ``durable=False`` skips the fsync: a killed process still leaves only whole files, but after a
    power cut the file may be lost; for files a later, durable checkpoint syncs (see runfolder).
    ``check=False``: no early checks of the path and no sweep of stale temporary files, for the many
    small files of a folder the caller made (a run's samples)."""
    f = AtomicFile(path, check=check)
    try:
        write(str(f.tmp))
        f.commit() if durable else f.commit(durable=False)
    except BaseException:
        f.abort()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _w)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    from collapselab.jsonout import dumps

    atomic_write_text(path, dumps(obj, indent=2) + "\n")


@contextmanager
def all_or_nothing(*paths: str | os.PathLike) -> Iterator[None]:
    """Of ``paths``, remove those that did not exist before the block when the block fails
    (a folder with what is in it), so a failed ``init`` leaves no half-made folder behind."""
    new = [Path(p) for p in paths if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        for p in new:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                p.unlink(missing_ok=True)
        raise
