"""Where documents come from: local paths and URLs, folders, and the formats their files hold.

Every command that reads a corpus (``run --corpus``, ``vault add``, ``scan``, ``filter``, ``mix``)
turns its inputs into concrete files with :func:`expand_inputs` and reads them a shard at a time
(:func:`collapselab.pipeline.shards.plan`, :func:`collapselab.pipeline.io.shard_records`).

- A *file* stays exactly as the user spelled it (so existing outputs name it the same way).
- A *folder* expands to its data files, sorted by relative path (hidden files skipped); a HF
  ``datasets`` ``save_to_disk`` folder (``state.json``) to the Arrow files its ``_data_files``
  list, in that order, and a ``DatasetDict`` folder (``dataset_dict.json``) to its splits' files.
- A *pattern* (``documents/*.json.gz``, ``s3://bucket/documents/**/*.json.gz``) that names no
  existing path expands to the data files it matches, sorted by path.
- A *URL* ``scheme://...`` is read through fsspec: ``file://`` and ``memory://`` always work,
  ``s3://``, ``gs://``, ``hf://`` once the user installed the backend (``s3fs``, ``gcsfs``,
  ``huggingface_hub``).

A file's format comes from its name (:func:`format_of`): ``jsonl`` (``.jsonl``, ``.ndjson``,
``.json``: one JSON object a line, the only format cut into byte ranges), ``jsonl.gz`` (also
``.json.gz``, dolma's), ``jsonl.zst`` (decompressed by pyarrow), ``parquet``, ``arrow`` (Arrow IPC
stream files, as ``datasets`` writes them) and ``text`` (``.txt``/``.md``: one document a file).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import re
from contextlib import contextmanager
from typing import IO, Any, Sequence

from collapselab.errors import UserError

FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "arrow", "text")

# name endings, the more specific first; those marked False are recognised only when named, not in folders
_SUFFIXES: list[tuple[str, str, bool]] = [
    (".jsonl.zstd", "jsonl.zst", True), (".ndjson.zst", "jsonl.zst", True), (".jsonl.zst", "jsonl.zst", True),
    (".json.zst", "jsonl.zst", True), (".ndjson.gz", "jsonl.gz", True), (".jsonl.gz", "jsonl.gz", True),
    (".json.gz", "jsonl.gz", True), (".parquet", "parquet", True), (".ndjson", "jsonl", True),
    (".jsonl", "jsonl", True), (".arrow", "arrow", True), (".text", "text", True), (".txt", "text", True),
    (".zstd", "jsonl.zst", False), (".json", "jsonl", False), (".zst", "jsonl.zst", False), (".md", "text", True),
    (".pq", "parquet", True), (".gz", "jsonl.gz", False),
]
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB = re.compile(r"[*?[]")
# fsspec protocol -> the package that provides it (for the error when it is missing)
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub",
            "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}
DATA_FILES = ".txt, .md, .jsonl, .jsonl.gz, .json.gz, .jsonl.zst, .parquet or a datasets folder"


def is_url(path: str | os.PathLike) -> bool:
    return isinstance(path, str) and _URL.match(path) is not None


def _match(name: str) -> tuple[str, bool] | None:
    name = name.lower()
    for suffix, fmt, in_folders in _SUFFIXES:
        if name.endswith(suffix):
            return fmt, in_folders
    return None


def format_of(path: str | os.PathLike, default: str | None = None) -> str:
    """The format of a file, from its name: one of :data:`FORMATS`. An unknown name is
    ``default``, or a UserError when no default is given."""
    m = _match(posixpath.basename(os.fspath(path).rstrip("/")))
    if m:
        return m[0]
    if default is not None:
        return default
    raise UserError(f"{path}: unknown format; name the files *.jsonl, *.jsonl.gz, *.json.gz, *.jsonl.zst, "
                    "*.parquet, *.arrow or *.txt/*.md, or pass a folder of them.")


# ----------------------------------------------------------------------------- file systems
def filesystem(url: str):
    """``(fsspec filesystem, path inside it)`` for a URL; a missing backend is one UserError
    naming the package to install."""
    import fsspec

    protocol = url.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        package = BACKENDS.get(protocol)
        how = f"install it with `pip install {package}`" if package else f"install the fsspec backend for {protocol}://"
        raise UserError(f"{url}: reading {protocol}:// URLs needs {package or 'a backend'} ({e}); {how}.") from None
    except ValueError as e:
        raise UserError(f"{url}: {e}; use a local path or a URL fsspec knows (file://, s3://, gs://, hf://, ...).") from None


@contextmanager
def remote(url: str):
    """A URL's file-system errors (a missing object, the network, credentials) as one UserError."""
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{url}: no such file or folder. Check the URL.") from None
    except Exception as e:  # each backend has its own errors (botocore, httpx, aiohttp, ...)
        what = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise UserError(f"{url}: cannot be read ({what}). Check the URL, the network and your credentials.") from None


def open_binary(path: str | os.PathLike) -> IO[bytes]:
    """The file's bytes as stored (compressed or not): fsspec for a URL, ``open`` for a local path."""
    if is_url(path):
        with remote(path):
            fs, p = filesystem(path)
            return fs.open(p, "rb")
    return open(path, "rb")


def file_size(path: str | os.PathLike) -> int:
    if is_url(path):
        with remote(path):
            fs, p = filesystem(path)
            return int(fs.size(p))
    return os.path.getsize(path)


class _Hashed:
    """A file's bytes as read, hashed on the way (so a compressed file is read once, not twice)."""

    def __init__(self, raw) -> None:
        self.raw, self.h, self.closed = raw, hashlib.sha256(), False

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read() if n is None or n < 0 else self.raw.read(n)
        self.h.update(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.raw.close()


class _Stream:
    """A decompressing binary stream that closes the file under it too; :meth:`sha256` is the
    SHA-256 of the compressed file (what is left unread is read for it)."""

    def __init__(self, stream, raw: _Hashed) -> None:
        self.stream, self.raw = stream, raw

    def read(self, n: int = -1) -> bytes:
        return self.stream.read() if n is None or n < 0 else self.stream.read(n)

    def sha256(self) -> str:
        while self.raw.read(1 << 20):
            pass
        return self.raw.h.hexdigest()

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.raw.close()

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(path: str | os.PathLike, fmt: str | None = None) -> IO[bytes]:
    """The file's content, decompressed (``.gz`` with gzip, ``.zst`` with pyarrow's zstd); a
    compressed file's stream also has ``sha256()``, the SHA-256 of the file as stored."""
    fmt = fmt or format_of(path)
    raw = open_binary(path)
    try:
        if fmt == "jsonl.gz":
            hashed = _Hashed(raw)
            return _Stream(gzip.GzipFile(fileobj=hashed, mode="rb"), hashed)
        if fmt == "jsonl.zst":
            import pyarrow as pa

            hashed = _Hashed(raw)
            return _Stream(pa.CompressedInputStream(pa.PythonFile(hashed, mode="r"), "zstd"), hashed)
    except BaseException:
        raw.close()
        raise
    return raw


# ---------------------------------------------------------------------------------- fields
def get_field(record: dict, dotted: str) -> Any:
    """``record[dotted]``, or, for ``meta.body``, ``record["meta"]["body"]``: a plain key that
    contains a dot wins over nesting. A missing field raises KeyError."""
    try:
        return record[dotted]
    except KeyError:
        if "." not in dotted:
            raise
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


# ---------------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Every concrete input file of ``inputs``, in a deterministic order (see the module's doc)."""
    files: list[str] = []
    for item in inputs:
        name = os.fspath(item)
        if is_url(name):
            with remote(name):
                files += _expand(name)
        else:
            files += _expand(name)
    return files


def _expand(name: str) -> list[str]:
    """The files one input names (a file, a folder or a pattern; local or a URL)."""
    if is_url(name):
        fs, root = filesystem(name)
        to_fs = lambda s: filesystem(s)[1]  # noqa: E731
        where = "Check the URL."
    else:
        from fsspec.implementations.local import LocalFileSystem

        fs, root, to_fs = LocalFileSystem(), os.path.abspath(name), os.path.abspath
        where = f"Pass existing files or folders ({DATA_FILES})."
    try:
        kind = fs.info(root)["type"]  # not fs.exists: it takes a failing store for a missing file
    except FileNotFoundError:
        if _GLOB.search(name):
            return _glob(fs, name, to_fs)
        raise UserError(f"{name}: no such file or folder. {where}") from None
    if kind != "directory":
        return [name]
    found = _walk(fs, root.rstrip("/") or "/", "")
    if not found:
        raise UserError(f"{name}: the folder holds no data files ({DATA_FILES}). Put the corpus files in it, "
                        "or point at a file.")
    if is_url(name):
        return [name.rstrip("/") + "/" + rel for rel in found]
    return [os.path.join(name, rel) for rel in found]


def _glob(fs, name: str, to_fs) -> list[str]:
    """The data files a pattern (``s3://bucket/documents/*.json.gz``, ``**`` for any depth) matches,
    sorted by path and spelled as the pattern is; a matched folder expands as a folder does."""
    base = name[: name.rfind("/", 0, _GLOB.search(name).start()) + 1]  # the pattern's fixed folder, as spelled
    base_fs = to_fs(base or ".").rstrip("/")
    files: list[str] = []
    try:
        matches = sorted(fs.glob(to_fs(name)), key=lambda m: m.split("/"))
    except ValueError as e:
        raise UserError(f"{name}: not a valid pattern ({e}).") from None
    for match in matches:
        spelled = base + match[len(base_fs):].lstrip("/")
        if fs.isdir(match):
            files += expand_inputs([spelled])
        elif (m := _match(posixpath.basename(match))) and m[1]:
            files.append(spelled)
    if not files:
        raise UserError(f"{name}: matches no data files ({DATA_FILES}). Check the pattern.")
    return files


def _walk(fs, folder: str, rel: str) -> list[str]:
    """Data files under ``folder`` as paths relative to the root, sorted by relative path."""
    entries = {posixpath.basename(e["name"].rstrip("/")): e["type"] for e in fs.ls(folder, detail=True)}
    if entries.get("dataset_dict.json") == "file":
        splits = _read_json(fs, folder + "/dataset_dict.json").get("splits") or []
        return [f for s in splits for f in _walk(fs, folder + "/" + s, rel + s + "/")]
    if entries.get("state.json") == "file":
        data = _read_json(fs, folder + "/state.json").get("_data_files")
        if isinstance(data, list) and all(isinstance(d, dict) and "filename" in d for d in data):
            return [rel + d["filename"] for d in data]
    out: list[str] = []
    for child in sorted(entries):
        if child.startswith("."):
            continue
        if entries[child] == "directory":
            out += _walk(fs, folder + "/" + child, rel + child + "/")
        elif (m := _match(child)) and m[1]:
            out.append(rel + child)
    return out


def _read_json(fs, path: str) -> dict:
    try:
        with fs.open(path, "rb") as f:
            value = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e}); a damaged datasets folder? Save it again.") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: not a JSON object; a damaged datasets folder? Save it again.")
    return value
