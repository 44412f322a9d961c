"""The log: appending records to the hash chain, reading them back, tree heads, proofs and lineage."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collapselab.errors import UserError
from collapselab.provenance import core, merkle
from collapselab.provenance.ledger import lineage
from collapselab.provenance.ledger.lookup import load, load_all, load_many, records
from collapselab.provenance.proofs import ConsistencyProof, EntryProof, InclusionProof
from collapselab.provenance.ledger.records import (
    KEY_COLUMNS,
    RECORDS,
    Document,
    FileDigest,
    Model,
    Record,
    Snapshot,
    Step,
    chain_hash,
    entry_fields,
    record_class,
)
from collapselab.provenance.ledger.schema import GENESIS, documents_table, entries_table, metadata, snapshot_members_table
from collapselab.provenance.ledger.store import Store
from collapselab.provenance.ledger.verify import VerifyReport, check_rows, check_tree_head
from collapselab.provenance.sth import TreeHead, sign_head


class Ledger(Store):
    """A provenance ledger in a SQLite file (a path) or PostgreSQL (a URL).

    ``create=True`` (the default) makes a new ledger where there is none: a new file, an empty
    SQLite file, or a PostgreSQL database without the ledger's tables. Anything else that is not
    a ledger raises :class:`UserError` and is left untouched.
    """

    # -- appending ----------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> list[Record]:
        """Append documents, models, snapshots and steps, in order, in one transaction; return them as stored.

        A record already in the ledger with the same fields is returned as it is (no new entry).
        References must point to entries already in the ledger or earlier in ``records``: a
        document's ``model_id``, a model's ``parents`` and ``snapshot``, a snapshot's documents.
        Either all of ``records`` are appended or, on an error, none.
        """
        now = core.utc_now()
        batch = [record_class(r).normalised(r, now) for r in records]
        if not batch:
            return []
        if any(r.kind in self.missing_kinds() for r in batch):
            raise UserError(f"{self.label}: this ledger predates processing steps and cannot be written here to add "
                            "their tables; open it where it is writable once (any collapselab command that records)")
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

    def add_step(self, name: str, *, inputs: Iterable[FileDigest] = (), outputs: Iterable[FileDigest] = (),
                 params: dict[str, Any] | None = None, created_at: str | datetime | None = None) -> Step:
        """Record a processing step: the files it read and wrote, as (name, SHA-256) pairs, and its parameters."""
        return self.append([Step.of(name, inputs=inputs, outputs=outputs, params=params, created_at=created_at)])[0]  # type: ignore[return-value]

    def _append_locked(self, conn: Connection, batch: list[Record]) -> list[Record]:
        """Chain ``batch`` onto the head; runs under the append lock, so the head cannot move."""
        seq, head = self._head(conn)
        known = _Known(conn, batch)
        rows: dict[sa.Table, list[dict]] = {t: [] for t in metadata.sorted_tables}
        stored: list[Record] = []
        for record in batch:
            old = known.get(record.kind, record.key)
            if old is not None:
                stored.append(self._same_as(record, old))
                continue
            record.check_references(known, self.label)
            seq += 1
            record = replace(record, seq=seq)
            entry_hash = chain_hash(head, entry_fields(seq, record))
            rows[entries_table].append({"seq": seq, "kind": record.kind, "prev_hash": head, "entry_hash": entry_hash})
            for table, row in record.rows(seq):
                rows[table].append(row)
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
            raise UserError(f"{self.label}: {record.describe()} is already entry {old.seq} with {diff}; "
                            "entries are never changed, record it under a new id")
        return old

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

    def _get(self, kind: str, key: str) -> Any:
        if kind in self.missing_kinds():
            return None
        with self._read() as conn:
            return load(conn, kind, key)

    def _all(self, kind: str) -> list[Any]:
        if kind in self.missing_kinds():
            return []
        with self._read() as conn:
            return load_all(conn, kind)

    def missing_kinds(self) -> set[str]:
        """Record kinds whose tables this (older, read-only) ledger lacks: it holds none of them."""
        return {kind for kind, cls in RECORDS.items() if cls.table.name in self.missing_tables}

    def document(self, content_hash: str) -> Document | None:
        return self._get("document", content_hash.lower())

    def model(self, model_id: str) -> Model | None:
        return self._get("model", model_id)

    def snapshot(self, name: str) -> Snapshot | None:
        return self._get("snapshot", name)

    def step(self, step_id: str) -> Step | None:
        return self._get("step", step_id)

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
                snap = load(conn, "snapshot", snapshot)
                if snap is None:
                    raise UserError(f"{self.label}: no snapshot named {snapshot!r}")
                members = sa.select(snapshot_members_table.c.content_hash).where(snapshot_members_table.c.snapshot_seq == snap.seq)
                q = q.where(t.c.content_hash.in_(members))
            return records(conn, "document", conn.execute(q).mappings().all())  # type: ignore[return-value]

    def models(self) -> list[Model]:
        return self._all("model")

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, with its members, in ledger order."""
        return self._all("snapshot")

    def steps(self) -> list[Step]:
        """Every processing step (scan, filter, mix, ...), with its files, in ledger order."""
        return self._all("step")

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
        return InclusionProof(snapshot, content_hash, index, snap.size, path, snap.merkle_root or "")  # type: ignore[arg-type]

    # -- lineage ------------------------------------------------------------------------------

    def parents(self, model_id: str) -> tuple[str, ...]:
        return self._need_model(model_id).parents

    def ancestors(self, model_id: str) -> list[str]:
        """Every model ``model_id`` derives from, through parents and through the generating
        models of the synthetic documents in its training snapshot; nearest first."""
        self._need_model(model_id)
        with self._read() as conn:
            return lineage.ancestors(conn, model_id)

    def synthetic_depth(self, model_id: str) -> int:
        """The longest chain of model-generated data behind ``model_id``.

        0 for a model trained on human data only. A synthetic document made by model G adds
        1 + depth(G) (a synthetic document with no generating model counts its ``generation``,
        at least 1); a model's depth is the largest over its training snapshot's documents and
        over its parents (a fine-tuned model inherits what is behind its parent).
        """
        self._need_model(model_id)
        with self._read() as conn:
            return lineage.synthetic_depth(conn, model_id, self.label)

    def _need_model(self, model_id: str) -> Model:
        model = self.model(model_id)
        if model is None:
            raise UserError(f"{self.label}: no model {model_id!r} in the ledger")
        return model

    # -- verification -------------------------------------------------------------------------

    def verify(self, *, expected_head: tuple[int, str] | None = None, expected_sth: TreeHead | None = None,
               public_key: Any = None) -> VerifyReport:
        """Recompute the chain and every snapshot's Merkle root; see :func:`verify`."""
        with self._read() as conn:
            tables = {t.name: [dict(r) for r in conn.execute(sa.select(t)).mappings()] for t in metadata.sorted_tables
                      if t.name != "ledger_meta" and t.name not in self.missing_tables}
        report = check_rows(self.label, tables, expected_head)
        if expected_sth is not None:
            check_tree_head(report, tables[entries_table.name], expected_sth, public_key)
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


class _Known:
    """What an append needs to look up, read in bulk once per batch (a query per kind and 500 keys):
    every record the batch adds or refers to; plus what the batch itself has added so far."""

    def __init__(self, conn: Connection, batch: list[Record]) -> None:
        self.conn = conn
        wanted: dict[str, set[str]] = {}
        for r in batch:
            wanted.setdefault(r.kind, set()).add(r.key)
            wanted.setdefault("document", set()).update(r.mentions())
            for kind, key in r.references():
                wanted.setdefault(kind, set()).add(key)
        self.records: dict[tuple[str, str], Record | None] = {}
        for kind, keys in wanted.items():
            found = load_many(conn, kind, keys)
            self.records.update({(kind, k): found.get(k) for k in keys})

    def get(self, kind: str, key: str) -> Record | None:
        if (kind, key) not in self.records:
            self.records[(kind, key)] = load(self.conn, kind, key)
        return self.records[(kind, key)]

    def has(self, kind: str, key: str) -> bool:
        return self.get(kind, key) is not None

    def add(self, record: Record) -> None:
        self.records[(record.kind, record.key)] = record


__all__ = ["Ledger", "verify", "run_head", "KEY_COLUMNS"]
