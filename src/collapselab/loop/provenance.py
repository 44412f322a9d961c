"""Every run records its own provenance: a ledger in the run folder (``ledger.sqlite``).

What it records, per run (one shard = one data set, hashed as a whole):

- documents: the human training set and the unseen human reserve (origin ``human``), and each
  generation's output (origin ``synthetic``, with its generating model and generation);
- snapshots: each model's training set, as the shards it drew items from
  (``train:<model id>``), with a Merkle root;
- models: generation 0 of each seed (``seed<s>/gen0``, shared by the policies) and generation g
  of each chain (``<policy>/seed<s>/gen<g>``), trained on their snapshot.

So ``Ledger.synthetic_depth`` of generation g is the longest chain of model-made data behind it
(g under ``replace``), and ``collapselab lineage RUN`` draws the tree. Shards are recorded
rather than single sentences: a training snapshot says *which* data sets fed a model, not which
of their items. Appends repeat idempotently, so a resumed run never duplicates an entry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.loop.types import Origin
from collapselab.provenance.ledger import Document, Ledger, Model, Snapshot

HUMAN, POOL, VAULT = Origin.HUMAN, Origin.POOL, Origin.VAULT  # old names of the human origins


def dataset_hash(data) -> str:
    """SHA-256 of an in-memory data set: its token ids and offsets, or its array's shape and bytes.

    Not a document's content hash (:func:`collapselab.provenance.core.content_hash`, the SHA-256 of
    its bytes): a run records each data set as one document whose ``content_hash`` field holds this
    digest, so it matches an exported file only if that file's own SHA-256 is recorded too."""
    h = hashlib.sha256()
    if isinstance(data, TokenSequences):
        h.update(b"token-sequences\0")
        h.update(np.ascontiguousarray(data.offsets, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(data.tokens, dtype="<i4").tobytes())
    else:
        a = np.ascontiguousarray(data, dtype="<f8")
        h.update(f"array {a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


content_hash = dataset_hash  # its old name, kept for code that imports it; new code says dataset_hash


def model_id(policy: str, seed: int, generation: int) -> str:
    return f"seed{seed}/gen0" if generation == 0 else f"{policy}/seed{seed}/gen{generation}"


def output_snapshot(mid: str) -> str:
    """The snapshot naming model ``mid``'s output when another model had written the same content first."""
    return f"output:{mid}"


class RunLedger:
    """A run's ledger. ``record`` holds entries back until ``flush`` (which the run folder calls just
    before each checkpoint, see :mod:`collapselab.runfolder`) and ``close``: one transaction for many
    generations, instead of one each."""

    def __init__(self, path: str | Path, *, family: str, corpus_name: str, human: str, pool: str,
                 watermark_key_id: str | None = None, vault: str | None = None, vault_source: str = ""):
        self.ledger = Ledger(path)
        self.watermark_key_id = watermark_key_id
        self.vault = vault
        self.family = family
        self.corpus_name = corpus_name
        self.human, self.pool = human, pool
        self.pending: list = []
        self.seed_data: dict[int, tuple[str, str]] = {}  # seed -> (human, reserve) hashes, with resample_data
        self.outputs: dict[str, str] = {}  # model id -> the hash of its output, for its children's snapshots
        self.writers: dict[str, str | None] = {}  # content hash -> the model whose document it is (None: human data)
        self.ledger.append([
            Document(human, "human", f"{corpus_name}: generation 0's training set"),
            Document(pool, "human", f"{corpus_name}: unseen human reserve"),
        ] + ([Document(vault, "human", vault_source)] if vault else []))
        for doc in self.ledger.documents():  # the human data, and outputs written before a resume: one read, then a dict
            self.writers.setdefault(doc.content_hash, doc.model_id)

    def record(self, policy: str, seed: int, generation: int, sources: tuple[int, ...], output_hash: str,
               ancestors: tuple[str, ...] | None = None) -> None:
        """Generation ``generation`` of (policy, seed): trained on items of ``sources`` (origins:
        an :class:`~collapselab.loop.types.Origin`, or g >= 0 generation g's output), produced ``output_hash``.
        ``ancestors[g]``: in a tree, the label of the model at depth g above this one (a chain's
        ancestors all carry its own policy label)."""
        mid = model_id(policy, seed, generation)
        shards = sorted({self._shard(ancestors[s] if ancestors and s >= 0 else policy, seed, s) for s in sources})
        snap = f"train:{mid}"
        # the ledger counts data generations (human = 0): loop generation g makes data generation g+1
        output = Document(output_hash, "synthetic", f"samples of {mid}", model_id=mid, generation=generation + 1,
                          watermark_key_id=self.watermark_key_id)
        if self.writers.setdefault(output_hash, mid) != mid:
            # a model that wrote exactly what another already wrote (a collapsed, deterministic decoder), or
            # human data: the document is the first writer's entry, never changed; this model's output is named
            # by a snapshot of it
            output = Snapshot(output_snapshot(mid), (output_hash,))
        self.pending += [Snapshot(snap, shards), Model(mid, self.family, (), snap), output]
        self.outputs[mid] = output_hash

    def add_seed(self, seed: int, human: str, pool: str) -> None:
        """Seed ``seed`` has its own human training set and reserve (``resample_data``): record them."""
        self.seed_data[seed] = (human, pool)
        self.writers.setdefault(human, None)
        self.writers.setdefault(pool, None)
        # the same descriptions as the run's own split: a data set drawn twice (an empty reserve) is one document
        self.pending += [Document(human, "human", f"{self.corpus_name}: generation 0's training set"),
                         Document(pool, "human", f"{self.corpus_name}: unseen human reserve")]

    def flush(self) -> None:
        """Append what ``record`` holds, in one transaction."""
        if self.pending:
            self.ledger.append(self.pending)
            self.pending = []

    def _shard(self, policy: str, seed: int, origin: int) -> str:
        if origin == Origin.HUMAN:
            return self.seed_data.get(seed, (self.human, self.pool))[0]
        if origin == Origin.POOL:
            return self.seed_data.get(seed, (self.human, self.pool))[1]
        if origin == Origin.VAULT:
            return self.vault
        mid = model_id(policy, seed, origin)
        if mid not in self.outputs:  # made before a resume: in the ledger
            docs = self.ledger.documents(model_id=mid)
            self.outputs[mid] = docs[0].content_hash if docs else self.ledger.snapshot(output_snapshot(mid)).content_hashes[0]
        return self.outputs[mid]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.ledger.close()
