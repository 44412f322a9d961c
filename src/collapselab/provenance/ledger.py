"""The provenance ledger: an append-only, hash-chained record of documents, models and snapshots.

What it records
    * a **document**: its content hash (SHA-256 of the text or bytes), origin (``human``,
      ``synthetic`` or ``unknown``), source, licence, the model that generated it and in which
      generation, the id of the watermark key it carries, and when it was recorded;
    * a **model**: its id, family, parent models and the snapshot it was trained on;
    * a **snapshot**: a named set of documents, with the Merkle root of their content hashes
      (RFC 6962 / 9162, see :mod:`collapselab.provenance.merkle`), so one document's membership can
      be proved with a handful of hashes.

Where
    A SQLite file by default (a path, or ``sqlite:///path``); PostgreSQL by URL
    (``postgresql://user:password@host/db``), where a team keeps a shared ledger.

Tamper evidence
    Every entry, whatever its kind, gets the next sequence number ``seq`` (1, 2, 3, ...) and
    ``entry_hash = SHA-256(prev_hash || canonical JSON of the entry's fields)``, with
    ``prev_hash`` the previous entry's hash (32 zero bytes for entry 1). The canonical JSON has
    sorted keys, no spaces and UTF-8 text, and includes ``seq`` and ``kind``. :func:`verify`
    recomputes everything and names each entry that was changed, removed, reordered or inserted;
    it fails closed: a row it cannot read makes the ledger invalid.

    A hash chain alone cannot tell a ledger from a *complete, recomputed* rewrite, nor notice that
    the newest entries were cut off: keep :meth:`Ledger.head` somewhere else (a run's
    ``summary.json``, a signed note) and pass it as ``verify(..., expected_head=...)``.

Tree heads
    As in Certificate Transparency, all entries are also the leaves of one RFC 6962 / 9162 Merkle
    tree (leaf i: the 32 raw bytes of entry i's ``entry_hash``, in ``seq`` order).
    :meth:`Ledger.tree_head` is its root and size, :meth:`Ledger.sign_head` signs it with Ed25519
    (:mod:`collapselab.provenance.sth`), :meth:`Ledger.prove_entry` proves one entry is in the tree
    and :meth:`Ledger.consistency` that an older tree is a prefix of the current one.
    ``verify(..., expected_sth=...)`` checks, with a consistency proof, that the ledger extends a
    head kept from earlier: a truncated or rewritten ledger does not.

Concurrency
    Appends take a database lock for the whole transaction (SQLite: ``BEGIN IMMEDIATE``;
    PostgreSQL: a transaction-scoped advisory lock), read the head, write and commit; a busy
    database is retried. ``seq`` is the primary key, so the chain cannot fork even if the lock
    were bypassed: the second writer of a sequence number fails and nothing is half-written.

Appending is idempotent: registering a document, model or snapshot that is already there with the
same fields returns the existing entry (so a resumed run adds no duplicates); the same key with
different fields is a :class:`~collapselab.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar, Union

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from collapselab.errors import UserError
from collapselab.provenance import merkle
from collapselab.provenance.sth import TreeHead, sign_head, verify_head

__all__ = [
    "ORIGINS",
    "Document",
    "Model",
    "Snapshot",
    "InclusionProof",
    "EntryProof",
    "ConsistencyProof",
    "Problem",
    "VerifyReport",
    "Ledger",
    "hash_content",
    "canonical_json",
    "entry_fields",
    "chain_hash",
    "snapshot_root",
    "verify",
    "run_head",
]

FORMAT = "collapselab-ledger"
VERSION = "1"
ORIGINS = ("human", "synthetic", "unknown")
KINDS = ("document", "model", "snapshot")
GENESIS = "0" * 64  # the prev_hash of entry 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SQLITE_MAGIC = b"SQLite format 3\x00"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One document, identified by the SHA-256 of its content (64 lowercase hex digits)."""

    content_hash: str
    origin: str = "unknown"
    source: str | None = None
    licence: str | None = None
    model_id: str | None = None  # the model that generated it (must be in the ledger already)
    generation: int | None = None  # the loop generation that produced it (0 = human data)
    watermark_key_id: str | None = None
    created_at: str | None = None  # ISO 8601 UTC; filled in when appended
    seq: int | None = None  # filled in when appended

    kind = "document"

    def fields(self) -> dict[str, Any]:
        return {
            "content_hash": self.content_hash,
            "origin": self.origin,
            "source": self.source,
            "licence": self.licence,
            "model_id": self.model_id,
            "generation": self.generation,
            "watermark_key_id": self.watermark_key_id,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Model:
    """One model: its parents (models it was derived from) and the snapshot it was trained on."""

    model_id: str
    family: str
    parents: tuple[str, ...] = ()
    snapshot: str | None = None  # training snapshot name (must be in the ledger already)
    created_at: str | None = None
    seq: int | None = None

    kind = "model"

    def fields(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "family": self.family,
            "parents": list(self.parents),
            "snapshot": self.snapshot,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Snapshot:
    """A named set of documents. ``content_hashes`` are kept sorted and distinct: the Merkle leaves."""

    name: str
    content_hashes: tuple[str, ...] = ()
    merkle_root: str | None = None  # computed when appended
    size: int | None = None  # len(content_hashes), filled in when appended
    created_at: str | None = None
    seq: int | None = None

    kind = "snapshot"

    def fields(self) -> dict[str, Any]:
        # The members are committed to through the Merkle root, which the chain covers.
        return {"name": self.name, "size": self.size, "merkle_root": self.merkle_root, "created_at": self.created_at}


Record = Union[Document, Model, Snapshot]
T = TypeVar("T")


@dataclass(frozen=True)
class InclusionProof:
    """Proof that a document is in a snapshot (RFC 9162 section 2.1.3): check it with :meth:`verify`."""

    snapshot: str
    content_hash: str
    index: int  # the document's position among the snapshot's sorted content hashes
    size: int
    path: tuple[str, ...]  # sibling hashes, hex, leaf upwards
    root: str

    def verify(self) -> bool:
        try:
            leaf = merkle.leaf_hash(bytes.fromhex(self.content_hash))
            path = [bytes.fromhex(p) for p in self.path]
            root = bytes.fromhex(self.root)
        except ValueError:
            return False
        return merkle.verify_inclusion(leaf, self.index, self.size, path, root)


@dataclass(frozen=True)
class EntryProof:
    """Proof that entry ``seq`` is leaf ``index`` of the ledger's Merkle tree of ``tree_size`` entries."""

    seq: int
    entry_hash: str
    index: int
    tree_size: int
    path: tuple[str, ...]  # sibling hashes, hex, leaf upwards
    root_hash: str

    def verify(self) -> bool:
        try:
            leaf = merkle.leaf_hash(bytes.fromhex(self.entry_hash))
            return merkle.verify_inclusion(leaf, self.index, self.tree_size, [bytes.fromhex(p) for p in self.path],
                                           bytes.fromhex(self.root_hash))
        except ValueError:
            return False


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the ledger's tree of ``old_size`` entries is a prefix of its tree of ``new_size`` (RFC 9162 2.1.4)."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: tuple[str, ...]

    def verify(self) -> bool:
        try:
            return merkle.verify_consistency(self.old_size, self.new_size, bytes.fromhex(self.old_root),
                                             bytes.fromhex(self.new_root), [bytes.fromhex(p) for p in self.path])
        except ValueError:
            return False


@dataclass(frozen=True)
class Problem:
    """One thing :func:`verify` found wrong, at entry ``seq`` (None: not tied to one entry)."""

    seq: int | None
    kind: str | None
    what: str  # changed | removed | inserted | broken-chain | unreadable | merkle | reference | truncated | inconsistent | signature
    message: str

    def __str__(self) -> str:
        where = "ledger" if self.seq is None else f"entry {self.seq}" + (f" ({self.kind})" if self.kind else "")
        return f"{where}: {self.what}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` only when there is not a single problem."""

    target: str
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    snapshots: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_entries(self) -> set[int]:
        return {p.seq for p in self.problems if p.seq is not None}

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.target}: valid ledger, {self.entries} entries, {self.snapshots} snapshot Merkle roots "
                    f"recomputed; head {self.head_seq} {self.head_hash}")
        lines = [f"{self.target}: INVALID ledger, {len(self.problems)} problem(s) in {self.entries} entries:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def hash_content(content: bytes | str) -> str:
    """SHA-256 of a document's content (text is encoded as UTF-8), as 64 lowercase hex digits."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    return hashlib.sha256(content).hexdigest()


def canonical_json(obj: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: for the strings, integers and lists entries hold, the same
    bytes as RFC 8785 (JSON Canonicalization Scheme)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def entry_fields(seq: int, record: Record) -> dict[str, Any]:
    """Everything an entry's hash covers."""
    return {"seq": seq, "kind": record.kind, **record.fields()}


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """``SHA-256(prev_hash || canonical JSON of fields)``, hex; ``prev_hash`` is hex too."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_json(fields)).hexdigest()


def snapshot_root(content_hashes: Sequence[str]) -> str:
    """The Merkle root over sorted content hashes (each leaf is the 32 raw bytes of one hash)."""
    return merkle.merkle_root([bytes.fromhex(h) for h in content_hashes]).hex()


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

metadata = sa.MetaData()

meta_table = sa.Table(
    "ledger_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
entries_table = sa.Table(
    "ledger_entries", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
)
documents_table = sa.Table(
    "ledger_documents", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("licence", sa.Text),
    sa.Column("model_id", sa.Text, index=True),
    sa.Column("generation", sa.Integer),
    sa.Column("watermark_key_id", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
)
models_table = sa.Table(
    "ledger_models", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("model_id", sa.Text, nullable=False, unique=True),
    sa.Column("family", sa.Text, nullable=False),
    sa.Column("snapshot", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
)
model_parents_table = sa.Table(
    "ledger_model_parents", metadata,
    sa.Column("model_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Text, nullable=False),
)
snapshots_table = sa.Table(
    "ledger_snapshots", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("merkle_root", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
snapshot_members_table = sa.Table(
    "ledger_snapshot_members", metadata,
    sa.Column("snapshot_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String(64), nullable=False, index=True),
)
# No database-level foreign keys: the references between entries are checked by append (they
# must point to earlier entries) and re-checked by verify, which also catches what FKs cannot.

DETAIL_TABLES = {"document": documents_table, "model": models_table, "snapshot": snapshots_table}

# PostgreSQL advisory lock key for appends: the first 8 bytes of SHA-256("collapselab-ledger").
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(FORMAT.encode()).digest()[:8], "big", signed=True)


# --------------------------------------------------------------------------------------------
# Opening a ledger
# --------------------------------------------------------------------------------------------


def _resolve(target: str | os.PathLike) -> tuple[sa.URL, str, Path | None]:
    """(SQLAlchemy URL, label for messages, SQLite file path or None)."""
    text = os.fspath(target)
    if "://" not in text:
        path = Path(text).expanduser()
        return sa.URL.create("sqlite", database=str(path)), str(path), path
    try:
        url = make_url(text)
    except sa_exc.ArgumentError:
        raise UserError(f"{text}: not a ledger path or database URL; pass a file path or postgresql://user:password@host/db") from None
    label = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UserError(f"{label}: an in-memory SQLite ledger would vanish; pass a file path")
        path = Path(url.database).expanduser()
        return url.set(drivername="sqlite", database=str(path)), str(path), path
    if backend in ("postgresql", "postgres"):
        driver = url.get_driver_name() if "+" in url.drivername else _pg_driver(label)
        return url.set(drivername=f"postgresql+{driver}"), label, None
    raise UserError(f"{label}: unsupported database {backend!r}; a ledger lives in a SQLite file or in PostgreSQL")


def _pg_driver(label: str) -> str:
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        try:
            __import__(module)
            return driver
        except ImportError:
            continue
    raise UserError(f"{label}: no PostgreSQL driver is installed; run: pip install 'psycopg[binary]'")


def _sqlite_engine(url: sa.URL) -> Engine:
    # timeout: SQLite's busy handler waits this long for another writer's lock before failing.
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        # Text that is not UTF-8 (only tampering puts it there) is read, not refused, so that
        # verify can name the entry that holds it.
        dbapi_connection.text_factory = lambda b: b.decode("utf-8", "surrogateescape")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front (IMMEDIATE), so two of them never both read the
        # same head; readers use a plain deferred transaction and see one consistent state.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")

    return engine


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _is_busy(e: sa_exc.DBAPIError) -> bool:
    orig = e.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in ("40001", "40P01", "55P03"):  # serialization failure, deadlock, lock not available
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


class Ledger:
    """A provenance ledger in a SQLite file (a path) or PostgreSQL (a URL).

    ``create=True`` (the default) makes a new ledger where there is none: a new file, an empty
    SQLite file, or a PostgreSQL database without the ledger's tables. Anything else that is not
    a ledger raises :class:`UserError` and is left untouched.
    """

    def __init__(self, target: str | os.PathLike, *, create: bool = True) -> None:
        self.url, self.label, self.path = _resolve(target)
        self.is_sqlite = self.path is not None
        if self.is_sqlite:
            self._check_sqlite_file(create)
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = sa.create_engine(self.url)
        try:
            self._open(create)
        except BaseException:
            self.engine.dispose()
            raise

    # -- opening ------------------------------------------------------------------------------

    def _check_sqlite_file(self, create: bool) -> None:
        path = self.path
        assert path is not None
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a ledger file; pass a file path such as {path / 'ledger.sqlite'}")
        if not path.exists():
            if not create:
                raise UserError(f"{path}: no ledger there; check the path (a new ledger is made by the commands that record provenance)")
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        try:
            with open(path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise UserError(f"{path}: cannot read the ledger file ({e.strerror}); check its permissions") from None
        if head and head != _SQLITE_MAGIC:
            raise UserError(f"{path}: not a ledger (the file is corrupt or not a SQLite database); restore it from a backup or pass another path")

    def _open(self, create: bool) -> None:
        """Check that this is a ledger (or make one); raise UserError, modifying nothing, if not."""
        with self._errors():
            with self.engine.connect() as conn:
                with conn.begin():
                    state = self._state(conn)
            if state != "ledger":
                if state == "foreign" or not create:
                    what = "is a database but not a collapselab ledger" if state == "foreign" else "holds no ledger"
                    raise UserError(f"{self.label}: {what} (no ledger_meta table); pass the ledger's path or URL, or a new one to create a ledger")
                self._with_lock(self._create)
            if self.is_sqlite:
                self._use_wal()

    def _use_wal(self) -> None:
        """Put a SQLite ledger in WAL mode (readers never block the writer), if it is not already.

        The mode is stored in the file. Switching needs a moment with no other connection in a
        transaction; SQLite refuses at once (no busy wait) when another process is writing, which
        happens when several processes open a new ledger together. WAL only makes readers faster,
        so a refused switch (or a read-only file) is left to the next open rather than failing this one.
        """
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            try:
                cur.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as e:
                if not any(w in str(e).lower() for w in ("locked", "busy", "readonly", "read-only")):
                    raise
        finally:
            raw.close()

    def _state(self, conn: Connection) -> str:
        """'ledger', 'empty' (nothing there yet) or 'foreign' (a database with other tables)."""
        names = set(sa.inspect(conn).get_table_names())
        if meta_table.name not in names:
            if self.is_sqlite and names:
                return "foreign"
            if not self.is_sqlite and names & {t.name for t in metadata.sorted_tables}:
                return "foreign"  # some ledger tables but no ledger_meta: damaged
            return "empty"
        meta = dict(conn.execute(sa.select(meta_table.c.key, meta_table.c.value)).all())
        if meta.get("format") != FORMAT:
            raise UserError(f"{self.label}: is a database but not a collapselab ledger (ledger_meta says format={meta.get('format')!r}); pass the ledger's path or URL")
        if meta.get("version") != VERSION:
            raise UserError(f"{self.label}: ledger version {meta.get('version')!r}, and this collapselab reads version {VERSION}; upgrade collapselab")
        missing = [t.name for t in metadata.sorted_tables if t.name not in names]
        if missing:
            raise UserError(f"{self.label}: damaged ledger, table {missing[0]} is missing; restore it from a backup")
        return "ledger"

    def _create(self, conn: Connection) -> None:
        if self._state(conn) == "ledger":  # another process made it while we waited for the lock
            return
        metadata.create_all(conn)
        conn.execute(sa.insert(meta_table), [{"key": "format", "value": FORMAT}, {"key": "version", "value": VERSION}])

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.label!r})"

    # -- transactions -------------------------------------------------------------------------

    def _user_error(self, e: sa_exc.DBAPIError) -> Exception:
        """The UserError for a database failure the user can act on (corrupt file, refused
        connection); other failures (a constraint, an SQL error) are bugs and keep their traceback."""
        if isinstance(e, (sa_exc.IntegrityError, sa_exc.ProgrammingError)):
            return e
        if self.is_sqlite:
            hint = "the file is corrupt or unreadable; restore it from a backup"
        else:
            hint = "check that the server is running and that the URL, user and password are right"
        return UserError(f"{self.label}: {_first_line(e)}; {hint}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.DBAPIError as e:
            err = self._user_error(e)
            if err is e:
                raise
            raise err from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction: one consistent view of the ledger."""
        with self._errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def _with_lock(self, fn: Callable[[Connection], T], attempts: int = 50) -> T:
        """Run ``fn(conn)`` in a write transaction that holds the ledger's append lock; retry when busy."""
        delay = 0.005
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(ledger_write=True)
                    with conn.begin():
                        if not self.is_sqlite:
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                        return fn(conn)
            except sa_exc.DBAPIError as e:
                if not (_is_busy(e) and attempt < attempts):
                    err = self._user_error(e)
                    if err is e:
                        raise
                    raise err from None
            time.sleep(delay * (1 + random.random()))  # jitter, so waiting writers do not collide again
            delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    # -- appending ----------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> list[Record]:
        """Append documents, models and snapshots, in order, in one transaction; return them as stored.

        A record already in the ledger with the same fields is returned as it is (no new entry).
        References must point to entries already in the ledger or earlier in ``records``: a
        document's ``model_id``, a model's ``parents`` and ``snapshot``, a snapshot's documents.
        Either all of ``records`` are appended or, on an error, none.
        """
        now = _utc_now()
        batch = [_normalise(r, now) for r in records]
        if not batch:
            return []
        return self._with_lock(lambda conn: self._append_locked(conn, batch))

    append_many = append

    def add_document(self, content_hash: str, origin: str = "unknown", *, source: str | None = None,
                     licence: str | None = None, model_id: str | None = None, generation: int | None = None,
                     watermark_key_id: str | None = None, created_at: str | datetime | None = None) -> Document:
        """Record one document (see :func:`hash_content` for its ``content_hash``)."""
        doc = Document(content_hash, origin, source, licence, model_id, generation, watermark_key_id, created_at)
        return self.append([doc])[0]  # type: ignore[return-value]

    def add_model(self, model_id: str, family: str, *, parents: Sequence[str] = (), snapshot: str | None = None,
                  created_at: str | datetime | None = None) -> Model:
        """Record one model, derived from ``parents`` and trained on ``snapshot``."""
        return self.append([Model(model_id, family, parents, snapshot, created_at)])[0]  # type: ignore[return-value]

    def add_snapshot(self, name: str, content_hashes: Iterable[str], *, created_at: str | datetime | None = None) -> Snapshot:
        """Record a named set of documents (already in the ledger) with its Merkle root."""
        return self.append([Snapshot(name, content_hashes, created_at=created_at)])[0]  # type: ignore[return-value]

    def _append_locked(self, conn: Connection, batch: list[Record]) -> list[Record]:
        """Chain ``batch`` onto the head; runs under the append lock, so the head cannot move."""
        seq, head = self._head(conn)
        known = _Known(conn, batch)
        rows: dict[sa.Table, list[dict]] = {t: [] for t in metadata.sorted_tables}
        stored: list[Record] = []
        for record in batch:
            old = known.get(record)
            if old is not None:
                stored.append(self._same_as(record, old))
                continue
            self._check_references(known, record)
            seq += 1
            record = replace(record, seq=seq)
            entry_hash = chain_hash(head, entry_fields(seq, record))
            rows[entries_table].append({"seq": seq, "kind": record.kind, "prev_hash": head, "entry_hash": entry_hash})
            fields = record.fields()
            if isinstance(record, Model):
                del fields["parents"]
                rows[model_parents_table] += [{"model_seq": seq, "position": i, "parent_id": p}
                                              for i, p in enumerate(record.parents)]
            if isinstance(record, Snapshot):
                rows[snapshot_members_table] += [{"snapshot_seq": seq, "position": i, "content_hash": h}
                                                 for i, h in enumerate(record.content_hashes)]
            rows[DETAIL_TABLES[record.kind]].append({"seq": seq, **fields})
            head = entry_hash
            known.add(record)
            stored.append(record)
        for table, table_rows in rows.items():
            if table_rows:
                conn.execute(sa.insert(table), table_rows)
        return stored

    def _same_as(self, record: Record, old: Record) -> Record:
        """``old`` if ``record`` repeats it (created_at aside); a UserError if it contradicts it."""
        mine = {k: v for k, v in record.fields().items() if k != "created_at"}
        theirs = {k: v for k, v in old.fields().items() if k != "created_at"}
        if mine != theirs:
            diff = ", ".join(f"{k}={theirs[k]!r} (not {mine[k]!r})" for k in mine if mine[k] != theirs[k])
            raise UserError(f"{self.label}: {_describe(record)} is already entry {old.seq} with {diff}; "
                            "entries are never changed, record it under a new id")
        return old

    def _check_references(self, known: "_Known", record: Record) -> None:
        def need_model(model_id: str, role: str) -> None:
            if not known.has_model(model_id):
                raise UserError(f"{self.label}: {role} {model_id!r} is not in the ledger; record the model first (add_model)")

        if isinstance(record, Document):
            if record.model_id is not None:
                need_model(record.model_id, f"{_describe(record)}: generating model")
        elif isinstance(record, Model):
            for p in record.parents:
                need_model(p, f"model {record.model_id!r}: parent")
            if record.snapshot is not None and not known.has_snapshot(record.snapshot):
                raise UserError(f"{self.label}: model {record.model_id!r}: training snapshot {record.snapshot!r} "
                                "is not in the ledger; record the snapshot first")
        else:
            missing = [h for h in record.content_hashes if not known.has_document(h)]
            if missing:
                raise UserError(f"{self.label}: snapshot {record.name!r}: {len(missing)} document(s) are not in the "
                                f"ledger (first: {missing[0]}); record the documents first")

    def _head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(sa.select(entries_table.c.seq, entries_table.c.entry_hash)
                           .order_by(entries_table.c.seq.desc()).limit(1)).first()
        return (0, GENESIS) if row is None else (int(row.seq), row.entry_hash)

    # -- reading ------------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """(sequence number, hash) of the newest entry; (0, 64 zeros) for an empty ledger.
        Keep it elsewhere and pass it to ``verify(expected_head=...)`` to detect truncation."""
        with self._read() as conn:
            return self._head(conn)

    def _leaves(self) -> list[bytes]:
        """The Merkle tree's leaves: every entry's hash (32 raw bytes), in ``seq`` order."""
        with self._read() as conn:
            return [bytes.fromhex(h) for h in conn.scalars(sa.select(entries_table.c.entry_hash).order_by(entries_table.c.seq))]

    def tree_head(self) -> TreeHead:
        """The unsigned tree head: size, Merkle root over all entries, and the newest entry's hash."""
        leaves = self._leaves()
        return TreeHead(len(leaves), merkle.merkle_root(leaves).hex(), leaves[-1].hex() if leaves else GENESIS)

    def sign_head(self, key_path: str | os.PathLike, *, timestamp: int | None = None) -> TreeHead:
        """The tree head signed with the Ed25519 key in ``key_path`` (`collapselab keys new-signing`)."""
        from collapselab.provenance.keys import load_signing_key

        return sign_head(self.tree_head(), load_signing_key(Path(key_path)), timestamp=timestamp)

    def prove_entry(self, seq: int) -> EntryProof:
        """An inclusion proof of entry ``seq`` in the current tree of all entries."""
        with self._read() as conn:
            rows = conn.execute(sa.select(entries_table.c.seq, entries_table.c.entry_hash).order_by(entries_table.c.seq)).all()
        index = next((i for i, r in enumerate(rows) if int(r.seq) == seq), None)
        if index is None:
            raise UserError(f"{self.label}: no entry {seq}; the ledger has entries 1 to {len(rows)}")
        leaves = [bytes.fromhex(r.entry_hash) for r in rows]
        path = tuple(p.hex() for p in merkle.inclusion_proof(leaves, index))
        return EntryProof(seq, rows[index].entry_hash, index, len(leaves), path, merkle.merkle_root(leaves).hex())

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """A consistency proof from the tree of the first ``old_size`` entries to that of ``new_size`` (default: all)."""
        leaves = self._leaves()
        new_size = len(leaves) if new_size is None else new_size
        if not 0 <= old_size <= new_size <= len(leaves):
            raise UserError(f"{self.label}: no consistency proof from {old_size} to {new_size} entries; "
                            f"the ledger has {len(leaves)}, and the old size must be at most the new one")
        path = tuple(p.hex() for p in merkle.consistency_proof(leaves, old_size, new_size))
        return ConsistencyProof(old_size, new_size, merkle.merkle_root(leaves[:old_size]).hex(),
                                merkle.merkle_root(leaves[:new_size]).hex(), path)

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(entries_table)) or 0)

    def document(self, content_hash: str) -> Document | None:
        with self._read() as conn:
            return _load_document(conn, content_hash.lower())

    def model(self, model_id: str) -> Model | None:
        with self._read() as conn:
            return _load_model(conn, model_id)

    def snapshot(self, name: str) -> Snapshot | None:
        with self._read() as conn:
            return _load_snapshot(conn, name)

    def documents(self, *, origin: str | None = None, model_id: str | None = None, snapshot: str | None = None) -> list[Document]:
        """Documents in ledger order, optionally only those of one origin, model or snapshot."""
        t = documents_table
        q = sa.select(t).order_by(t.c.seq)
        if origin is not None:
            q = q.where(t.c.origin == origin)
        if model_id is not None:
            q = q.where(t.c.model_id == model_id)
        with self._read() as conn:
            if snapshot is not None:
                snap = _load_snapshot(conn, snapshot)
                if snap is None:
                    raise UserError(f"{self.label}: no snapshot named {snapshot!r}")
                members = sa.select(snapshot_members_table.c.content_hash).where(snapshot_members_table.c.snapshot_seq == snap.seq)
                q = q.where(t.c.content_hash.in_(members))
            return [_document_from_row(r) for r in conn.execute(q).mappings()]

    def models(self) -> list[Model]:
        with self._read() as conn:
            seqs = conn.scalars(sa.select(models_table.c.seq).order_by(models_table.c.seq)).all()
            return [_load_model(conn, seq=s) for s in seqs]  # type: ignore[misc]

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, with its members, in ledger order."""
        with self._read() as conn:
            names = conn.scalars(sa.select(snapshots_table.c.name).order_by(snapshots_table.c.seq)).all()
            return [_load_snapshot(conn, n) for n in names]  # type: ignore[misc]

    # -- proofs -------------------------------------------------------------------------------

    def prove(self, snapshot: str, content_hash: str) -> InclusionProof:
        """An inclusion proof that document ``content_hash`` is in ``snapshot``."""
        snap = self.snapshot(snapshot)
        if snap is None:
            raise UserError(f"{self.label}: no snapshot named {snapshot!r}")
        content_hash = content_hash.lower()
        try:
            index = snap.content_hashes.index(content_hash)
        except ValueError:
            raise UserError(f"{self.label}: document {content_hash} is not in snapshot {snapshot!r}") from None
        leaves = [bytes.fromhex(h) for h in snap.content_hashes]
        path = tuple(p.hex() for p in merkle.inclusion_proof(leaves, index))
        return InclusionProof(snapshot, content_hash, index, snap.size, path, snap.merkle_root or "")

    # -- lineage ------------------------------------------------------------------------------

    def parents(self, model_id: str) -> tuple[str, ...]:
        return self._need_model(model_id).parents

    def ancestors(self, model_id: str) -> list[str]:
        """Every model ``model_id`` derives from, through parents and through the generating
        models of the synthetic documents in its training snapshot; nearest first."""
        self._need_model(model_id)
        with self._read() as conn:
            seen: dict[str, None] = {}
            frontier = [model_id]
            while frontier:
                nxt: list[str] = []
                for m in frontier:
                    for up in self._upstream(conn, m):
                        if up not in seen and up != model_id:
                            seen[up] = None
                            nxt.append(up)
                frontier = nxt
            return list(seen)

    def synthetic_depth(self, model_id: str) -> int:
        """The longest chain of model-generated data behind ``model_id``.

        0 for a model trained on human data only. A synthetic document made by model G adds
        1 + depth(G) (a synthetic document with no generating model counts its ``generation``,
        at least 1); a model's depth is the largest over its training snapshot's documents and
        over its parents (a fine-tuned model inherits what is behind its parent).
        """
        self._need_model(model_id)
        with self._read() as conn:
            depth: dict[str, int] = {}
            expanded: set[str] = set()
            stack = [model_id]
            while stack:  # iterative post-order walk: lineages can be thousands of generations deep
                m = stack[-1]
                if m in depth:
                    stack.pop()
                    continue
                model = _load_model(conn, m)
                if model is None:
                    raise UserError(f"{self.label}: model {m!r}, upstream of {model_id!r}, is not in the ledger; "
                                    "the ledger is damaged, run `collapselab ledger verify`")
                docs = self._synthetic_makers(conn, model.snapshot)
                pending = [u for u in (*model.parents, *(g for g, _ in docs if g is not None)) if u not in depth]
                if pending:
                    if m in expanded:  # its inputs were walked and still wait for it: a cycle
                        raise UserError(f"{self.label}: the lineage of model {m!r} loops back on itself; the ledger "
                                        "is damaged, run `collapselab ledger verify`")
                    expanded.add(m)
                    stack.extend(pending)
                    continue
                stack.pop()
                d = max((depth[p] for p in model.parents), default=0)
                for maker, generation in docs:
                    d = max(d, 1 + depth[maker] if maker is not None else max(generation or 1, 1))
                depth[m] = d
            return depth[model_id]

    def _need_model(self, model_id: str) -> Model:
        model = self.model(model_id)
        if model is None:
            raise UserError(f"{self.label}: no model {model_id!r} in the ledger")
        return model

    def _synthetic_makers(self, conn: Connection, snapshot: str | None) -> list[tuple[str | None, int | None]]:
        """Distinct (generating model, generation) of the synthetic documents in a snapshot."""
        if snapshot is None:
            return []
        d, m, s = documents_table, snapshot_members_table, snapshots_table
        q = (sa.select(d.c.model_id, d.c.generation).distinct()
             .select_from(s.join(m, m.c.snapshot_seq == s.c.seq).join(d, d.c.content_hash == m.c.content_hash))
             .where(s.c.name == snapshot, d.c.origin == "synthetic"))
        return [(r.model_id, r.generation) for r in conn.execute(q)]

    def _upstream(self, conn: Connection, model_id: str) -> list[str]:
        model = _load_model(conn, model_id)
        if model is None:
            return []
        makers = sorted({g for g, _ in self._synthetic_makers(conn, model.snapshot) if g is not None})
        return [*model.parents, *(g for g in makers if g not in model.parents)]

    # -- verification -------------------------------------------------------------------------

    def verify(self, *, expected_head: tuple[int, str] | None = None, expected_sth: TreeHead | None = None,
               public_key: Any = None) -> VerifyReport:
        """Recompute the chain and every snapshot's Merkle root; see :func:`verify`."""
        with self._read() as conn:
            tables = {t.name: [dict(r) for r in conn.execute(sa.select(t)).mappings()] for t in metadata.sorted_tables
                      if t is not meta_table}
        report = _check(self.label, tables, expected_head)
        if expected_sth is not None:
            _check_tree_head(report, tables["ledger_entries"], expected_sth, public_key)
        return report


def verify(target: str | os.PathLike, *, expected_head: tuple[int, str] | None = None,
           expected_sth: TreeHead | None = None, public_key: Any = None) -> VerifyReport:
    """Check the ledger at ``target`` (path or URL) without modifying it.

    Names every entry that was changed, removed, reordered or inserted, recomputes each
    snapshot's Merkle root, and fails closed: an unreadable row makes the ledger invalid. A
    file or database that is not a ledger at all raises :class:`UserError`.

    ``expected_sth``: a tree head kept from earlier (signed or not); the ledger must extend it,
    shown by an RFC 9162 consistency proof. With ``public_key`` (Ed25519), its signature must be
    that key's.
    """
    with Ledger(target, create=False) as ledger:
        return ledger.verify(expected_head=expected_head, expected_sth=expected_sth, public_key=public_key)


def run_head(target: str | os.PathLike, signing_key: str | os.PathLike | None = None) -> dict[str, Any]:
    """A run's final tree head for its ``summary.json``: signed when ``signing_key`` is given."""
    with Ledger(target, create=False) as ledger:
        head = ledger.tree_head() if signing_key is None else ledger.sign_head(signing_key)
    return head.to_dict()


def _check_tree_head(report: VerifyReport, entry_rows: list[dict], sth: TreeHead, public_key: Any) -> None:
    """Add to ``report`` what keeps the ledger from extending ``sth``: a bad signature, fewer
    entries than the head counts (truncated), or a tree that is not an extension (inconsistent)."""
    def problem(what: str, message: str) -> None:
        report.problems.append(Problem(None, None, what, message))

    if public_key is not None and not verify_head(sth, public_key):
        why = "it is not signed" if not sth.signed else "its signature is not this key's"
        problem("signature", f"the tree head of {sth.tree_size} entries cannot be trusted: {why}")
    rows = sorted((r for r in entry_rows if isinstance(r.get("seq"), int) and isinstance(r.get("entry_hash"), str)
                   and _HEX64.fullmatch(r["entry_hash"])), key=lambda r: r["seq"])
    leaves = [bytes.fromhex(r["entry_hash"]) for r in rows]
    if sth.tree_size > len(leaves):
        problem("truncated", f"the ledger has {len(leaves)} entries, but the tree head kept from earlier has {sth.tree_size}: "
                             "entries were cut off")
        return
    proof = merkle.consistency_proof(leaves, sth.tree_size)
    if not merkle.verify_consistency(sth.tree_size, len(leaves), bytes.fromhex(sth.root_hash),
                                     merkle.merkle_root(leaves), proof):
        problem("inconsistent", f"the ledger's first {sth.tree_size} entries do not give the root {sth.root_hash} of the "
                                "tree head kept from earlier: the ledger was rewritten")


class _Known:
    """What an append needs to look up, read once per batch: the stored documents the batch
    mentions (in one query per 500), and models and snapshots on demand; plus what the batch
    itself has added so far."""

    def __init__(self, conn: Connection, batch: list[Record]) -> None:
        self.conn = conn
        wanted: set[str] = set()
        for r in batch:
            if isinstance(r, Document):
                wanted.add(r.content_hash)
            elif isinstance(r, Snapshot):
                wanted.update(r.content_hashes)
        col = documents_table.c.content_hash
        self.documents: dict[str, Document] = {}
        for chunk in _chunks(sorted(wanted), 500):
            for row in conn.execute(sa.select(documents_table).where(col.in_(chunk))).mappings():
                self.documents[row["content_hash"]] = _document_from_row(row)
        self.models: dict[str, Model | None] = {}
        self.snapshots: dict[str, Snapshot | None] = {}

    def get(self, record: Record) -> Record | None:
        if isinstance(record, Document):
            return self.documents.get(record.content_hash)
        if isinstance(record, Model):
            return self.model(record.model_id)
        return self.snapshot(record.name)

    def model(self, model_id: str) -> Model | None:
        if model_id not in self.models:
            self.models[model_id] = _load_model(self.conn, model_id)
        return self.models[model_id]

    def snapshot(self, name: str) -> Snapshot | None:
        if name not in self.snapshots:
            self.snapshots[name] = _load_snapshot(self.conn, name)
        return self.snapshots[name]

    def has_document(self, content_hash: str) -> bool:
        return content_hash in self.documents

    def has_model(self, model_id: str) -> bool:
        return self.model(model_id) is not None

    def has_snapshot(self, name: str) -> bool:
        return self.snapshot(name) is not None

    def add(self, record: Record) -> None:
        if isinstance(record, Document):
            self.documents[record.content_hash] = record
        elif isinstance(record, Model):
            self.models[record.model_id] = record
        else:
            self.snapshots[record.name] = record


# --------------------------------------------------------------------------------------------
# Validation of what users pass in
# --------------------------------------------------------------------------------------------


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timestamp(value: str | datetime | None, now: str, what: str) -> str:
    if value is None:
        return now
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UserError(f"{what}: created_at {value!r} has no time zone; pass an aware datetime (UTC)")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _text(value, f"{what}: created_at", required=True)  # type: ignore[return-value]


def _text(value: Any, what: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise UserError(f"{what} is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise UserError(f"{what} must be a non-empty string, not {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{what} {value!r} is not valid Unicode text") from None
    return value


def _hex_hash(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value.lower()):
        raise UserError(f"{what}: {value!r} is not a SHA-256 hash (64 hex digits); use hash_content(text) to make one")
    return value.lower()


def _normalise(record: Record, now: str) -> Record:
    """Check a record's fields; return it with hashes lowercased and defaults filled in."""
    if isinstance(record, Document):
        h = _hex_hash(record.content_hash, "document content_hash")
        what = f"document {h[:12]}…"
        if record.origin not in ORIGINS:
            raise UserError(f"{what}: origin {record.origin!r} is not one of {', '.join(ORIGINS)}")
        if record.origin == "human" and (record.model_id is not None or (record.generation or 0) > 0):
            raise UserError(f"{what}: a human document has no generating model or generation > 0; use origin='synthetic'")
        gen = record.generation
        if gen is not None and (isinstance(gen, bool) or not isinstance(gen, int) or gen < 0):
            raise UserError(f"{what}: generation must be a whole number >= 0, not {gen!r}")
        return Document(h, record.origin, _text(record.source, f"{what}: source"), _text(record.licence, f"{what}: licence"),
                        _text(record.model_id, f"{what}: model_id"), gen,
                        _text(record.watermark_key_id, f"{what}: watermark_key_id"),
                        _timestamp(record.created_at, now, what))
    if isinstance(record, Model):
        mid = _text(record.model_id, "model id", required=True)
        what = f"model {mid!r}"
        if isinstance(record.parents, str):
            raise UserError(f"{what}: parents must be a list of model ids, not the string {record.parents!r}")
        parents = tuple(_text(p, f"{what}: parent id", required=True) for p in record.parents)  # type: ignore[misc]
        if mid in parents or len(set(parents)) != len(parents):
            raise UserError(f"{what}: parents {list(parents)} repeat a model or name the model itself")
        return Model(mid, _text(record.family, f"{what}: family", required=True), parents,  # type: ignore[arg-type]
                     _text(record.snapshot, f"{what}: snapshot"), _timestamp(record.created_at, now, what))
    if isinstance(record, Snapshot):
        name = _text(record.name, "snapshot name", required=True)
        what = f"snapshot {name!r}"
        if isinstance(record.content_hashes, str):
            raise UserError(f"{what}: content_hashes must be a list of hashes, not one string")
        hashes = tuple(sorted({_hex_hash(h, what) for h in record.content_hashes}))
        return Snapshot(name, hashes, snapshot_root(hashes), len(hashes), _timestamp(record.created_at, now, what))  # type: ignore[arg-type]
    raise TypeError(f"a ledger records Document, Model or Snapshot, not {type(record).__name__}")


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _load_document(conn: Connection, content_hash: str) -> Document | None:
    row = conn.execute(sa.select(documents_table).where(documents_table.c.content_hash == content_hash)).mappings().first()
    return None if row is None else _document_from_row(row)


def _load_model(conn: Connection, model_id: str | None = None, *, seq: int | None = None) -> Model | None:
    where = models_table.c.model_id == model_id if seq is None else models_table.c.seq == seq
    row = conn.execute(sa.select(models_table).where(where)).mappings().first()
    if row is None:
        return None
    parents = conn.scalars(sa.select(model_parents_table.c.parent_id)
                           .where(model_parents_table.c.model_seq == row["seq"])
                           .order_by(model_parents_table.c.position)).all()
    return Model(row["model_id"], row["family"], tuple(parents), row["snapshot"], row["created_at"], int(row["seq"]))


def _load_snapshot(conn: Connection, name: str) -> Snapshot | None:
    row = conn.execute(sa.select(snapshots_table).where(snapshots_table.c.name == name)).mappings().first()
    if row is None:
        return None
    hashes = conn.scalars(sa.select(snapshot_members_table.c.content_hash)
                          .where(snapshot_members_table.c.snapshot_seq == row["seq"])
                          .order_by(snapshot_members_table.c.position)).all()
    return Snapshot(row["name"], tuple(hashes), row["merkle_root"], int(row["size"]), row["created_at"], int(row["seq"]))


def _document_from_row(row: Any) -> Document:
    return Document(row["content_hash"], row["origin"], row["source"], row["licence"], row["model_id"],
                    row["generation"], row["watermark_key_id"], row["created_at"], int(row["seq"]))


# --------------------------------------------------------------------------------------------
# Verification (pure: works on the rows, read in one transaction)
# --------------------------------------------------------------------------------------------


class _Garbled(Exception):
    """A row holds a value of the wrong type or shape."""


def _int(row: dict, col: str, *, nullable: bool = False) -> int | None:
    v = row.get(col)
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Garbled(f"column {col} holds {v!r}, not a whole number")
    return v


def _str(row: dict, col: str, *, nullable: bool = False, hex64: bool = False) -> str | None:
    v = row.get(col)
    if v is None and nullable:
        return None
    if not isinstance(v, str) or (hex64 and not _HEX64.fullmatch(v)):
        raise _Garbled(f"column {col} holds {v!r:.80}, not {'a SHA-256 hex digest' if hex64 else 'text'}")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise _Garbled(f"column {col} holds bytes that are not UTF-8 text: {v!r:.80}") from None
    return v


def _check(label: str, tables: dict[str, list[dict]], expected_head: tuple[int, str] | None) -> VerifyReport:
    """Every check of :func:`verify`, on the rows of all tables (read in one transaction)."""
    report = VerifyReport(label)

    def problem(seq: Any, kind: Any, what: str, message: str) -> None:
        report.problems.append(Problem(seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                                       kind if kind in KINDS else None, what, message))

    # Index every row by its entry's seq; a row whose seq cannot be read is itself a problem.
    details: dict[str, dict[int, dict]] = {}
    for kind, table in DETAIL_TABLES.items():
        details[kind] = {}
        for row in tables[table.name]:
            try:
                details[kind][_int(row, "seq")] = row  # type: ignore[index]
            except _Garbled as e:
                problem(None, kind, "unreadable", f"a row of {table.name}: {e}")
    children: dict[str, dict[int, list[tuple[int, str]]]] = {}
    for name, key, col in (("ledger_model_parents", "model_seq", "parent_id"),
                           ("ledger_snapshot_members", "snapshot_seq", "content_hash")):
        children[name] = {}
        for row in tables[name]:
            try:
                children[name].setdefault(_int(row, key), []).append(  # type: ignore[arg-type]
                    (_int(row, "position"), _str(row, col, hex64=(col == "content_hash"))))  # type: ignore[arg-type]
            except _Garbled as e:
                problem(row.get(key), None, "unreadable", f"a row of {name}: {e}")
    entries: list[tuple[int, dict]] = []
    for row in tables["ledger_entries"]:
        try:
            entries.append((_int(row, "seq"), row))  # type: ignore[arg-type]
        except _Garbled as e:
            problem(None, None, "unreadable", f"a row of ledger_entries: {e}")
    entries.sort(key=lambda t: t[0])

    def kind_of_orphan(seq: int) -> str | None:
        return next((k for k in KINDS if seq in details[k]), None)

    # Walk the chain in sequence order.
    accounted: set[tuple[str, int]] = set()  # (kind, seq) of detail rows explained by an entry
    earlier: dict[str, dict[str, int]] = {k: {} for k in KINDS}  # key (hash, id, name) -> seq
    expected_seq, prev_hash, link_known = 1, GENESIS, True
    for seq, row in entries:
        kind = row.get("kind")
        if seq < 1:
            problem(seq, kind, "inserted", "sequence numbers start at 1")
            continue
        for gone in range(expected_seq, seq):  # a gap: these entries were removed
            orphan = kind_of_orphan(gone)
            if orphan:
                accounted.add((orphan, gone))
                problem(gone, orphan, "removed", "its entry is missing from ledger_entries (its record is still there)")
            else:
                problem(gone, None, "removed", f"missing: the sequence jumps from {expected_seq - 1} to {seq}")
            link_known = False
        expected_seq = seq + 1
        try:
            kind = _str(row, "kind")
            if kind not in KINDS:
                raise _Garbled(f"column kind holds {kind!r}, not one of {', '.join(KINDS)}")
            stored_prev = _str(row, "prev_hash", hex64=True)
            stored_hash = _str(row, "entry_hash", hex64=True)
        except _Garbled as e:
            problem(seq, kind if kind in KINDS else kind_of_orphan(seq), "unreadable", str(e))
            link_known = False
            continue
        accounted.add((kind, seq))

        # The link to the previous entry (not judged right after a gap or an unreadable entry,
        # which are reported already).
        if link_known and stored_prev != prev_hash:
            problem(seq, kind, "broken-chain", f"its prev_hash is not entry {seq - 1}'s hash: an entry was "
                                               "rewritten, inserted, removed or reordered here")
        prev_hash, link_known = stored_hash, True

        # The entry's own fields.
        detail = details[kind].get(seq)
        if detail is None:
            problem(seq, kind, "removed", f"its {kind} record is missing from {DETAIL_TABLES[kind].name}")
            continue
        try:
            record = _record_from_rows(kind, seq, detail, children)
            recomputed = chain_hash(stored_prev, entry_fields(seq, record))  # type: ignore[arg-type]
        except (_Garbled, ValueError, UnicodeError) as e:
            problem(seq, kind, "unreadable", str(e))
            continue
        if recomputed != stored_hash:
            problem(seq, kind, "changed", f"{_describe(record)} no longer matches the entry's hash")
        if isinstance(record, Snapshot):
            report.snapshots += 1
            hashes = record.content_hashes
            if list(hashes) != sorted(set(hashes)) or len(hashes) != record.size or snapshot_root(hashes) != record.merkle_root:
                problem(seq, kind, "merkle", f"{_describe(record)}: its {len(hashes)} member rows do not give its Merkle "
                                             f"root {record.merkle_root}: members were changed, added or removed")
        for ref_kind, key in _references(record):
            if key not in earlier[ref_kind]:
                problem(seq, kind, "reference", f"{_describe(record)} refers to {ref_kind} {key!r}, which is not an earlier entry")
        earlier[kind][_key(record)] = seq

    # Rows no entry accounts for were inserted (or their entry was removed from the end).
    for kind, by_seq in details.items():
        for seq in sorted(by_seq):
            if (kind, seq) not in accounted:
                problem(seq, kind, "inserted", f"a {DETAIL_TABLES[kind].name} row with no entry in ledger_entries")
    for name, kind in (("ledger_model_parents", "model"), ("ledger_snapshot_members", "snapshot")):
        for seq in sorted(children[name]):
            if (kind, seq) not in accounted:
                problem(seq, kind, "inserted", f"{name} rows that belong to no {kind} entry")

    report.entries = len(entries)
    if entries:
        report.head_seq = entries[-1][0]
        report.head_hash = str(entries[-1][1].get("entry_hash"))
    if expected_head is not None:
        want_seq, want_hash = expected_head
        stored = dict(entries).get(want_seq, {}).get("entry_hash")
        if want_seq > report.head_seq:
            problem(want_seq, None, "truncated", f"the ledger ends at entry {report.head_seq}, but its recorded head is entry {want_seq}")
        elif want_seq > 0 and stored != want_hash:
            problem(want_seq, None, "changed", f"its hash is not the recorded head {want_hash}: the ledger was rewritten")
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _record_from_rows(kind: str, seq: int, row: dict, children: dict[str, dict[int, list[tuple[int, str]]]]) -> Record:
    if kind == "document":
        return Document(_str(row, "content_hash", hex64=True), _str(row, "origin"),  # type: ignore[arg-type]
                        _str(row, "source", nullable=True), _str(row, "licence", nullable=True),
                        _str(row, "model_id", nullable=True), _int(row, "generation", nullable=True),
                        _str(row, "watermark_key_id", nullable=True), _str(row, "created_at"), seq)
    if kind == "model":
        parents = [p for _, p in sorted(children["ledger_model_parents"].get(seq, []))]
        return Model(_str(row, "model_id"), _str(row, "family"), tuple(parents),  # type: ignore[arg-type]
                     _str(row, "snapshot", nullable=True), _str(row, "created_at"), seq)
    members = [h for _, h in sorted(children["ledger_snapshot_members"].get(seq, []))]
    return Snapshot(_str(row, "name"), tuple(members), _str(row, "merkle_root", hex64=True),  # type: ignore[arg-type]
                    _int(row, "size"), _str(row, "created_at"), seq)


def _references(record: Record) -> list[tuple[str, str]]:
    if isinstance(record, Document):
        return [("model", record.model_id)] if record.model_id is not None else []
    if isinstance(record, Model):
        return [("model", p) for p in record.parents] + ([("snapshot", record.snapshot)] if record.snapshot else [])
    return [("document", h) for h in record.content_hashes]


def _key(record: Record) -> str:
    if isinstance(record, Document):
        return record.content_hash
    return record.model_id if isinstance(record, Model) else record.name


def _describe(record: Record) -> str:
    if isinstance(record, Document):
        return f"document {record.content_hash[:16]}…"
    if isinstance(record, Model):
        return f"model {record.model_id!r}"
    return f"snapshot {record.name!r}"
