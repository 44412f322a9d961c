"""Streaming readers for the corpora users bring: ``.txt`` files or folders, JSONL, Parquet.

Each reader yields ``(where, text)`` pairs, one per document, where ``where`` names the file (and
line) for error messages. Nothing is loaded whole: text files are read one at a time, JSONL line
by line, Parquet in record batches of one column. Bad input raises :class:`UserError` naming the
file, line and field, and what to do.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Iterator

from collapselab.errors import UserError

TEXT_SUFFIXES = {".txt", ".text", ".md"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def read_documents(path: str | Path, *, text_field: str = "text") -> Iterator[tuple[str, str]]:
    """Yield ``(where, text)`` for every document under ``path`` (a file or a folder)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder. Pass an existing .txt/.jsonl/.parquet file or folder with --corpus.")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: the folder holds no .txt, .jsonl or .parquet files. Put the corpus files in it, or point --corpus at a file.")
    for f in files:
        kind = _suffix(f)
        if kind in JSONL_SUFFIXES:
            yield from _read_jsonl(f, text_field)
        elif kind in PARQUET_SUFFIXES:
            yield from _read_parquet(f, text_field)
        elif kind in TEXT_SUFFIXES or not path.is_dir():
            yield from _read_text(f)


def _read_text(path: Path) -> Iterator[tuple[str, str]]:
    """A text file is one document; blank-line-separated paragraphs stay together."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror}). Check the path and its permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path}, line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}). "
            "Convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    yield str(path), text


def _read_jsonl(path: Path, field: str) -> Iterator[tuple[str, str]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}). Re-encode the file as UTF-8.") from None
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{where}, column {e.colno}: malformed JSON ({e.msg}). Fix or remove that line; each line must be one JSON object.") from None
                if not isinstance(record, dict):
                    raise UserError(f"{where}: expected a JSON object, found {type(record).__name__}. Each line must be an object with a {field!r} field.")
                if field not in record:
                    keys = ", ".join(sorted(record)[:8]) or "none"
                    raise UserError(f"{where}: no field {field!r} (fields: {keys}). Name the text field with --text-field.")
                value = record[field]
                if not isinstance(value, str):
                    raise UserError(f"{where}: field {field!r} is {type(value).__name__}, not a string. Name the text field with --text-field.")
                yield where, value
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read it ({e or type(e).__name__}). Check that the file is complete and, if .gz, a valid gzip file.") from None


def _read_parquet(path: Path, column: str) -> Iterator[tuple[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({e}). Check that the file is complete.") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise UserError(f"{path}: no column {column!r} (columns: {', '.join(names[:8])}). Name the text column with --text-field.")
    field = pf.schema_arrow.field(column)
    if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
        raise UserError(f"{path}: column {column!r} has type {field.type}, not string. Name the text column with --text-field.")
    row = 0
    for batch in pf.iter_batches(columns=[column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            row += 1
            if value is not None:
                yield f"{path}, row {row}", value
