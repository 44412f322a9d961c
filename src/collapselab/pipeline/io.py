"""Streaming readers for every input format, and atomic writers for JSONL (plain, .gz, .zst) and Parquet.

Every step reads its inputs a *shard* at a time (:mod:`collapselab.pipeline.shards`): a byte range
of a plain local JSONL file, or a whole other file (compressed JSON lines, Parquet, Arrow, text, or
anything behind a URL; :mod:`collapselab.pipeline.sources`). :class:`LineReader` hands out a
shard's complete lines in blocks of about ``BLOCK_BYTES`` (8 MiB) and hashes exactly the bytes that
decide the shard (its done-marker records that hash); :func:`shard_records` turns them, or a
Parquet or Arrow file's rows, or a text file's one document, into batches of at most
``batch_size`` records. Memory is one block and one batch, whatever the file's size.

A record's place is ``(file, line)``: the 1-based line number in a JSON-lines file, the 1-based row
number in a Parquet or Arrow file. Its id is its ``id`` field when it has one, else ``FILE:LINE``.
The text field may be a dotted path (``meta.body``).

A block's lines are parsed with orjson all at once; only a block that holds a blank or malformed
line is parsed again line by line. Malformed lines (not JSON, not an object, no string text field)
either stop the job with a :class:`MalformedRecord` naming the file and line (``on_error="fail"``,
the default) or are counted and listed (``on_error="skip"``): scan and mix skip them, filter sends
them to quarantine. Blank lines are not records: they carry no document.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from collapselab.atomic import AtomicFile
from collapselab.errors import UserError
from collapselab.pipeline.sources import file_size, format_of, get_field, is_url, open_binary, open_stream, remote

BATCH = 10_000  # records per batch at most
BLOCK_BYTES = 8 << 20  # bytes of complete lines read at a time
ON_ERROR = ("fail", "skip")
MAX_EXAMPLES = 20  # malformed lines listed (all are counted)
_JSONError = (orjson.JSONDecodeError, UnicodeDecodeError)


def kind_of(path: str | os.PathLike) -> str:
    """The family of a file's format: ``jsonl`` (plain or compressed), ``parquet``, ``arrow`` or ``text``."""
    fmt = format_of(path)
    return "jsonl" if fmt.startswith("jsonl") else fmt


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise UserError(f"--on-error {on_error!r}: use 'fail' (stop at the first malformed line) or 'skip'.")
    return on_error


def fail_message(msg: str) -> str:
    """The error for a malformed line met with ``on_error="fail"``; ``msg`` is ``FILE:LINE: what``."""
    return f"{msg}. Fix the line, or pass --on-error skip to skip such lines with a count."


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: str | os.PathLike) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def inputs_record(paths) -> list[dict]:
    return [{"path": str(p), "sha256": file_sha256(p), "bytes": file_size(p)} for p in paths]


# ------------------------------------------------------------------------------------ lines
class LineReader:
    """The lines of a JSON-lines file (plain, .gz or .zst; local or a URL) whose first byte lies in ``[start, end)``.

    Iterating yields ``(offset, lines, terminated)``: the next complete lines (without their
    newlines), about ``block_bytes`` of them at a time (a longer line comes whole), the file offset
    where the first begins, and whether the last ended in a newline (only a file's last line may
    not). A shard that starts inside a line skips it: the shard before it reads that line to its
    end. Afterwards ``sha256`` is the SHA-256 of the bytes ``[max(start - 1, 0), stop)``,
    everything that decides which lines the shard holds and what they say, ``stop`` the offset
    after its last line and ``lines`` how many lines it held. A compressed file is read whole
    (``start`` must be 0), once: ``sha256`` is that of the compressed file, hashed as it is read.
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, end: int | None = None,
                 block_bytes: int | None = None) -> None:
        self.path = path
        self.fmt = format_of(path, "jsonl")
        self.gz = self.fmt != "jsonl"  # compressed: read whole
        if self.gz and start:
            raise ValueError("a compressed file is read whole")
        self.start, self.end = start, (end if end is not None and not self.gz else float("inf"))
        self.block_bytes = block_bytes or BLOCK_BYTES
        self.sha256: str | None = None
        self.stop = self.lines = 0

    def _open(self):
        return open_stream(self.path, self.fmt)

    def __iter__(self) -> Iterator[tuple[int, list[bytes], bool]]:
        h = hashlib.sha256()
        pos = max(self.start - 1, 0)  # file offset of the first byte not yet handed out or skipped
        skip = self.start > 0  # the first line holds byte start - 1: the shard before reads it
        carry: list[bytes] = []  # the beginning of an unfinished line, at pos
        try:
            with self._open() as f:
                if pos:
                    f.seek(pos)
                while pos < self.end:
                    chunk = f.read(self.block_bytes)
                    if not chunk:  # end of file: a last line without a newline
                        tail = b"".join(carry)
                        h.update(tail)
                        if tail and not skip:
                            self.lines += 1
                            yield pos, [tail], False
                        pos += len(tail)
                        break
                    lines = chunk.split(b"\n")
                    rest = lines.pop()  # after the chunk's last newline: the next line's beginning
                    if not lines:
                        carry.append(rest)
                        continue
                    for piece in carry:  # the carried beginning belongs to the first complete line
                        h.update(piece)
                    if carry:
                        lines[0] = b"".join([*carry, lines[0]])
                    carry = [rest] if rest else []
                    used = len(chunk) - len(rest)  # bytes of the chunk in complete lines
                    if skip:
                        pos += len(lines[0]) + 1
                        lines[0:1] = []
                        skip = False
                    size = sum(map(len, lines)) + len(lines)
                    if lines and pos + size - len(lines[-1]) - 1 >= self.end:
                        # some lines start at or after end: keep those that start before it
                        lens = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
                        keep = int(np.searchsorted(pos + np.cumsum(lens) - lens, self.end))
                        used -= int(lens[keep:].sum())
                        size -= int(lens[keep:].sum())
                        del lines[keep:]
                    h.update(memoryview(chunk)[:used])
                    if lines:
                        self.lines += len(lines)
                        yield pos, lines, True
                    pos += size  # at or past end once lines were dropped: the loop ends
                whole_file = f.sha256() if self.gz else None  # the compressed file, read once
        except (OSError, EOFError, zlib.error) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise UserError(f"{self.path}: cannot be read ({e or type(e).__name__}); a truncated or damaged "
                            "compressed file? Check it, or write it again.") from None
        self.stop = pos
        self.sha256 = whole_file if self.gz else h.hexdigest()

    def digest(self) -> str:
        """Read the shard through (nothing kept) and return its SHA-256."""
        for _ in self:
            pass
        return self.sha256


def line_number(path: str | os.PathLike, offset: int) -> int:
    """The 1-based number of the line that starts at byte ``offset`` of a plain file."""
    n = 1
    with open_binary(path) as f:
        while offset > 0:
            chunk = f.read(min(offset, BLOCK_BYTES))
            if not chunk:
                break
            n += chunk.count(b"\n")
            offset -= len(chunk)
    return n


# ---------------------------------------------------------------------------------- records
@dataclass
class Parsed:
    """The well-formed records of a block of lines (indexes into the block), and the malformed ones."""

    rows: list[int]  # indexes of the well-formed records
    texts: list[str]
    ids: list[str | None]  # the ``id`` field as a string, None where absent
    bad: list[tuple[int, str]]  # (index, what is wrong) of malformed lines


class MalformedLine(UserError):
    """A malformed line met with ``on_error="fail"``; ``index`` is its place in the block, ``detail``
    what is wrong as manifests record it, ``reason`` the same for a person, with what to do."""

    def __init__(self, index: int, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.index, self.detail, self.reason = index, detail, reason or detail

    def __reduce__(self):
        return MalformedLine, (self.index, self.detail, self.reason)


class MalformedRecord(UserError):
    """A malformed record met with ``on_error="fail"``: line or row (``unit``) ``number`` (1-based) of
    ``file``; ``detail`` and ``reason`` as in :class:`MalformedLine`. The message is
    ``FILE:N: detail`` and what to do (:func:`~collapselab.corpus.readers.read_documents` says
    ``FILE, line N: reason`` instead)."""

    def __init__(self, file: str, unit: str, number: int, detail: str, reason: str | None = None) -> None:
        super().__init__(fail_message(f"{file}:{number}: {detail}"))
        self.file, self.unit, self.number, self.detail, self.reason = file, unit, number, detail, reason or detail

    def __reduce__(self):
        return MalformedRecord, (self.file, self.unit, self.number, self.detail, self.reason)


def is_token_ids(value) -> bool:
    """A list of non-negative integers (a token-id field, ``scan --ids-field``)."""
    return type(value) is list and all(type(x) is int and x >= 0 for x in value)


def _valid(values: list, ids: bool) -> bool:
    if not ids:
        return set(map(type, values)) <= {str}
    return all(map(is_token_ids, values))


def _what(field: str, ids: bool) -> str:
    return f"no token-id list field {field!r}" if ids else f"no string field {field!r}"


def _wrong_value(field: str, value, ids: bool) -> str:
    """Why a field's value is no document, and what to do."""
    kind = "null" if value is None else type(value).__name__
    if ids:
        return f"field {field!r} is {kind}, not a list of token ids. Name the token-id field with --ids-field."
    return f"field {field!r} is {kind}, not a string. Name the text field with --text-field."


def parse_lines(lines: list[bytes], *, text_field: str, on_error: str, ids: bool = False) -> Parsed:
    """Parse a block's lines: all at once with orjson; line by line only when one is blank or bad.

    ``text_field`` may be a dotted path into nested objects (``meta.body``, :func:`get_field`).
    ``ids``: the field holds token ids (a list of non-negative integers), not text."""
    try:
        objs = list(map(orjson.loads, lines))
        if "." in text_field:
            texts = [get_field(o, text_field) for o in objs]
        else:
            texts = [o[text_field] for o in objs]
        if not _valid(texts, ids):
            raise TypeError
    except (ValueError, TypeError, KeyError, *_JSONError):
        return parse_slowly(lines, text_field, on_error, ids)
    return Parsed(list(range(len(lines))), texts, _ids(objs), [])


def _ids(objs: list[dict]) -> list[str | None]:
    ids = [o.get("id") for o in objs]
    if set(map(type, ids)) <= {str, type(None)}:
        return ids
    return [None if x is None else str(x) for x in ids]


def check_line(raw: bytes, field: str, ids: bool = False) -> tuple[dict | None, Any, str | None, str | None]:
    """``(record, value, None, None)`` for a well-formed line, else ``(None, None, detail, reason)``
    (see :class:`MalformedLine`)."""
    try:
        obj = orjson.loads(raw)
    except _JSONError as e:
        detail = f"malformed record ({str(e).splitlines()[0][:120]})"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as u:
            return None, None, detail, (f"not UTF-8 (byte 0x{raw[u.start]:02x} at column {u.start + 1}). "
                                        "Re-encode the file as UTF-8.")
        where = f" at column {e.colno}" if isinstance(e, orjson.JSONDecodeError) else ""
        msg = e.msg if isinstance(e, orjson.JSONDecodeError) else str(e)
        return None, None, detail, f"malformed JSON{where} ({msg}). Fix or remove that line; each line must be one JSON object."
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return None, None, f"malformed record (a JSON {kind}, not an object)", (
            f"expected a JSON object, found {kind}. Each line must be an object with a {field!r} field.")
    try:
        value = get_field(obj, field)
    except KeyError:
        keys = ", ".join(sorted(obj)[:8]) or "none"
        flag = "--ids-field" if ids else "--text-field"
        return None, None, f"malformed record ({_what(field, ids)})", f"no field {field!r} (fields: {keys}). Name it with {flag}."
    if not _valid([value], ids):
        return None, None, f"malformed record ({_what(field, ids)})", _wrong_value(field, value, ids)
    return obj, value, None, None


def parse_slowly(lines: list[bytes], text_field: str, on_error: str, ids: bool = False) -> Parsed:
    """:func:`parse_lines` one line at a time, saying what is wrong with each malformed line."""
    out = Parsed([], [], [], [])
    objs = []
    for i, raw in enumerate(lines):
        if not raw or raw.isspace():
            continue
        obj, value, detail, reason = check_line(raw, text_field, ids)
        if obj is None:
            if on_error == "fail":
                raise MalformedLine(i, detail, reason)
            out.bad.append((i, detail))
            continue
        out.rows.append(i)
        out.texts.append(value)
        objs.append(obj)
    out.ids = _ids(objs)
    return out


@dataclass
class Batch:
    rows: np.ndarray  # 0-based line (JSONL) or row (Parquet, Arrow) of each record within the shard
    texts: list[str]
    ids: list[str | None]
    raw: list  # JSONL: each record's line as read, without its newline; Parquet, Arrow: each row as a dict
    #            (if asked); text: ``{text_field: text}``


@dataclass
class Found:
    """What reading a shard found: its input hash, lines, and the malformed lines met (skip mode)."""

    sha256: str | None = None
    lines: int = 0  # lines (JSONL) or rows (Parquet, Arrow) in the shard; 1 for a text file
    malformed: int = 0
    examples: list = field(default_factory=list)  # [0-based line in the shard, what is wrong]

    def bad(self, items) -> None:
        for i, detail in items:
            self.malformed += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append([i, detail])


def shard_records(shard, *, text_field: str, on_error: str, batch_size: int = BATCH, found: Found,
                  whole_rows: bool = False, ids: bool = False, skip_nulls: bool = False) -> Iterator[Batch]:
    """The records of a shard (``file``, ``start``, ``end``, ``whole``, ``fmt``), ``batch_size`` at a time.

    Every format of :mod:`~collapselab.pipeline.sources`: JSON lines (plain, .gz, .zst), Parquet,
    Arrow (a ``datasets`` folder's files), text (the file is one record). ``text_field`` may be a
    dotted path (``meta.body``: a nested object's field, a Parquet struct's child). Malformed
    records stop the job (``on_error="fail"``: a :class:`MalformedRecord` naming the file's line or
    row) or are counted into ``found``, which also gets the shard's input hash and line count once
    read through. ``whole_rows``: Parquet and Arrow batches carry every column of each row in
    ``raw``. ``ids``: the field holds token ids (lists of non-negative integers), passed on as
    lists in ``texts``. ``skip_nulls``: a null cell of a Parquet or Arrow text column is no record
    (like a blank line), not a malformed one."""
    fmt = getattr(shard, "fmt", None) or format_of(shard.file, "jsonl")
    if fmt in ("parquet", "arrow"):
        records = _table_records(shard.file, fmt, text_field, on_error, batch_size, found, whole_rows, ids, skip_nulls)
    elif fmt == "text":
        records = _text_records(shard.file, text_field, on_error, found, ids)
    else:
        records = _line_records(shard, text_field, on_error, batch_size, found, ids)
    if not is_url(shard.file):
        yield from records
        return
    with remote(shard.file):  # a store failing mid-read: one UserError naming the URL
        yield from records


def _line_records(shard, text_field: str, on_error: str, batch_size: int, found: Found, ids: bool) -> Iterator[Batch]:
    reader = LineReader(shard.file, shard.start, shard.end)
    seen = 0  # lines of the shard before this block
    for offset, lines, _ in reader:
        error = None
        try:
            parsed = parse_lines(lines, text_field=text_field, on_error=on_error, ids=ids)
        except MalformedLine as e:  # the records before it come first, then the error
            parsed = parse_slowly(lines[: e.index], text_field, "skip", ids)
            at = offset + sum(len(x) + 1 for x in lines[: e.index])
            n = seen + e.index + 1 if shard.start == 0 else line_number(shard.file, at)
            error = MalformedRecord(shard.file, "line", n, e.detail, e.reason)
        found.bad([seen + i, d] for i, d in parsed.bad)
        rows = np.asarray(parsed.rows, dtype=np.int64)
        raw = [lines[i] for i in parsed.rows] if parsed.bad or len(rows) < len(lines) else lines
        for lo in range(0, len(rows), batch_size):
            hi = lo + batch_size
            yield Batch(rows[lo:hi] + seen, parsed.texts[lo:hi], parsed.ids[lo:hi], raw[lo:hi])
        if error is not None:
            raise error
        seen += len(lines)
    found.sha256, found.lines = reader.sha256, reader.lines


def _text_records(path: str, text_field: str, on_error: str, found: Found, ids: bool) -> Iterator[Batch]:
    """A text file: one record, the whole file (UTF-8)."""
    if ids:
        raise UserError(f"{path}: a text file holds no token ids; pass JSON lines or Parquet with --ids-field.")
    try:
        with open_binary(path) as f:
            raw = f.read()
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise UserError(f"{path}: cannot read it ({e.strerror or e}). Check the path and its permissions.") from None
    found.sha256, found.lines = hashlib.sha256(raw).hexdigest(), 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        what = f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        if on_error == "fail":
            raise MalformedRecord(path, "line", line, f"malformed record ({what})",
                                  f"{what}. Convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None
        found.bad([(0, f"malformed record ({what})")])
        return
    yield Batch(np.zeros(1, dtype=np.int64), [text], [None], [{text_field: text}])


def open_parquet(path: str | os.PathLike):
    """``pyarrow.parquet.ParquetFile`` of a local path or URL, or one UserError naming the file when it
    is not Parquet, truncated or damaged."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(open_binary(path) if is_url(path) else path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        if isinstance(e, UserError):
            raise
        raise UserError(f"{path}: not a readable Parquet file, truncated or damaged ({str(e).splitlines()[0]}). "
                        "Check the file, or write it again.") from None


def parquet_batches(pf, path: str | os.PathLike, **kw) -> Iterator:
    """``pf.iter_batches(**kw)``, with a damaged page reported as one UserError naming the file."""
    return _guarded(pf.iter_batches(**kw), path, "a damaged Parquet page")


def _guarded(it: Iterator, path, what: str) -> Iterator:
    """The items of ``it``; a pyarrow or read error while reading is one UserError naming the file."""
    import pyarrow as pa

    while True:
        try:
            rb = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{path}: {what} ({str(e).splitlines()[0]}); the file is truncated or "
                            "corrupt. Check the file, or write it again.") from None
        yield rb


class ArrowFile:
    """The record batches of an Arrow IPC file: the stream format ``datasets`` writes (``.arrow``
    files of a ``save_to_disk`` folder) or the random-access file format. Read like a
    ``pyarrow.parquet.ParquetFile``: ``schema_arrow``, ``iter_batches(batch_size=, columns=)``."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow as pa

        self.path = path
        self._src = pa.PythonFile(open_binary(path), mode="r") if is_url(path) else pa.memory_map(os.fspath(path))
        try:
            try:
                self._reader = pa.ipc.open_stream(self._src)
            except pa.ArrowInvalid:
                self._src.seek(0)
                self._reader = pa.ipc.open_file(self._src)
        except (pa.ArrowException, OSError) as e:
            self._src.close()
            raise UserError(f"{path}: not a readable Arrow file, truncated or damaged ({str(e).splitlines()[0]}). "
                            "Check the file, or save the dataset again.") from None
        self.schema_arrow = self._reader.schema

    def iter_batches(self, batch_size: int = BATCH, columns: list[str] | None = None) -> Iterator:
        r = self._reader
        batches = (r.get_batch(i) for i in range(r.num_record_batches)) if hasattr(r, "get_batch") else iter(r)
        for rb in _guarded(batches, self.path, "a damaged Arrow batch"):
            if columns is not None:
                rb = rb.select(columns)
            for lo in range(0, rb.num_rows, batch_size):
                yield rb.slice(lo, batch_size)

    def close(self) -> None:
        self._src.close()


def open_table(path: str | os.PathLike, fmt: str | None = None):
    """A Parquet file (``ParquetFile``) or an Arrow file (:class:`ArrowFile`), read alike; a damaged
    one is a UserError naming the file."""
    return ArrowFile(path) if (fmt or format_of(path)) == "arrow" else open_parquet(path)


def _resolve_column(schema, field: str):
    """``(top-level column, child names, type)`` of a column or dotted struct path; None if absent."""
    import pyarrow as pa

    if field in schema.names:
        return field, [], schema.field(field).type
    top, *rest = field.split(".")
    if not rest or top not in schema.names:
        return None
    t = schema.field(top).type
    for part in rest:
        if not pa.types.is_struct(t) or t.get_field_index(part) < 0:
            return None
        t = t.field(part).type
    return top, rest, t


def _table_records(path: str, fmt: str, text_field: str, on_error: str, batch_size: int, found: Found,
                   whole_rows: bool, ids_field: bool = False, skip_nulls: bool = False) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = open_table(path, fmt)
    try:
        schema = table.schema_arrow
        names = schema.names
        col = _resolve_column(schema, text_field)
        if col is None:
            raise UserError(f"{path}: no column {text_field!r} (columns: {', '.join(names[:8])}). "
                            "Name the text column with --text-field.")
        top, children, typ = col
        if (on_error == "fail" and not ids_field and not pa.types.is_null(typ)
                and not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ))):
            raise UserError(f"{path}: column {text_field!r} has type {typ}, not string. Name the text column with --text-field.")
        cols = None if whole_rows else [top] + (["id"] if "id" in names and top != "id" else [])
        n = 0
        for rb in parquet_batches(table, path, batch_size=batch_size, columns=cols):
            arr = rb.column(top)
            for part in children:
                arr = pc.struct_field(arr, part)
            texts = arr.to_pylist()
            ids = rb.column("id").to_pylist() if "id" in rb.schema.names else [None] * len(texts)
            ok, bad = [], []
            for i, t in enumerate(texts):
                if _valid([t], ids_field):
                    ok.append(i)
                elif not (skip_nulls and t is None):
                    bad.append(i)
            error = None
            if bad:
                detail = f"malformed record ({_what(text_field, ids_field)})"
                if on_error == "fail":  # the records before it come first, then the error
                    error = MalformedRecord(path, "row", n + bad[0] + 1, detail, _wrong_value(text_field, texts[bad[0]], ids_field))
                    ok = [i for i in ok if i < bad[0]]
                else:
                    found.bad((n + i, detail) for i in bad)
            raw = rb.to_pylist() if whole_rows else []
            yield Batch(np.asarray(ok, dtype=np.int64) + n, [texts[i] for i in ok],
                        [None if ids[i] is None else str(ids[i]) for i in ok], [raw[i] for i in ok] if whole_rows else [])
            if error is not None:
                raise error
            n += rb.num_rows
    finally:
        table.close()
    found.sha256, found.lines = file_sha256(path), n


# ------------------------------------------------------------------------------------- output
class JsonlWriter:
    """Bytes lines to ``path`` (gzip when it ends in .gz, with a fixed header so reruns match; zstd
    when it ends in .zst)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.out = AtomicFile(path)
        raw = open(self.out.tmp, "wb")
        self._raw = raw
        fmt = format_of(path, "jsonl")
        if fmt == "jsonl.gz":
            self.f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        elif fmt == "jsonl.zst":
            import pyarrow as pa

            self.f = pa.CompressedOutputStream(pa.PythonFile(raw, mode="w"), "zstd")
        else:
            self.f = raw
        self.count = 0

    def write(self, line: bytes) -> None:
        self.f.write(line)
        self.count += 1

    def write_lines(self, data: bytes, count: int) -> None:
        """``count`` complete lines at once."""
        self.f.write(data)
        self.count += count

    def close(self, ok: bool = True) -> None:
        try:
            if self.f is not self._raw:
                self.f.close()
            self._raw.close()
        except BaseException:  # the last flush failed (a full disk): no temporary file left behind
            self.out.abort()
            raise
        self.out.commit() if ok else self.out.abort()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, et, e, tb) -> None:
        self.close(ok=et is None)


class ParquetWriter:
    """Record batches to ``path`` with a fixed ``schema``."""

    def __init__(self, path: str | os.PathLike, schema) -> None:
        import pyarrow.parquet as pq

        self.out = AtomicFile(path)
        self.schema = schema
        self.w = pq.ParquetWriter(self.out.tmp, schema)
        self.count = 0

    def write_batch(self, rb) -> None:
        """A record batch or a table (one row group each); an empty one writes nothing."""
        if rb.num_rows:
            self.w.write(rb)
            self.count += rb.num_rows

    def close(self, ok: bool = True) -> None:
        try:
            self.w.close()
        except BaseException:  # the footer could not be written (a full disk): no temporary file left behind
            self.out.abort()
            raise
        self.out.commit() if ok else self.out.abort()

    def __enter__(self) -> "ParquetWriter":
        return self

    def __exit__(self, et, e, tb) -> None:
        self.close(ok=et is None)


def dumps_line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
