"""Where a ledger lives and how it is opened, locked and written: SQLite or PostgreSQL.

A SQLite file by default (a path, or ``sqlite:///path``); PostgreSQL by URL
(``postgresql://user:password@host/db``), where a team keeps a shared ledger.

Appends take a database lock for the whole transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock), read the head, write and commit; a busy database is retried.
``seq`` is the primary key, so the chain cannot fork even if the lock were bypassed: the second
writer of a sequence number fails and nothing is half-written.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from collapselab.errors import UserError
from collapselab.provenance.ledger.schema import FORMAT, LATER_TABLES, PG_LOCK_KEY, VERSION, meta_table, metadata

T = TypeVar("T")
_SQLITE_MAGIC = b"SQLite format 3\x00"


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


class Store:
    """An open ledger database: the engine, the checks on opening, transactions and the append lock.

    ``create=True`` (the default) makes a new ledger where there is none: a new file, an empty
    SQLite file, or a PostgreSQL database without the ledger's tables. Anything else that is not
    a ledger raises :class:`UserError` and is left untouched.
    """

    def __init__(self, target: str | os.PathLike, *, create: bool = True) -> None:
        self.url, self.label, self.path = _resolve(target)
        self.missing_tables: frozenset[str] = frozenset()  # tables of later record kinds an older ledger lacks
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
            if self.missing_tables and create:
                self._upgrade()
            if self.is_sqlite:
                self._use_wal()

    def _upgrade(self) -> None:
        """Add the (empty) tables of record kinds that came after this ledger was made. A ledger that
        cannot be written (a read-only file) stays as it is: it is read as holding none of them."""
        try:
            self._with_lock(lambda conn: metadata.create_all(conn, tables=list(LATER_TABLES), checkfirst=True))
        except UserError:
            if not self.is_sqlite:
                raise
            return
        self.missing_tables = frozenset()

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
        later = {t.name for t in LATER_TABLES}
        missing = [t.name for t in metadata.sorted_tables if t.name not in names and t.name not in later]
        self.missing_tables = frozenset(later - names)
        if missing:
            raise UserError(f"{self.label}: damaged ledger, table {missing[0]} is missing; restore it from a backup")
        return "ledger"

    def _create(self, conn: Connection) -> None:
        if self._state(conn) == "ledger":  # another process made it while we waited for the lock
            return
        metadata.create_all(conn)
        self.missing_tables = frozenset()
        conn.execute(sa.insert(meta_table), [{"key": "format", "value": FORMAT}, {"key": "version", "value": VERSION}])

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
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
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
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

