"""Merkle proofs (RFC 9162) that the ledger and the vault hand out: a document in a snapshot (either's),
an entry in the ledger's tree of all entries, and one tree being a prefix of a later one. Each checks
itself with ``verify()``, from its own fields alone."""

from __future__ import annotations

from dataclasses import dataclass

from collapselab.provenance import merkle

__all__ = ["InclusionProof", "EntryProof", "ConsistencyProof", "hashes_root"]


def hashes_root(content_hashes) -> str:
    """The Merkle root (hex) over content hashes, each hash's 32 raw bytes one leaf, in the order given
    (a ledger snapshot and a vault snapshot keep theirs sorted)."""
    return merkle.merkle_root([bytes.fromhex(h) for h in content_hashes]).hex()


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
