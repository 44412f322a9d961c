"""Streaming readers and atomic writers for JSONL (plain or .gz) and Parquet.

Records come in batches (``BATCH`` = 10 000 by default), so memory does not grow with the file.
A record's place is ``(file, line)``: the 1-based line number in a JSONL file, the 1-based row
number in a Parquet file. Its id is its ``id`` field when it has one, else ``FILE:LINE``.

Malformed JSONL lines (not JSON, not an object, no string text field) either stop the job with a
:class:`UserError` naming the file and line (``on_error="fail"``, the default) or are passed on
as records with ``obj=None`` and an ``error`` (``on_error="skip"``): scan counts them, filter
sends them to quarantine. Blank lines are not records (``blank=True``): they carry no document.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from collapselab.atomic import AtomicFile
from collapselab.errors import UserError

BATCH = 10_000
ON_ERROR = ("fail", "skip")

try:  # optional: about 3x faster parsing
    import orjson as _orjson

    _loads = _orjson.loads
    _JSONError: tuple = (_orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _JSONError = (json.JSONDecodeError, UnicodeDecodeError)


@dataclass
class Record:
    line: int  # 1-based line (JSONL) or row (Parquet)
    raw: bytes | None  # the JSONL line exactly as read, newline included; None for Parquet
    obj: dict | None  # the parsed record; None when malformed or blank
    error: str | None = None
    blank: bool = False

    def doc_id(self, file: str) -> str:
        if self.obj is not None and self.obj.get("id") is not None:
            return str(self.obj["id"])
        return f"{file}:{self.line}"


def kind_of(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz") or name.endswith(".json") or name.endswith(".json.gz") or name.endswith(".ndjson") or name.endswith(".gz"):
        return "jsonl"
    raise UserError(f"{path}: unknown format; name JSONL files *.jsonl or *.jsonl.gz and Parquet files *.parquet.")


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise UserError(f"--on-error {on_error!r}: use 'fail' (stop at the first malformed line) or 'skip'.")
    return on_error


def _open_binary(path: Path):
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_batches(path: str | os.PathLike, *, text_field: str | None = "text", on_error: str = "fail",
                 batch_size: int = BATCH) -> Iterator[list[Record]]:
    """Records of one JSONL or Parquet file, ``batch_size`` at a time."""
    check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file.")
    if kind_of(path) == "parquet":
        yield from _parquet_batches(path, text_field, batch_size)
        return
    batch: list[Record] = []
    try:
        with _open_binary(path) as f:
            for n, raw in enumerate(f, start=1):
                batch.append(_parse(path, n, raw, text_field, on_error))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise UserError(f"{path}: cannot be read ({e}); a truncated .gz file?") from None
    if batch:
        yield batch


def _parse(path: Path, n: int, raw: bytes, text_field: str | None, on_error: str) -> Record:
    if not raw.strip():
        return Record(n, raw, None, blank=True)
    try:
        obj = _loads(raw)
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        if text_field is not None and not isinstance(obj.get(text_field), str):
            raise ValueError(f"no string field {text_field!r}")
    except (ValueError, *_JSONError) as e:
        msg = f"{path}:{n}: malformed record ({str(e).splitlines()[0][:120]})"
        if on_error == "fail":
            raise UserError(f"{msg}. Fix the line, or pass --on-error skip to skip such lines with a count.") from None
        return Record(n, raw, None, error=msg)
    return Record(n, raw, obj)


def _parquet_batches(path: Path, text_field: str | None, batch_size: int) -> Iterator[list[Record]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise UserError(f"{path}: not a readable Parquet file ({e}).") from None
    if text_field is not None and text_field not in pf.schema_arrow.names:
        raise UserError(f"{path}: no column {text_field!r}; pass --text-field with one of {pf.schema_arrow.names}.")
    n = 0
    for rb in pf.iter_batches(batch_size=batch_size):
        rows = rb.to_pylist()
        yield [Record(n + i + 1, None, r) for i, r in enumerate(rows)]
        n += len(rows)


def parquet_schema(path: str | os.PathLike):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).schema_arrow


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------- output
class JsonlWriter:
    """Bytes lines to ``path`` (gzip when it ends in .gz, with a fixed header so reruns match)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.out = AtomicFile(path)
        raw = open(self.out.tmp, "wb")
        self._raw = raw
        self.f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if str(path).lower().endswith(".gz") else raw
        self.count = 0

    def write(self, line: bytes) -> None:
        self.f.write(line)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        if self.f is not self._raw:
            self.f.close()
        self._raw.close()
        self.out.commit() if ok else self.out.abort()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, et, e, tb) -> None:
        self.close(ok=et is None)


class ParquetWriter:
    """Rows (dicts) to ``path`` with a fixed ``schema``, flushed every ``batch_size`` rows."""

    def __init__(self, path: str | os.PathLike, schema, batch_size: int = BATCH) -> None:
        import pyarrow.parquet as pq

        self.out = AtomicFile(path)
        self.schema = schema
        self.w = pq.ParquetWriter(self.out.tmp, schema)
        self.rows: list[dict] = []
        self.batch_size = batch_size
        self.count = 0

    def write(self, row: dict) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.w.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self, ok: bool = True) -> None:
        if ok:
            self.flush()
        self.w.close()
        self.out.commit() if ok else self.out.abort()

    def __enter__(self) -> "ParquetWriter":
        return self

    def __exit__(self, et, e, tb) -> None:
        self.close(ok=et is None)


def dumps_line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")


def read_manifest(path: str | os.PathLike) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def inputs_record(paths) -> list[dict]:
    return [{"path": str(p), "sha256": file_sha256(p), "bytes": os.path.getsize(p)} for p in paths]
