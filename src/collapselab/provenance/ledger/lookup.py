"""Reading records back: one stored record, by kind and key or by sequence number, with its child rows."""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collapselab.errors import UserError
from collapselab.provenance.ledger.records import KEY_COLUMNS, RECORDS, Garbled, Record


def from_row(kind: str, conn: Connection, row: Any) -> Record:
    """The record of a detail row, its child rows read from ``conn``."""
    cls = RECORDS[kind]
    seq = int(row["seq"])
    children: list[dict] = []
    if cls.children is not None:
        table, key = cls.children
        children = [dict(r) for r in conn.execute(sa.select(table).where(table.c[key] == seq)).mappings()]
    try:
        return cls.from_rows(seq, dict(row), children)
    except Garbled as e:
        raise UserError(f"damaged ledger: entry {seq} ({kind}): {e}; run `collapselab ledger verify`") from None


def load(conn: Connection, kind: str, key: str | None = None, *, seq: int | None = None) -> Record | None:
    """The ``kind`` record whose key is ``key`` (or whose entry is ``seq``), or None."""
    table = RECORDS[kind].table
    where = table.c[KEY_COLUMNS[kind]] == key if seq is None else table.c.seq == seq
    row = conn.execute(sa.select(table).where(where)).mappings().first()
    return None if row is None else from_row(kind, conn, row)


def load_all(conn: Connection, kind: str, where: Iterable[Any] = ()) -> list[Record]:
    """Every ``kind`` record (that matches ``where``), in ledger order."""
    table = RECORDS[kind].table
    rows = conn.execute(sa.select(table).where(*where).order_by(table.c.seq)).mappings().all()
    return [from_row(kind, conn, r) for r in rows]
