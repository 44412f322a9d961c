"""What a ledger records: one class per record kind, each knowing its own fields, key, references,
checks and rows, so that the log, the store and the verifier treat every kind alike.

* :class:`Document`: a document by content hash, with origin, source, licence, generating model.
* :class:`Model`: a model, its parent models and its training snapshot.
* :class:`Snapshot`: a named set of documents with the Merkle root of their content hashes.
* :class:`Step`: a processing step of a data pipeline (``scan``, ``filter``, ``mix``, ...): its
  parameters and the files it read and wrote, by SHA-256 digest (in-toto's materials and products).

Every entry's hash covers ``{"seq", "kind", **record.fields()}`` in canonical JSON
(:func:`entry_fields`, :func:`chain_hash`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Iterable, Protocol, Union

import sqlalchemy as sa

from collapselab.errors import UserError
from collapselab.provenance import core
from collapselab.provenance.proofs import hashes_root
from collapselab.provenance.ledger.schema import (
    documents_table,
    model_parents_table,
    models_table,
    snapshot_members_table,
    snapshots_table,
    step_files_table,
    steps_table,
)

ORIGINS = ("human", "synthetic", "unknown")
STEP_ROLES = ("input", "output")
HEX64 = re.compile(r"[0-9a-f]{64}")


class Known(Protocol):
    """What a record's reference check can ask: is this key already recorded (or earlier in the batch)?"""

    def has(self, kind: str, key: str) -> bool: ...


# --------------------------------------------------------------------------------- hashing


hash_content = core.content_hash
canonical_json = core.canonical_json


def entry_fields(seq: int, record: "Record") -> dict[str, Any]:
    """Everything an entry's hash covers."""
    return {"seq": seq, "kind": record.kind, **record.fields()}


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """``SHA-256(prev_hash || canonical JSON of fields)``, hex; ``prev_hash`` is hex too."""
    return core.content_hash(bytes.fromhex(prev_hash) + core.canonical_json(fields))


snapshot_root = hashes_root  # the Merkle root over a snapshot's sorted content hashes


# ------------------------------------------------------------------ reading stored rows


class Garbled(Exception):
    """A stored row holds a value of the wrong type or shape."""


def read_int(row: dict, col: str, *, nullable: bool = False) -> int | None:
    v = row.get(col)
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise Garbled(f"column {col} holds {v!r}, not a whole number")
    return v


def read_str(row: dict, col: str, *, nullable: bool = False, hex64: bool = False) -> str | None:
    v = row.get(col)
    if v is None and nullable:
        return None
    if not isinstance(v, str) or (hex64 and not HEX64.fullmatch(v)):
        raise Garbled(f"column {col} holds {v!r:.80}, not {'a SHA-256 hex digest' if hex64 else 'text'}")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise Garbled(f"column {col} holds bytes that are not UTF-8 text: {v!r:.80}") from None
    return v


def _ordered(children: list[dict], col: str, *, hex64: bool = False) -> list[str]:
    """A child table's values in ``position`` order."""
    return [v for _, v in sorted((read_int(r, "position"), read_str(r, col, hex64=hex64)) for r in children)]  # type: ignore[type-var]


# ------------------------------------------------------------- checking what users pass in


def _timestamp(value: str | datetime | None, now: str, what: str) -> str:
    if value is None:
        return now
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UserError(f"{what}: created_at {value!r} has no time zone; pass an aware datetime (UTC)")
        return core.utc_iso(value)
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
    if not isinstance(value, str) or not HEX64.fullmatch(value.lower()):
        raise UserError(f"{what}: {value!r} is not a SHA-256 hash (64 hex digits); use hash_content(text) to make one")
    return value.lower()


# ------------------------------------------------------------------------------- records


class RecordBase:
    """What a record kind does not need to say: no references, no documents mentioned, nothing to
    check beyond the entry's hash."""

    def references(self) -> list[tuple[str, str]]:
        """(kind, key) of the earlier entries this record refers to."""
        return []

    def mentions(self) -> Iterable[str]:
        """Content hashes of the documents this record names (read in bulk before an append)."""
        return ()

    def check_references(self, known: Known, label: str) -> None:
        """A UserError naming the first reference that is not in the ledger."""
        return None

    def problems(self) -> list[str]:
        """What verify finds wrong in the stored record beyond its hash."""
        return []


@dataclass(frozen=True)
class Document(RecordBase):
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

    kind: ClassVar[str] = "document"
    table: ClassVar[sa.Table] = documents_table
    children: ClassVar[tuple[sa.Table, str] | None] = None

    @property
    def key(self) -> str:
        return self.content_hash

    def describe(self) -> str:
        return f"document {self.content_hash[:16]}…"

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

    def references(self) -> list[tuple[str, str]]:
        return [("model", self.model_id)] if self.model_id is not None else []

    def mentions(self) -> Iterable[str]:
        return (self.content_hash,)

    def check_references(self, known: Known, label: str) -> None:
        if self.model_id is not None and not known.has("model", self.model_id):
            raise UserError(f"{label}: {self.describe()}: generating model {self.model_id!r} is not in the ledger; "
                            "record the model first (add_model)")

    def normalised(self, now: str) -> "Document":
        h = _hex_hash(self.content_hash, "document content_hash")
        what = f"document {h[:12]}…"
        if self.origin not in ORIGINS:
            raise UserError(f"{what}: origin {self.origin!r} is not one of {', '.join(ORIGINS)}")
        if self.origin == "human" and (self.model_id is not None or (self.generation or 0) > 0):
            raise UserError(f"{what}: a human document has no generating model or generation > 0; use origin='synthetic'")
        gen = self.generation
        if gen is not None and (isinstance(gen, bool) or not isinstance(gen, int) or gen < 0):
            raise UserError(f"{what}: generation must be a whole number >= 0, not {gen!r}")
        return Document(h, self.origin, _text(self.source, f"{what}: source"), _text(self.licence, f"{what}: licence"),
                        _text(self.model_id, f"{what}: model_id"), gen,
                        _text(self.watermark_key_id, f"{what}: watermark_key_id"), _timestamp(self.created_at, now, what))

    def rows(self, seq: int) -> list[tuple[sa.Table, dict]]:
        return [(documents_table, {"seq": seq, **self.fields()})]

    @classmethod
    def from_rows(cls, seq: int, row: dict, children: list[dict]) -> "Document":
        return cls(read_str(row, "content_hash", hex64=True), read_str(row, "origin"),  # type: ignore[arg-type]
                   read_str(row, "source", nullable=True), read_str(row, "licence", nullable=True),
                   read_str(row, "model_id", nullable=True), read_int(row, "generation", nullable=True),
                   read_str(row, "watermark_key_id", nullable=True), read_str(row, "created_at"), seq)


@dataclass(frozen=True)
class Model(RecordBase):
    """One model: its parents (models it was derived from) and the snapshot it was trained on."""

    model_id: str
    family: str
    parents: tuple[str, ...] = ()
    snapshot: str | None = None  # training snapshot name (must be in the ledger already)
    created_at: str | None = None
    seq: int | None = None

    kind: ClassVar[str] = "model"
    table: ClassVar[sa.Table] = models_table
    children: ClassVar[tuple[sa.Table, str] | None] = (model_parents_table, "model_seq")

    @property
    def key(self) -> str:
        return self.model_id

    def describe(self) -> str:
        return f"model {self.model_id!r}"

    def fields(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "family": self.family,
            "parents": list(self.parents),
            "snapshot": self.snapshot,
            "created_at": self.created_at,
        }

    def references(self) -> list[tuple[str, str]]:
        return [("model", p) for p in self.parents] + ([("snapshot", self.snapshot)] if self.snapshot else [])

    def check_references(self, known: Known, label: str) -> None:
        for p in self.parents:
            if not known.has("model", p):
                raise UserError(f"{label}: model {self.model_id!r}: parent {p!r} is not in the ledger; record the model first (add_model)")
        if self.snapshot is not None and not known.has("snapshot", self.snapshot):
            raise UserError(f"{label}: model {self.model_id!r}: training snapshot {self.snapshot!r} "
                            "is not in the ledger; record the snapshot first")

    def normalised(self, now: str) -> "Model":
        mid = _text(self.model_id, "model id", required=True)
        what = f"model {mid!r}"
        if isinstance(self.parents, str):
            raise UserError(f"{what}: parents must be a list of model ids, not the string {self.parents!r}")
        parents = tuple(_text(p, f"{what}: parent id", required=True) for p in self.parents)  # type: ignore[misc]
        if mid in parents or len(set(parents)) != len(parents):
            raise UserError(f"{what}: parents {list(parents)} repeat a model or name the model itself")
        return Model(mid, _text(self.family, f"{what}: family", required=True), parents,  # type: ignore[arg-type]
                     _text(self.snapshot, f"{what}: snapshot"), _timestamp(self.created_at, now, what))

    def rows(self, seq: int) -> list[tuple[sa.Table, dict]]:
        fields = self.fields()
        del fields["parents"]
        return [(models_table, {"seq": seq, **fields})] + [
            (model_parents_table, {"model_seq": seq, "position": i, "parent_id": p}) for i, p in enumerate(self.parents)]

    @classmethod
    def from_rows(cls, seq: int, row: dict, children: list[dict]) -> "Model":
        return cls(read_str(row, "model_id"), read_str(row, "family"), tuple(_ordered(children, "parent_id")),  # type: ignore[arg-type]
                   read_str(row, "snapshot", nullable=True), read_str(row, "created_at"), seq)


@dataclass(frozen=True)
class Snapshot(RecordBase):
    """A named set of documents. ``content_hashes`` are kept sorted and distinct: the Merkle leaves."""

    name: str
    content_hashes: tuple[str, ...] = ()
    merkle_root: str | None = None  # computed when appended
    size: int | None = None  # len(content_hashes), filled in when appended
    created_at: str | None = None
    seq: int | None = None

    kind: ClassVar[str] = "snapshot"
    table: ClassVar[sa.Table] = snapshots_table
    children: ClassVar[tuple[sa.Table, str] | None] = (snapshot_members_table, "snapshot_seq")

    @property
    def key(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"snapshot {self.name!r}"

    def fields(self) -> dict[str, Any]:
        # The members are committed to through the Merkle root, which the chain covers.
        return {"name": self.name, "size": self.size, "merkle_root": self.merkle_root, "created_at": self.created_at}

    def references(self) -> list[tuple[str, str]]:
        return [("document", h) for h in self.content_hashes]

    def mentions(self) -> Iterable[str]:
        return self.content_hashes

    def check_references(self, known: Known, label: str) -> None:
        missing = [h for h in self.content_hashes if not known.has("document", h)]
        if missing:
            raise UserError(f"{label}: snapshot {self.name!r}: {len(missing)} document(s) are not in the "
                            f"ledger (first: {missing[0]}); record the documents first")

    def normalised(self, now: str) -> "Snapshot":
        name = _text(self.name, "snapshot name", required=True)
        what = f"snapshot {name!r}"
        if isinstance(self.content_hashes, str):
            raise UserError(f"{what}: content_hashes must be a list of hashes, not one string")
        hashes = tuple(sorted({_hex_hash(h, what) for h in self.content_hashes}))
        return Snapshot(name, hashes, snapshot_root(hashes), len(hashes), _timestamp(self.created_at, now, what))  # type: ignore[arg-type]

    def rows(self, seq: int) -> list[tuple[sa.Table, dict]]:
        return [(snapshots_table, {"seq": seq, **self.fields()})] + [
            (snapshot_members_table, {"snapshot_seq": seq, "position": i, "content_hash": h})
            for i, h in enumerate(self.content_hashes)]

    @classmethod
    def from_rows(cls, seq: int, row: dict, children: list[dict]) -> "Snapshot":
        return cls(read_str(row, "name"), tuple(_ordered(children, "content_hash", hex64=True)),  # type: ignore[arg-type]
                   read_str(row, "merkle_root", hex64=True), read_int(row, "size"), read_str(row, "created_at"), seq)

    def problems(self) -> list[str]:
        """What is wrong with the stored members (verify): they must give the recorded root."""
        hashes = self.content_hashes
        if list(hashes) != sorted(set(hashes)) or len(hashes) != self.size or snapshot_root(hashes) != self.merkle_root:
            return [f"{self.describe()}: its {len(hashes)} member rows do not give its Merkle root {self.merkle_root}: "
                    "members were changed, added or removed"]
        return []


FileDigest = tuple[str, str]  # (name, SHA-256 hex of the file's bytes)


@dataclass(frozen=True)
class Step(RecordBase):
    """A processing step of a data pipeline: what it read and wrote, and with which parameters.

    ``inputs`` and ``outputs`` are ``(name, sha256)`` pairs, the SHA-256 of each file's bytes (in-toto
    calls them materials and products). ``params`` is the canonical JSON of the step's parameters.
    ``step_id`` defaults to a digest of everything else but the time, so recording the same step
    twice (a rerun on the same files) adds no second entry. Build one with :meth:`Step.of`.
    """

    step_id: str | None
    name: str
    inputs: tuple[FileDigest, ...] = ()
    outputs: tuple[FileDigest, ...] = ()
    params: str = "{}"
    created_at: str | None = None
    seq: int | None = None

    kind: ClassVar[str] = "step"
    table: ClassVar[sa.Table] = steps_table
    children: ClassVar[tuple[sa.Table, str] | None] = (step_files_table, "step_seq")

    @classmethod
    def of(cls, name: str, *, inputs: Iterable[FileDigest] = (), outputs: Iterable[FileDigest] = (),
           params: dict[str, Any] | None = None, step_id: str | None = None,
           created_at: str | datetime | None = None) -> "Step":
        try:
            text = core.canonical_json(params or {}).decode("utf-8")
        except (TypeError, ValueError) as e:
            raise UserError(f"step {name!r}: parameters must be JSON (text, numbers, lists, objects): {e}") from None
        def files(items: Any) -> Any:  # a string is left for normalised() to refuse with a clear message
            return items if isinstance(items, (str, bytes)) else tuple(items)

        return cls(step_id, name, files(inputs), files(outputs), text, created_at)

    @property
    def key(self) -> str:
        return self.step_id or ""

    @property
    def parameters(self) -> dict[str, Any]:
        return json.loads(self.params)

    def describe(self) -> str:
        return f"step {self.name!r} ({(self.step_id or '')[:16]})"

    def fields(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "name": self.name,
            "params": self.params,
            "inputs": [list(f) for f in self.inputs],
            "outputs": [list(f) for f in self.outputs],
            "created_at": self.created_at,
        }

    def normalised(self, now: str) -> "Step":
        name = _text(self.name, "step name", required=True)
        what = f"step {name!r}"

        def files(items: Any, role: str) -> tuple[FileDigest, ...]:
            if isinstance(items, (str, bytes)):
                raise UserError(f"{what}: {role} must be a list of (name, sha256) pairs, not one string")
            out = []
            for item in items:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise UserError(f"{what}: each of its {role} is a (name, sha256) pair, not {item!r:.80}")
                out.append((_text(item[0], f"{what}: {role} name", required=True), _hex_hash(item[1], f"{what}: {role}")))
            return tuple(out)  # type: ignore[return-value]

        inputs, outputs = files(self.inputs, "inputs"), files(self.outputs, "outputs")
        try:
            params = core.canonical_json(json.loads(self.params)).decode("utf-8")
        except (TypeError, ValueError):
            raise UserError(f"{what}: params must be a JSON text (Step.of makes one from a dict)") from None
        body = {"name": name, "params": params, "inputs": [list(f) for f in inputs], "outputs": [list(f) for f in outputs]}
        step_id = _text(self.step_id, f"{what}: step_id") or core.content_hash(core.canonical_json(body))
        if len(step_id) > 64:
            raise UserError(f"{what}: step_id {step_id[:20]!r}… is longer than 64 characters")
        return Step(step_id, name, inputs, outputs, params, _timestamp(self.created_at, now, what))  # type: ignore[arg-type]

    def rows(self, seq: int) -> list[tuple[sa.Table, dict]]:
        out: list[tuple[sa.Table, dict]] = [(steps_table, {"seq": seq, "step_id": self.step_id, "name": self.name,
                                                           "params": self.params, "created_at": self.created_at})]
        for role, files in (("input", self.inputs), ("output", self.outputs)):
            out += [(step_files_table, {"step_seq": seq, "role": role, "position": i, "name": n, "digest": d})
                    for i, (n, d) in enumerate(files)]
        return out

    @classmethod
    def from_rows(cls, seq: int, row: dict, children: list[dict]) -> "Step":
        files: dict[str, list[tuple[int, FileDigest]]] = {r: [] for r in STEP_ROLES}
        for c in children:
            role = read_str(c, "role")
            if role not in files:
                raise Garbled(f"column role holds {role!r}, not one of {', '.join(STEP_ROLES)}")
            files[role].append((read_int(c, "position"), (read_str(c, "name"), read_str(c, "digest", hex64=True))))  # type: ignore[arg-type]
        inputs, outputs = (tuple(f for _, f in sorted(files[r])) for r in STEP_ROLES)
        return cls(read_str(row, "step_id"), read_str(row, "name"), inputs, outputs,  # type: ignore[arg-type]
                   read_str(row, "params"), read_str(row, "created_at"), seq)  # type: ignore[arg-type]


Record = Union[Document, Model, Snapshot, Step]
RECORDS: dict[str, type] = {cls.kind: cls for cls in (Document, Model, Snapshot, Step)}
KINDS = tuple(RECORDS)
KEY_COLUMNS = {"document": "content_hash", "model": "model_id", "snapshot": "name", "step": "step_id"}


def record_class(record: Any) -> type:
    """The record's class, or a TypeError naming what a ledger records."""
    if type(record) not in RECORDS.values():
        raise TypeError(f"a ledger records {', '.join(c.__name__ for c in RECORDS.values())}, not {type(record).__name__}")
    return type(record)
