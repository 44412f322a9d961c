"""Lineage: which models a model derives from, through its parents and through the generating models
of the synthetic documents it was trained on, and how deep the chain of model-made data behind it is."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collapselab.errors import UserError
from collapselab.provenance.ledger.lookup import load
from collapselab.provenance.ledger.schema import documents_table, snapshot_members_table, snapshots_table


def synthetic_makers(conn: Connection, snapshot: str | None) -> list[tuple[str | None, int | None]]:
    """Distinct (generating model, generation) of the synthetic documents in a snapshot."""
    if snapshot is None:
        return []
    d, m, s = documents_table, snapshot_members_table, snapshots_table
    q = (sa.select(d.c.model_id, d.c.generation).distinct()
         .select_from(s.join(m, m.c.snapshot_seq == s.c.seq).join(d, d.c.content_hash == m.c.content_hash))
         .where(s.c.name == snapshot, d.c.origin == "synthetic"))
    return [(r.model_id, r.generation) for r in conn.execute(q)]


def upstream(conn: Connection, model_id: str) -> list[str]:
    """A model's parents, then the other models that made synthetic documents of its training snapshot."""
    model = load(conn, "model", model_id)
    if model is None:
        return []
    makers = sorted({g for g, _ in synthetic_makers(conn, model.snapshot) if g is not None})
    return [*model.parents, *(g for g in makers if g not in model.parents)]


def ancestors(conn: Connection, model_id: str) -> list[str]:
    """Every model ``model_id`` derives from, nearest first."""
    seen: dict[str, None] = {}
    frontier = [model_id]
    while frontier:
        nxt: list[str] = []
        for m in frontier:
            for up in upstream(conn, m):
                if up not in seen and up != model_id:
                    seen[up] = None
                    nxt.append(up)
        frontier = nxt
    return list(seen)


def synthetic_depth(conn: Connection, model_id: str, label: str) -> int:
    """The longest chain of model-generated data behind ``model_id`` (see :meth:`Ledger.synthetic_depth`)."""
    depth: dict[str, int] = {}
    expanded: set[str] = set()
    stack = [model_id]
    while stack:  # iterative post-order walk: lineages can be thousands of generations deep
        m = stack[-1]
        if m in depth:
            stack.pop()
            continue
        model = load(conn, "model", m)
        if model is None:
            raise UserError(f"{label}: model {m!r}, upstream of {model_id!r}, is not in the ledger; "
                            "the ledger is damaged, run `collapselab ledger verify`")
        docs = synthetic_makers(conn, model.snapshot)
        pending = [u for u in (*model.parents, *(g for g, _ in docs if g is not None)) if u not in depth]
        if pending:
            if m in expanded:  # its inputs were walked and still wait for it: a cycle
                raise UserError(f"{label}: the lineage of model {m!r} loops back on itself; the ledger "
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
