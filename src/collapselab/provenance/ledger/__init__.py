"""The provenance ledger: an append-only, hash-chained record of documents, models, snapshots and steps.

What it records
    * a **document**: its content hash (SHA-256 of the text or bytes), origin (``human``,
      ``synthetic`` or ``unknown``), source, licence, the model that generated it and in which
      generation, the id of the watermark key it carries, and when it was recorded;
    * a **model**: its id, family, parent models and the snapshot it was trained on;
    * a **snapshot**: a named set of documents, with the Merkle root of their content hashes
      (RFC 6962 / 9162, see :mod:`collapselab.provenance.merkle`), so one document's membership can
      be proved with a handful of hashes;
    * a **step**: a processing step of a data pipeline (``scan``, ``filter``, ``mix``), with its
      parameters and the files it read and wrote, by SHA-256 (in-toto's materials and products).

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

The package, one idea a module
    ``records`` (one class per record kind: fields, key, references, checks, rows), ``schema``
    (the tables), ``store`` (engines, opening, locking), ``log`` (the :class:`Ledger`: append,
    read, tree heads, proofs), ``lookup`` (reading a record back), ``verify`` (the checks, pure),
    ``lineage`` (ancestors, synthetic depth). The Merkle proofs are :mod:`collapselab.provenance.proofs`'s
    (the vault's too); canonical JSON, hashing and timestamps :mod:`collapselab.provenance.core`'s.

Appending is idempotent: registering a document, model or snapshot that is already there with the
same fields returns the existing entry (so a resumed run adds no duplicates); the same key with
different fields is a :class:`~collapselab.errors.UserError`.
"""

from __future__ import annotations

from collapselab.provenance.ledger.log import Ledger, run_head, verify
from collapselab.provenance.proofs import ConsistencyProof, EntryProof, InclusionProof
from collapselab.provenance.ledger.records import (
    KINDS,
    ORIGINS,
    RECORDS,
    Document,
    Model,
    Record,
    Snapshot,
    Step,
    canonical_json,
    chain_hash,
    entry_fields,
    hash_content,
    snapshot_root,
)
from collapselab.provenance.ledger.schema import FORMAT, GENESIS, VERSION, documents_table
from collapselab.provenance.ledger.verify import Problem, VerifyReport

__all__ = [
    "ORIGINS",
    "KINDS",
    "RECORDS",
    "FORMAT",
    "VERSION",
    "GENESIS",
    "Record",
    "Document",
    "Model",
    "Snapshot",
    "Step",
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
    "documents_table",
]
