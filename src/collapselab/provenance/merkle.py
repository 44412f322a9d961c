"""Merkle trees as Certificate Transparency builds them (RFC 6962 section 2.1, RFC 9162 section 2.1).

A snapshot's Merkle root commits to its whole set of documents in 32 bytes; an *inclusion proof*
of about log2(n) hashes shows that one document is in the snapshot without revealing the others.
Hashing follows the RFCs exactly, so any CT-compatible verifier agrees with these roots:

* the hash of the empty tree is SHA-256 of nothing;
* a leaf is ``SHA-256(0x00 || data)``;
* an interior node is ``SHA-256(0x01 || left || right)``;
* a tree of n > 1 leaves splits at k, the largest power of two smaller than n: the left subtree
  holds the first k leaves (a perfect tree), the right one the rest.

A *consistency proof* (RFC 9162 section 2.1.4) shows that the tree of the first m leaves is a
prefix of the tree of n leaves: that a log only grew between two heads, nothing in it was
changed, removed or reordered.

The functions below build the tree level by level: pair up the hashes of a level and carry an
unpaired last hash up unchanged. That gives the same tree as the RFC's recursive split, in
O(n) hashes and without recursion.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Sequence

__all__ = [
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "merkle_root",
    "inclusion_proof",
    "root_from_inclusion_proof",
    "verify_inclusion",
    "consistency_proof",
    "verify_consistency",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (as a one-element level)."""
    level = list(leaf_hashes)
    levels = [level]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the unpaired last node moves up unchanged
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(leaves: Sequence[bytes], *, hashed: bool = False) -> bytes:
    """The Merkle Tree Hash (MTH) of ``leaves``.

    ``leaves`` are the data items (each is leaf-hashed here) or, with ``hashed=True``, leaf hashes
    already computed with :func:`leaf_hash`.
    """
    if not leaves:
        return EMPTY_ROOT
    hashes = list(leaves) if hashed else [leaf_hash(d) for d in leaves]
    return _levels(hashes)[-1][0]


def inclusion_proof(leaves: Sequence[bytes], index: int, *, hashed: bool = False) -> list[bytes]:
    """The audit path ``PATH(index, D[n])`` of RFC 6962 section 2.1.1: sibling hashes, leaf upwards."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} is outside a tree of {n} leaves")
    hashes = list(leaves) if hashed else [leaf_hash(d) for d in leaves]
    proof: list[bytes] = []
    i = index
    for level in _levels(hashes)[:-1]:
        sibling = i ^ 1
        if sibling < len(level):  # the last node of an odd level has no sibling at this height
            proof.append(level[sibling])
        i //= 2
    return proof


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` leads to from leaf hash ``leaf``, or None if the proof is malformed.

    This is the algorithm of RFC 9162 section 2.1.3.2, steps 1 to 4.
    """
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # last node of its level, no right sibling: climb until it is a right child
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # the proof was too short for a tree of this size
        return None
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if ``proof`` shows that leaf hash ``leaf`` is leaf ``index`` of the ``size``-leaf tree ``root``.

    ``leaf`` is the leaf *hash* (``leaf_hash(data)``), as in RFC 9162 section 2.1.3.2.
    """
    r = root_from_inclusion_proof(leaf, index, size, proof)
    return r is not None and hmac.compare_digest(r, root)


def _subtree_root(hashes: Sequence[bytes]) -> bytes:
    return _levels(hashes)[-1][0]


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def consistency_proof(leaves: Sequence[bytes], m: int, n: int | None = None, *, hashed: bool = False) -> list[bytes]:
    """``PROOF(m, D[n])`` of RFC 9162 section 2.1.4.1: the tree of the first ``m`` leaves is a
    prefix of the tree of the first ``n`` (default: all of ``leaves``). Empty when m is 0 or n."""
    n = len(leaves) if n is None else n
    if not 0 <= m <= n <= len(leaves):
        raise IndexError(f"no consistency proof from size {m} to size {n} in a tree of {len(leaves)} leaves")
    hashes = list(leaves[:n]) if hashed else [leaf_hash(d) for d in leaves[:n]]
    if m == 0 or m == n:
        return []
    return _subproof(m, hashes, True)


def _subproof(m: int, hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """``SUBPROOF(m, D[n], b)``; ``b``: whether D[0:m] is a subtree of the tree the proof started from."""
    n = len(hashes)
    if m == n:
        return [] if b else [_subtree_root(hashes)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return _subproof(m, hashes[:k], b) + [_subtree_root(hashes[k:])]
    return _subproof(m - k, hashes[k:], False) + [_subtree_root(hashes[:k])]


def verify_consistency(m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]) -> bool:
    """True if ``proof`` shows that the ``m``-leaf tree ``root_m`` is a prefix of the ``n``-leaf tree
    ``root_n``: the algorithm of RFC 9162 section 2.1.4.2.

    With m == n the proof must be empty and the roots equal; with m == 0 the proof must be empty
    and ``root_m`` the empty tree's root (every tree extends the empty one).
    """
    if not 0 <= m <= n or any(len(p) != HASH_SIZE for p in proof):
        return False
    if m == 0 or m == n:
        return not proof and hmac.compare_digest(root_m, EMPTY_ROOT if m == 0 else root_n)
    path = list(proof)
    if not path:  # step 1
        return False
    if m & (m - 1) == 0:  # step 2: m is a power of two, its tree is a node of the new tree
        path.insert(0, root_m)
    fn, sn = m - 1, n - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, root_m) and hmac.compare_digest(sr, root_n)  # step 7
