"""Shards: the unit of parallel work and of resuming, and the local-process executor.

A plain local JSONL file is cut into byte ranges of ``shard_bytes`` (256 MiB by default); a shard
holds the lines that *start* in its range (:class:`~collapselab.pipeline.io.LineReader`), so the
cut needs no reading and never splits a line. Any other file (compressed, Parquet, Arrow, text, or
behind a URL) is one shard. The cut depends
only on the file's size and ``shard_bytes``, never on the number of processes, so every output is
the same whatever ``jobs`` is.

Each shard's work writes its own files atomically, then its *done-marker* (JSON) last: the
shard, the SHA-256 of the input bytes that decide it, a digest of the settings, and what it found.
A rerun reuses a shard only if its marker names the same shard and settings and the input bytes
still hash the same, so a changed input or setting is redone, never skipped. A job killed
mid-shard leaves no marker for it; the rerun redoes that shard (its stale temporary file is
removed) and keeps the finished ones.

:class:`Pool` maps a function over tasks with ``jobs`` local processes (in this process when one
is enough) and returns the results in task order: the ``local`` backend of
:func:`collapselab.backends.make_backend`, through which the pipeline's runner
(:mod:`collapselab.pipeline.runner`) maps its shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from collapselab.atomic import atomic_write_json
from collapselab.errors import UserError
from collapselab.pipeline.io import read_manifest

SHARD_BYTES = 256 << 20
WHOLE = 1 << 62  # a shard size that makes every file one shard: line and row numbers count from its start
MIN_SHARD_BYTES = 16 << 10


@dataclass(frozen=True)
class Shard:
    index: int  # place among all shards of the job, in input order
    file: str  # the path or URL as given (a folder's files as expanded)
    part: int  # place among the file's shards
    start: int  # the byte range whose lines the shard holds; [0, size) for a whole file
    end: int
    whole: bool  # read as one stream: anything but a plain local JSONL file
    fmt: str = ""  # the file's format (sources.FORMATS); left out, it follows from the file's name

    def __post_init__(self) -> None:
        if not self.fmt:
            from collapselab.pipeline.sources import format_of

            object.__setattr__(self, "fmt", format_of(self.file, "jsonl"))

    def to_dict(self) -> dict:
        """The shard as done-markers and manifests record it. ``fmt`` is left out: it follows from
        the file's name, and records of today's inputs stay as they were."""
        d = asdict(self)
        del d["fmt"]
        return d

    def same(self, rec: dict) -> bool:
        return all(rec.get(k) == v for k, v in self.to_dict().items())


def plan(inputs: Sequence[str | os.PathLike], shard_bytes: int = SHARD_BYTES, *,
         default_format: str | None = None) -> list[Shard]:
    """The shards of ``inputs`` (files, folders, URLs: :func:`~collapselab.pipeline.sources.expand_inputs`),
    in order (files in the order given, byte ranges in file order). Only a plain local JSONL file
    is cut into byte ranges; any other file is one whole shard. ``default_format``: the format of
    a file whose name says none (else such a file is a UserError)."""
    from collapselab.pipeline import sources

    if shard_bytes < 1:
        raise UserError(f"--shard-size {shard_bytes}: must be at least 1 byte (default {SHARD_BYTES}).")
    shards: list[Shard] = []
    seen = set()
    for name in sources.expand_inputs(inputs):
        key = name if sources.is_url(name) else Path(name).resolve()
        if key in seen:
            raise UserError(f"{name}: given twice; give each input once.")
        seen.add(key)
        fmt = sources.format_of(name, default_format)
        size = sources.file_size(name)
        if fmt != "jsonl" or sources.is_url(name):
            shards.append(Shard(len(shards), name, 0, 0, size, True, fmt))
            continue
        for part, lo in enumerate(range(0, max(size, 1), shard_bytes)):
            shards.append(Shard(len(shards), name, part, lo, min(lo + shard_bytes, size), False, fmt))
    return shards


def check_shard_bytes(shard_bytes: int) -> int:
    """A user's ``--shard-size``: a tiny one makes a part file per line (slow, thousands of files)."""
    if shard_bytes < MIN_SHARD_BYTES:
        raise UserError(f"--shard-size {shard_bytes}: must be at least {MIN_SHARD_BYTES} bytes (16KiB); "
                        f"the default is {SHARD_BYTES >> 20}MiB.")
    return shard_bytes


def check_jobs(jobs: int | None) -> int:
    """``None``: one process per core this process may use."""
    if jobs is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1 (default: one per core).")
    return int(jobs)


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def input_digest(shard: Shard) -> str:
    """The SHA-256 that a shard's done-marker records (see :class:`~collapselab.pipeline.io.LineReader`)."""
    from collapselab.pipeline.io import LineReader, file_sha256

    if shard.whole:
        return file_sha256(shard.file)
    return LineReader(shard.file, shard.start, shard.end).digest()


# ------------------------------------------------------------------------------- done-markers
def marker_path(parts: Path, shard: Shard) -> Path:
    return parts / f"part-{shard.index:05d}.json"


def finished(parts: Path, shard: Shard, digest: str) -> dict | None:
    """The shard's done-marker if it is still valid (same shard, settings, input bytes, outputs)."""
    m = read_manifest(marker_path(parts, shard))
    if not m or m.get("settings") != digest or not shard.same(m.get("shard", {})):
        return None
    for name, size in m.get("outputs", {}).items():
        p = parts / name
        if not p.is_file() or p.stat().st_size != size:
            return None
    if input_digest(shard) != m.get("sha256"):
        return None
    return m


@contextmanager
def parts_folder(parts: Path):
    """Make the parts folder; when the work fails before any shard finished, remove it again (a
    folder with finished shards stays, for the rerun to resume from)."""
    parts.mkdir(parents=True, exist_ok=True)
    try:
        yield parts
    except BaseException:
        if not any(parts.iterdir()):
            parts.rmdir()
        raise


def mark_done(parts: Path, shard: Shard, digest: str, sha256: str, outputs: Sequence[str], **found: Any) -> dict:
    """Write the shard's done-marker, after its ``outputs`` (names in ``parts``) are complete."""
    m = {"shard": shard.to_dict(), "settings": digest, "sha256": sha256,
         "outputs": {name: (parts / name).stat().st_size for name in outputs}, **found}
    atomic_write_json(marker_path(parts, shard), m)
    return m


# ---------------------------------------------------------------------------------- executor
class Pool:
    """Up to ``jobs`` local processes, started on the first map that needs them, reused by the next.

    ``map(fn, tasks)`` is ``[fn(t) for t in tasks]``, results in task order. One process (or one
    task) runs here, in this process. Otherwise tasks start in order; when one fails, no new task
    starts, the running ones finish, and the error of the earliest failed task is raised (the same
    error whatever ``jobs`` is). Processes are started with ``spawn``: forking a process that holds
    library threads (pyarrow's pools) can deadlock."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool = None

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], on_done: Callable[[], None] | None = None) -> list:
        """``on_done()`` is called once per finished task (a progress bar's tick), in any order."""
        tasks = list(tasks)
        tick = on_done or (lambda: None)
        if self.jobs <= 1 or len(tasks) <= 1:
            out = []
            for t in tasks:
                out.append(fn(t))
                tick()
            return out
        from concurrent.futures import FIRST_EXCEPTION, wait

        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            from collapselab.workers import exit_with_parent

            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"), initializer=exit_with_parent)
        futures = [self._pool.submit(fn, t) for t in tasks]
        for f in futures:
            f.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or tick())
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            for f in futures:
                f.cancel()  # only those not started yet
        wait([f for f in futures if not f.cancelled()])
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()
        return [f.result() for f in futures]

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


Progress = Callable[[int, int, str], None]  # (shards done, shards in all, what is being done)


def ticker(progress: Progress | None, total: int, what: str) -> Callable[[], None] | None:
    """An ``on_done`` for a backend's ``map`` that reports ``(done, total, what)`` to ``progress``."""
    if progress is None:
        return None
    done = [0]
    progress(0, total, what)

    def tick() -> None:
        done[0] += 1
        progress(done[0], total, what)

    return tick
