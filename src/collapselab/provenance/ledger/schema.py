"""The ledger's tables (SQLAlchemy Core): one table of entries, one detail table per record kind.

``ledger_entries`` holds the chain: ``seq``, ``kind``, ``prev_hash`` and ``entry_hash`` of every
entry. Each record kind keeps its fields in a table of its own, keyed by the same ``seq``, and its
lists (a model's parents, a snapshot's members, a step's files) in a child table. There are no
database-level foreign keys: the references between entries are checked by ``append`` (they must
point to earlier entries) and re-checked by ``verify``, which also catches what foreign keys cannot.

Steps (processing steps of a data pipeline) came after the first ledgers: their two tables are
added, empty, when an older ledger is opened for writing. Adding empty tables changes no entry and
no hash, so the format version stays the same.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

FORMAT = "collapselab-ledger"
VERSION = "1"
GENESIS = "0" * 64  # the prev_hash of entry 1

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
steps_table = sa.Table(
    "ledger_steps", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("step_id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
step_files_table = sa.Table(
    "ledger_step_files", metadata,
    sa.Column("step_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("role", sa.String(8), primary_key=True),  # 'input' | 'output'
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, index=True),
)

# Tables a ledger made before steps existed lacks; added (empty) when it is opened for writing.
LATER_TABLES = (steps_table, step_files_table)

# PostgreSQL advisory lock key for appends: the first 8 bytes of SHA-256("collapselab-ledger").
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(FORMAT.encode()).digest()[:8], "big", signed=True)
