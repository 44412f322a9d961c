"""The runner: what ``scan``, ``filter`` and ``mix`` share around their steps.

One :class:`Runner` per command run. It

- maps shard tasks on a backend (:func:`collapselab.backends.make_backend`: ``"local"`` processes,
  or ``"ray"``), with a progress tick per finished shard;
- skips the shards a killed run finished (:meth:`Runner.map_shards`: their done-markers,
  :mod:`collapselab.pipeline.shards`) and answers "is this output already finished?" (:meth:`Runner.finished`): the previous manifest has
  the same format and settings, names the same shards, its outputs are there unchanged, and the
  shards' input bytes still hash as recorded; a rerun then skips all the work;
- merges the shards' part files (:func:`concat`; the sidecar's merge renumbers lines, in
  :mod:`~collapselab.pipeline.scan`);
- adds up the steps' statistics (:mod:`collapselab.pipeline.steps`) and writes the manifest last
  (:meth:`Runner.write_manifest`, with the steps under ``steps``); when that fails, no output is
  left that no manifest vouches for;
- says how it went: documents, MB/s and the flagged share (:meth:`Runner.summary`), in the result
  (``stats``) and on the CLI's last line.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from collapselab.atomic import AtomicFile, atomic_write_json
from collapselab.pipeline import shards as sh
from collapselab.pipeline.io import file_sha256


class Runner:
    """``backend``: ``"local"`` (``jobs`` processes) or ``"ray"`` (``address``: a cluster to join);
    ``progress(done, total, what)``: called as shards finish."""

    def __init__(self, command: str, *, backend: str = "local", jobs: int | None = None, address: str | None = None,
                 progress: sh.Progress | None = None) -> None:
        from collapselab.backends import make_backend

        self.command = command
        self.backend_name = backend
        self.jobs = jobs
        self.progress = progress
        self.backend = make_backend(backend, jobs=jobs, address=address)
        self.started = time.perf_counter()

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], what: str | None = None) -> list:
        """``[fn(t) for t in tasks]`` on the backend; ``what`` (e.g. ``"scanning"``): show progress."""
        tasks = list(tasks)
        tick = sh.ticker(self.progress, len(tasks), what) if what else None
        return self.backend.map(fn, tasks, tick)

    def map_shards(self, fn: Callable[[Any], dict], jobs: Sequence[Any], what: str | None = None) -> list[dict]:
        """:meth:`map` over shard jobs (each with ``shard``, ``parts`` and ``digest``): a shard whose
        done-marker is still valid (a killed run's finished shard) returns it, not redone."""
        return self.map(resumable(fn), jobs, what)

    # ------------------------------------------------------------------ the one "finished?" check
    def finished(self, old: dict | None, *, format: str, match: dict, outputs: dict[str, str | int],
                 shards: Sequence[sh.Shard] | None = None, recorded: Sequence[dict] | None = None) -> bool:
        """True when the manifest ``old`` vouches for the output this run would write.

        ``match``: manifest fields that must hold these values (settings, inputs); ``outputs``:
        each output file and its recorded SHA-256 (a str) or size in bytes (an int); ``shards`` and
        ``recorded`` (the manifest's shard records, with ``sha256``): the same shards, whose input
        bytes still hash the same (read on the backend)."""
        if not old or old.get("format") != format or any(old.get(k) != v for k, v in match.items()):
            return False
        for path, want in outputs.items():
            p = Path(path)
            if not p.is_file() or want is None:
                return False
            if (file_sha256(p) if isinstance(want, str) else p.stat().st_size) != want:
                return False
        if shards is None:
            return True
        recorded = list(recorded or [])
        if len(recorded) != len(shards) or not all(s.same(r) for s, r in zip(shards, recorded)):
            return False
        return self.map(sh.input_digest, shards, "checking") == [r.get("sha256") for r in recorded]

    # ---------------------------------------------------------------------------- the manifest
    def write_manifest(self, path: Path, manifest: dict, outputs: Sequence[Path], steps: list[dict]) -> None:
        """Write ``manifest`` (with ``steps``) to ``path`` atomically; when it fails, remove
        ``outputs`` and any old manifest: nothing is left to look finished that is not."""
        try:
            atomic_write_json(path, {**manifest, "steps": steps})
        except BaseException:
            for p in [*outputs, path]:
                Path(p).unlink(missing_ok=True)
            raise

    def summary(self, steps: list[dict], *, documents: int, flagged: int | None) -> dict:
        """The run's figures: documents, input bytes, seconds, MB/s, flagged (and its share), steps."""
        seconds = time.perf_counter() - self.started
        nbytes = next((s["bytes"] for s in steps if s["bytes"]), 0)
        return {"documents": documents, "bytes": nbytes, "seconds": round(seconds, 3),
                "mb_per_s": round(nbytes / 1e6 / seconds, 3) if seconds > 0 else None,
                "flagged": flagged, "flagged_share": (flagged / documents if documents and flagged is not None else None),
                "backend": self.backend_name, "steps": steps}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_backend(backend: str, address: str | None = None) -> None:
    """A wrong ``--backend`` / ``--address``, or Ray not installed: one UserError before any work
    (the backend itself starts later, with the runner)."""
    from collapselab.backends import import_ray, make_backend

    if backend == "ray":
        import_ray()
    else:
        make_backend(backend, jobs=1, address=address).close()  # an unknown name, or --address without ray


class _Resumable:
    """``fn(job)``, unless the job's shard is finished already (a module-level class: picklable)."""

    def __init__(self, fn: Callable[[Any], dict]) -> None:
        self.fn = fn

    def __call__(self, job) -> dict:
        if job.parts is not None and (done := sh.finished(Path(job.parts), job.shard, job.digest)):
            return done
        return self.fn(job)


def resumable(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """``fn`` over a shard job, skipped when its shard's done-marker still holds (see :mod:`~collapselab.pipeline.shards`)."""
    return _Resumable(fn)


# ------------------------------------------------------------------------------- merging
def concat(parts: Sequence[Path], dest: Path, table: bool = False) -> None:
    """``dest`` = the shards' part files one after the other (a rename when there is one), written
    atomically: bytes appended (JSON lines; gzip and zstd members may be concatenated), or, with
    ``table``, Parquet rows (the parts must share their schema)."""
    if len(parts) == 1:
        try:
            os.replace(parts[0], dest)
            return
        except OSError:  # another file system: copy
            pass
    f = AtomicFile(dest)
    try:
        if table:
            _concat_parquet(parts, f.tmp)
        else:
            with open(f.tmp, "wb") as w:
                for p in parts:
                    with open(p, "rb") as r:
                        _copy(r, w)
        f.commit()
    except BaseException:
        f.abort()
        raise


def _concat_parquet(parts: Sequence[Path], dest) -> None:
    import pyarrow.parquet as pq

    from collapselab.errors import UserError

    schema = pq.read_schema(parts[0])
    with pq.ParquetWriter(dest, schema) as w:
        for p in parts:
            pf = pq.ParquetFile(p)
            if not pf.schema_arrow.equals(schema):
                raise UserError(f"the input's files do not share their columns ({pf.schema_arrow.names} vs "
                                f"{schema.names}); give them one at a time.")
            for i in range(pf.num_row_groups):
                w.write_table(pf.read_row_group(i))


def _copy(r, w) -> None:
    """Append the file ``r`` to ``w``: in the kernel where it can (copy_file_range), else through a buffer."""
    try:
        while os.copy_file_range(r.fileno(), w.fileno(), 1 << 30):
            pass
    except (AttributeError, OSError):  # no copy_file_range here, or not between these files
        shutil.copyfileobj(r, w, 8 << 20)


def summary_line(command: str, stats: dict) -> str:
    """One line for the end of a run: documents, MB/s, flagged share."""
    if not stats:
        return ""
    mb = stats["bytes"] / 1e6
    rate = f"{stats['mb_per_s']:.1f} MB/s" if stats.get("mb_per_s") is not None else "-"
    flagged = "" if stats.get("flagged_share") is None else f", flagged {stats['flagged_share']:.2%}"
    return (f"{command}: {stats['documents']} documents, {mb:.1f} MB in {stats['seconds']:.1f} s ({rate}"
            f"{', backend ' + stats['backend'] if stats.get('backend', 'local') != 'local' else ''}){flagged}.")

