"""The run folder: the one place a run's results live, and the only code that knows its layout.

::

    runs/<run-id>/
      config.yaml           the resolved config
      vocab.txt             token ids -> words (text families)
      metrics.parquet       one row per (policy, seed, generation)
      samples/<policy>/seed<s>/gen<gg>.parquet   text: columns text, tokens, ppl_under_gen0
      samples/<policy>/seed<s>/gen<gg>.npy       theory models and images: the sampled array
      samples/<policy>/seed<s>/gen<gg>.png       images: a grid of the first 100 (C2PA-signed with --credentials)
      checkpoints/<policy>/seed<s>/gen<gg>.pkl   neural text families with init 'previous': each model, for its child
      plots/*.png
      ledger.sqlite         the run's provenance: data shards, training snapshots, models
      summary.json          written last: a folder without it is an unfinished run

Every file is written to a temporary name and renamed, so a killed run leaves only whole files.
``metrics.parquet`` is the checkpoint ``--resume`` reads. It is rewritten after a generation once
``checkpoint_every`` seconds have passed since the last rewrite (0, the default: after every
generation, as ``collapselab run`` does for text and image families; for the theory families, whose
generations take a millisecond, it uses :data:`RUN_CHECKPOINT_SECONDS`), and at least twenty times as
long as that rewrite took, so that runs of thousands of cheap chains do not spend their time
rewriting it. A killed run loses at most the generations since the last rewrite; ``--resume`` does
them again, to the same bits (all randomness comes from the seeds). Just before each rewrite,
``before_checkpoint`` runs (the run's ledger writes what it holds): a row in ``metrics.parquet``
always has its provenance entries. With an interval, sample files are written without an fsync
each; the rewrite first syncs the file system once (``os.sync``), so a row in ``metrics.parquet``
never names samples that a power cut could take back.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from collapselab.atomic import atomic_write, atomic_write_json, atomic_write_text
from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError

KEY_COLUMNS = ["policy", "seed", "generation"]
RUN_CHECKPOINT_SECONDS = 1.0  # how often `collapselab run` rewrites metrics.parquet at most


def slug(policy: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", policy)


def new_run_id(family: str, root: Path) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{family}"
    run_id, i = base, 1
    while (root / run_id).exists():
        i += 1
        run_id = f"{base}-{i}"
    return run_id


class RunFolder:
    def __init__(self, path: str | Path, *, checkpoint_every: float = 0.0):
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        self.before_checkpoint = None  # called with no argument just before metrics.parquet is rewritten
        self._rows: list[dict] | None = None  # the rows given to write_metrics, not yet on disk
        self._written_at = float("-inf")
        self._write_seconds = 0.0

    def __getstate__(self) -> dict:
        # what a worker process needs (paths and the interval), not the parent's checkpoint hook and rows
        return {**self.__dict__, "before_checkpoint": None, "_rows": None}

    # ---------------------------------------------------------------- layout
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.parquet"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger.sqlite"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def sample_path(self, policy: str, seed: int, generation: int, text: bool) -> Path:
        ext = "parquet" if text else "npy"
        return self.path / "samples" / slug(policy) / f"seed{seed}" / f"gen{generation:02d}.{ext}"

    def grid_path(self, policy: str, seed: int, generation: int) -> Path:
        return self.sample_path(policy, seed, generation, False).with_suffix(".png")

    def checkpoint_path(self, policy: str, seed: int, generation: int) -> Path:
        return self.path / "checkpoints" / slug(policy) / f"seed{seed}" / f"gen{generation:02d}.pkl"

    @property
    def complete(self) -> bool:
        return self.summary_path.exists()

    # ---------------------------------------------------------------- config
    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict:
        if not self.config_path.exists():
            raise UserError(f"{self.path}: not a Collapse Lab run folder (no config.yaml). Pass the folder that `collapselab run` printed.")
        try:
            config = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            where = getattr(e, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise UserError(f"{self.config_path}: not readable YAML{at}; the run folder is damaged. "
                            "Restore config.yaml from a copy, or run the experiment again.") from None
        if not isinstance(config, dict):
            raise UserError(f"{self.config_path}: not a run config (a YAML mapping); the run folder is damaged. "
                            "Restore config.yaml from a copy, or run the experiment again.")
        return config

    # ---------------------------------------------------------------- metrics
    def write_metrics(self, rows: list[dict]) -> None:
        """Checkpoint ``rows`` (every row so far): now, or once ``checkpoint_every`` has passed (see the module)."""
        self._rows = rows
        wait = max(self.checkpoint_every, 20 * self._write_seconds) if self.checkpoint_every else 0.0
        if time.monotonic() - self._written_at >= wait:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Write the rows held back by the checkpoint interval, if any."""
        if self._rows is None:
            return
        t0 = time.monotonic()
        if self.before_checkpoint is not None:
            self.before_checkpoint()
        if self.checkpoint_every:
            os.sync()  # the samples written since the last checkpoint, without an fsync each
        df = pd.DataFrame(self._rows)
        cols = KEY_COLUMNS + [c for c in df.columns if c not in KEY_COLUMNS]
        df = df[cols].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
        atomic_write(self.metrics_path, lambda tmp: df.to_parquet(tmp, index=False))
        self._rows = None
        self._written_at = time.monotonic()
        self._write_seconds = self._written_at - t0

    def read_metrics(self) -> pd.DataFrame:
        if not self.metrics_path.exists():
            return pd.DataFrame(columns=KEY_COLUMNS)
        try:
            return pd.read_parquet(self.metrics_path)
        except (pa.ArrowException, OSError, ValueError):
            raise UserError(f"{self.metrics_path}: not a readable Parquet file; it is truncated "
                            "or damaged. Restore it from a copy, or run the experiment again.") from None

    # ---------------------------------------------------------------- samples
    def write_samples(self, policy, seed, generation, data, *, decode=None, extra=None) -> None:
        if isinstance(data, TokenSequences):
            path = self.sample_path(policy, seed, generation, True)
            columns = {
                "text": pa.array(decode(data) if decode else [""] * len(data), pa.string()),
                "tokens": pa.ListArray.from_arrays(pa.array(data.offsets.astype(np.int32)), pa.array(data.tokens)),
            }
            for name, values in (extra or {}).items():
                columns[name] = pa.array(values)
            table = pa.table(columns)
            atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), **self._sample_write)
        else:
            path = self.sample_path(policy, seed, generation, False)

            def _w(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.save(f, data)

            atomic_write(path, _w, **self._sample_write)

    @property
    def _sample_write(self) -> dict:
        """How sample files are written: with a checkpoint interval (thousands of chains), without an
        fsync each (the checkpoint syncs) and without the path checks the run's start already made."""
        return {"durable": not self.checkpoint_every, "check": not self.checkpoint_every}

    def read_samples(self, policy, seed, generation, text: bool):
        path = self.sample_path(policy, seed, generation, text)
        if not text:
            return np.load(path)
        col = pq.read_table(path, columns=["tokens"]).column("tokens").combine_chunks()
        return TokenSequences(col.values.to_numpy(zero_copy_only=False), col.offsets.to_numpy().astype(np.int64))

    def read_sample_column(self, policy, seed, generation, column: str) -> np.ndarray:
        path = self.sample_path(policy, seed, generation, True)
        return pq.read_table(path, columns=[column]).column(column).to_numpy()

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)

    def read_summary(self) -> dict:
        if not self.summary_path.exists():
            return {}
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{self.summary_path}: not valid JSON; the file is damaged. "
                            "Delete it and run `collapselab run --resume --out` on the folder to write it again.") from None


class RunLock:
    """One process at a time in a run folder: an exclusive ``flock`` on ``.lock``, released on exit.

    A second ``run --resume`` of the same folder fails at once, naming the process that holds it,
    instead of crashing later on the other's temporary files. The kernel drops the lock when the
    holder dies, so a killed run never leaves the folder locked."""

    NAME = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path) / self.NAME
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.path.parent}: the run folder is in use by {holder}. Wait for it to finish, "
                            "or stop it, then run again.") from None
        os.ftruncate(fd, 0)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.pwrite(fd, f"process {os.getpid()} (started {stamp})\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:  # the file stays (unlinking it would let two processes lock two inodes)
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the lock
            self.fd = None
