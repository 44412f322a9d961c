"""The runner: what ``scan``, ``filter`` and ``mix`` share around their steps.

One :class:`Runner` per command run. It

- maps shard tasks on a backend (:func:`collapselab.backends.make_backend`: ``"local"`` processes,
  or ``"ray"``), with a progress tick per finished shard;
- answers "is this output already finished?" (:meth:`Runner.finished`): the previous manifest has
  the same format and settings, names the same shards, its outputs are there unchanged, and the
  shards' input bytes still hash as recorded; a rerun then skips all the work;
- adds up the steps' statistics (:mod:`collapselab.pipeline.steps`) and writes the manifest last
  (:meth:`Runner.write_manifest`, with the steps under ``steps``); when that fails, no output is
  left that no manifest vouches for;
- says how it went: documents, MB/s and the flagged share (:meth:`Runner.summary`), in the result
  (``stats``) and on the CLI's last line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from collapselab.atomic import atomic_write_json
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


def summary_line(command: str, stats: dict) -> str:
    """One line for the end of a run: documents, MB/s, flagged share."""
    if not stats:
        return ""
    mb = stats["bytes"] / 1e6
    rate = f"{stats['mb_per_s']:.1f} MB/s" if stats.get("mb_per_s") is not None else "-"
    flagged = "" if stats.get("flagged_share") is None else f", flagged {stats['flagged_share']:.2%}"
    return (f"{command}: {stats['documents']} documents, {mb:.1f} MB in {stats['seconds']:.1f} s ({rate}"
            f"{', backend ' + stats['backend'] if stats.get('backend', 'local') != 'local' else ''}){flagged}.")


def input_size(path: str | os.PathLike) -> int:
    """An input's size in bytes (a URL's too, once :mod:`collapselab.pipeline.sources` reads them)."""
    try:
        from collapselab.pipeline.sources import file_size
    except ImportError:  # pragma: no cover - before the sources module
        return os.path.getsize(path)
    return file_size(path)
