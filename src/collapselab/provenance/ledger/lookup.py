"""Reading records back: one stored record, by kind and key or by sequence number, with its child rows."""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collapselab.errors import UserError
from collapselab.provenance.ledger.records import KEY_COLUMNS, RECORDS, Garbled, Record


def records(conn: Connection, kind: str, rows: list[Any]) -> list[Record]:
    """The records of ``kind``'s detail ``rows``, their child rows read in bulk (a query per 500)."""
    cls = RECORDS[kind]
    rows = [dict(r) for r in rows]
    children: dict[int, list[dict]] = {}
    if cls.children is not None and rows:
        child, parent = cls.children
        seqs = [int(r["seq"]) for r in rows]
        for i in range(0, len(seqs), 500):
            for c in conn.execute(sa.select(child).where(child.c[parent].in_(seqs[i:i + 500]))).mappings():
                children.setdefault(int(c[parent]), []).append(dict(c))
    out = []
    for r in rows:
        seq = int(r["seq"])
        try:
            out.append(cls.from_rows(seq, r, children.get(seq, [])))
        except Garbled as e:
            raise UserError(f"damaged ledger: entry {seq} ({kind}): {e}; run `collapselab ledger verify`") from None
    return out


def from_row(kind: str, conn: Connection, row: Any) -> Record:
    """The record of one detail row, its child rows read from ``conn``."""
    return records(conn, kind, [row])[0]


def load(conn: Connection, kind: str, key: str | None = None, *, seq: int | None = None) -> Record | None:
    """The ``kind`` record whose key is ``key`` (or whose entry is ``seq``), or None."""
    table = RECORDS[kind].table
    where = table.c[KEY_COLUMNS[kind]] == key if seq is None else table.c.seq == seq
    row = conn.execute(sa.select(table).where(where)).mappings().first()
    return None if row is None else from_row(kind, conn, row)


def load_all(conn: Connection, kind: str, where: Iterable[Any] = ()) -> list[Record]:
    """Every ``kind`` record (that matches ``where``), in ledger order."""
    table = RECORDS[kind].table
    return records(conn, kind, conn.execute(sa.select(table).where(*where).order_by(table.c.seq)).mappings().all())


def load_many(conn: Connection, kind: str, keys: Iterable[str]) -> dict[str, Record]:
    """The stored ``kind`` records among ``keys``, by key: a query per 500 keys (and per 500 for their child rows)."""
    table = RECORDS[kind].table
    col = table.c[KEY_COLUMNS[kind]]
    keys = sorted(set(keys))
    rows = []
    for i in range(0, len(keys), 500):
        rows += conn.execute(sa.select(table).where(col.in_(keys[i:i + 500]))).mappings().all()
    return {r.key: r for r in records(conn, kind, rows)}
