"""Streaming readers and atomic writers for JSONL (plain or .gz) and Parquet.

Every step reads its inputs a *shard* at a time (:mod:`collapselab.pipeline.shards`): a byte range
of a plain JSONL file, or a whole .gz or Parquet file. :class:`LineReader` hands out a shard's
complete lines in blocks of about ``BLOCK_BYTES`` (8 MiB) and hashes exactly the bytes that decide
the shard (its done-marker records that hash); :func:`shard_records` turns them into batches of at
most ``batch_size`` records. Memory is one block and one batch, whatever the file's size.

A record's place is ``(file, line)``: the 1-based line number in a JSONL file, the 1-based row
number in a Parquet file. Its id is its ``id`` field when it has one, else ``FILE:LINE``.

A block's lines are parsed with orjson all at once; only a block that holds a blank or malformed
line is parsed again line by line. Malformed lines (not JSON, not an object, no string text field)
either stop the job with a :class:`UserError` naming the file and line (``on_error="fail"``, the
default) or are counted and listed (``on_error="skip"``): scan and mix skip them, filter sends
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
from collapselab.pipeline.sources import file_size, format_of, open_binary, open_stream

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
    """The lines of a plain JSONL (or .gz) file whose first byte lies in ``[start, end)``.

    Iterating yields ``(offset, lines, terminated)``: the next complete lines (without their
    newlines), about ``block_bytes`` of them at a time (a longer line comes whole), the file offset
    where the first begins, and whether the last ended in a newline (only a file's last line may
    not). A shard that starts inside a line skips it: the shard before it reads that line to its
    end. Afterwards ``sha256`` is the SHA-256 of the bytes ``[max(start - 1, 0), stop)``,
    everything that decides which lines the shard holds and what they say, ``stop`` the offset
    after its last line and ``lines`` how many lines it held. A ``.gz`` file is read whole
    (``start`` must be 0) and ``sha256`` is that of the compressed file.
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
        except (OSError, EOFError, zlib.error) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise UserError(f"{self.path}: cannot be read ({e or type(e).__name__}); a truncated or damaged "
                            "compressed file? Check it, or write it again.") from None
        self.stop = pos
        self.sha256 = file_sha256(self.path) if self.gz else h.hexdigest()

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
    """A malformed line met with ``on_error="fail"``; ``index`` is its place in the block."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(detail)
        self.index, self.detail = index, detail

    def __reduce__(self):
        return MalformedLine, (self.index, self.detail)


def is_token_ids(value) -> bool:
    """A list of non-negative integers (a token-id field, ``scan --ids-field``)."""
    return type(value) is list and all(type(x) is int and x >= 0 for x in value)


def _valid(values: list, ids: bool) -> bool:
    if not ids:
        return set(map(type, values)) <= {str}
    return all(map(is_token_ids, values))


def _what(field: str, ids: bool) -> str:
    return f"no token-id list field {field!r}" if ids else f"no string field {field!r}"


def parse_lines(lines: list[bytes], *, text_field: str, on_error: str, ids: bool = False) -> Parsed:
    """Parse a block's lines: all at once with orjson; line by line only when one is blank or bad.

    ``ids``: the field holds token ids (a list of non-negative integers), not text."""
    try:
        objs = list(map(orjson.loads, lines))
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


def parse_slowly(lines: list[bytes], text_field: str, on_error: str, ids: bool = False) -> Parsed:
    """:func:`parse_lines` one line at a time, saying what is wrong with each malformed line."""
    out = Parsed([], [], [], [])
    objs = []
    for i, raw in enumerate(lines):
        if not raw or raw.isspace():
            continue
        try:
            obj = orjson.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"a JSON {type(obj).__name__}, not an object")
            if not _valid([obj.get(text_field)], ids):
                raise ValueError(_what(text_field, ids))
        except (ValueError, *_JSONError) as e:
            detail = f"malformed record ({str(e).splitlines()[0][:120]})"
            if on_error == "fail":
                raise MalformedLine(i, detail) from None
            out.bad.append((i, detail))
            continue
        out.rows.append(i)
        out.texts.append(obj[text_field])
        objs.append(obj)
    out.ids = _ids(objs)
    return out


@dataclass
class Batch:
    rows: np.ndarray  # 0-based line (JSONL) or row (Parquet) of each record within the shard
    texts: list[str]
    ids: list[str | None]
    raw: list  # JSONL: each record's line as read, without its newline; Parquet: each row as a dict (if asked)


@dataclass
class Found:
    """What reading a shard found: its input hash, lines, and the malformed lines met (skip mode)."""

    sha256: str | None = None
    lines: int = 0  # lines (JSONL) or rows (Parquet) in the shard
    malformed: int = 0
    examples: list = field(default_factory=list)  # [0-based line in the shard, what is wrong]

    def bad(self, items) -> None:
        for i, detail in items:
            self.malformed += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append([i, detail])


def shard_records(shard, *, text_field: str, on_error: str, batch_size: int = BATCH, found: Found,
                  whole_rows: bool = False, ids: bool = False) -> Iterator[Batch]:
    """The records of a shard (``file``, ``start``, ``end``, ``whole``), ``batch_size`` at a time.

    Malformed lines stop the job (``on_error="fail"``, with the file's line number) or are counted
    into ``found``, which also gets the shard's input hash and line count once read through.
    ``whole_rows``: Parquet batches carry every column of each row in ``raw``. ``ids``: the field
    holds token ids (lists of non-negative integers), passed on as lists in ``texts``."""
    if shard.whole and kind_of(shard.file) == "parquet":
        yield from _parquet_records(shard.file, text_field, on_error, batch_size, found, whole_rows, ids)
        return
    reader = LineReader(shard.file, shard.start, shard.end)
    seen = 0  # lines of the shard before this block
    for offset, lines, _ in reader:
        try:
            parsed = parse_lines(lines, text_field=text_field, on_error=on_error, ids=ids)
        except MalformedLine as e:
            at = offset + sum(len(x) + 1 for x in lines[: e.index])
            n = seen + e.index + 1 if shard.start == 0 else line_number(shard.file, at)
            raise UserError(fail_message(f"{shard.file}:{n}: {e.detail}")) from None
        found.bad([seen + i, d] for i, d in parsed.bad)
        rows = np.asarray(parsed.rows, dtype=np.int64)
        raw = [lines[i] for i in parsed.rows] if parsed.bad or len(rows) < len(lines) else lines
        for lo in range(0, len(rows), batch_size):
            hi = lo + batch_size
            yield Batch(rows[lo:hi] + seen, parsed.texts[lo:hi], parsed.ids[lo:hi], raw[lo:hi])
        seen += len(lines)
    found.sha256, found.lines = reader.sha256, reader.lines


def open_parquet(path: str | os.PathLike):
    """``pyarrow.parquet.ParquetFile(path)``, or one UserError naming the file when it is not Parquet,
    truncated or damaged."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise UserError(f"{path}: not a readable Parquet file, truncated or damaged ({str(e).splitlines()[0]}). "
                        "Check the file, or write it again.") from None


def parquet_batches(pf, path: str | os.PathLike, **kw) -> Iterator:
    """``pf.iter_batches(**kw)``, with a damaged page reported as one UserError naming the file."""
    import pyarrow as pa

    it = pf.iter_batches(**kw)
    while True:
        try:
            rb = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{path}: a damaged Parquet page ({str(e).splitlines()[0]}); the file is truncated or "
                            "corrupt. Check the file, or write it again.") from None
        yield rb


def _parquet_records(path: str, text_field: str, on_error: str, batch_size: int, found: Found,
                     whole_rows: bool, ids_field: bool = False) -> Iterator[Batch]:
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    if text_field not in names:
        raise UserError(f"{path}: no column {text_field!r}; pass --text-field with one of {names}.")
    cols = None if whole_rows else [text_field] + (["id"] if "id" in names and text_field != "id" else [])
    n = 0
    for rb in parquet_batches(pf, path, batch_size=batch_size, columns=cols):
        texts = rb.column(text_field).to_pylist()
        ids = rb.column("id").to_pylist() if "id" in rb.schema.names else [None] * len(texts)
        good = [_valid([t], ids_field) for t in texts]
        ok = [i for i, g in enumerate(good) if g]
        if len(ok) < len(texts):
            detail = f"malformed record ({_what(text_field, ids_field)})"
            bad = [n + i for i, g in enumerate(good) if not g]
            if on_error == "fail":
                raise UserError(fail_message(f"{path}:{bad[0] + 1}: {detail}"))
            found.bad((i, detail) for i in bad)
        raw = rb.to_pylist() if whole_rows else []
        yield Batch(np.asarray(ok, dtype=np.int64) + n, [texts[i] for i in ok],
                    [None if ids[i] is None else str(ids[i]) for i in ok], [raw[i] for i in ok] if whole_rows else [])
        n += rb.num_rows
    found.sha256, found.lines = file_sha256(path), n


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
        if rb.num_rows:
            self.w.write_batch(rb)
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
