"""The Merkle tree against RFC 6962 / 9162: hand-built trees, CT's published vectors, every proof."""

from __future__ import annotations

import hashlib

import pytest

from collapselab.provenance.merkle import (
    EMPTY_ROOT,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion_proof,
    verify_inclusion,
)


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH written exactly as RFC 6962 section 2.1 defines it (recursive split at k < n)."""
    n = len(leaves)
    if n == 0:
        return H(b"")
    if n == 1:
        return H(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return H(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) written exactly as RFC 6962 section 2.1.1 defines it."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return reference_path(m, leaves[:k]) + [reference_root(leaves[k:])]
    return reference_path(m - k, leaves[k:]) + [reference_root(leaves[:k])]


def data(n: int) -> list[bytes]:
    return [f"doc-{i}".encode() for i in range(n)]


# The Certificate Transparency test vectors (the same leaves and tree heads appear in
# certificate-transparency-go and transparency-dev/merkle): roots of the first n leaves.
CT_LEAVES = [bytes.fromhex(h) for h in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_hash_prefixes():
    assert leaf_hash(b"abc") == H(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == H(b"\x01" + b"L" * 32 + b"R" * 32)
    assert EMPTY_ROOT == H(b"") == merkle_root([])


def test_small_trees_by_hand():
    a, b, c, d, e = (leaf_hash(x) for x in [b"a", b"b", b"c", b"d", b"e"])
    assert merkle_root([b"a"]) == a
    assert merkle_root([b"a", b"b"]) == node_hash(a, b)
    # n=3 splits at k=2: ((a b) c), not (a (b c))
    assert merkle_root([b"a", b"b", b"c"]) == node_hash(node_hash(a, b), c)
    assert merkle_root([b"a", b"b", b"c", b"d"]) == node_hash(node_hash(a, b), node_hash(c, d))
    # n=5 splits at k=4: (((a b)(c d)) e)
    assert merkle_root([b"a", b"b", b"c", b"d", b"e"]) == node_hash(node_hash(node_hash(a, b), node_hash(c, d)), e)
    # proofs, by hand: leaf c of 5 needs d, (a b), e; leaf e of 5 needs the left subtree's root only
    assert inclusion_proof([b"a", b"b", b"c", b"d", b"e"], 2) == [d, node_hash(a, b), e]
    assert inclusion_proof([b"a", b"b", b"c", b"d", b"e"], 4) == [node_hash(node_hash(a, b), node_hash(c, d))]
    assert inclusion_proof([b"a"], 0) == []


def test_certificate_transparency_vectors():
    for n, want in enumerate(CT_ROOTS):
        assert merkle_root(CT_LEAVES[:n]).hex() == want
    # inclusion proofs published with them (0-based leaf index, tree of 8)
    assert [p.hex() for p in inclusion_proof(CT_LEAVES, 0)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in inclusion_proof(CT_LEAVES, 5)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]


@pytest.mark.parametrize("n", range(0, 66))
def test_root_matches_the_rfc_recursion(n):
    assert merkle_root(data(n)) == reference_root(data(n))
    hashed = [leaf_hash(x) for x in data(n)]
    assert merkle_root(hashed, hashed=True) == merkle_root(data(n))


@pytest.mark.parametrize("n", range(1, 34))
def test_every_proof_of_trees_1_to_33(n):
    leaves = data(n)
    root = merkle_root(leaves)
    for m in range(n):
        proof = inclusion_proof(leaves, m)
        assert proof == reference_path(m, leaves)
        lh = leaf_hash(leaves[m])
        assert verify_inclusion(lh, m, n, proof, root)
        # a wrong leaf, a wrong index, a wrong size, a wrong root all fail
        assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
        assert not verify_inclusion(leaves[m], m, n, proof, root)  # data, not its leaf hash
        for wrong in {m - 1, m + 1, m ^ 1, m ^ 2, n, -1} - {m}:
            assert not verify_inclusion(lh, wrong, n, proof, root), (n, m, wrong)
        # (a wrong tree size whose path has the same shape still verifies: the size is authenticated
        # with the root, in the ledger by the snapshot entry's hash, as by CT's signed tree head)
        assert not verify_inclusion(lh, m, 2 * n + 1, proof, root)
        assert not verify_inclusion(lh, m, n, proof, merkle_root(leaves[:-1] + [b"x"]))
        # a tampered, shortened or lengthened path fails
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
            assert not verify_inclusion(lh, m, n, bad, root)
        if proof:
            assert not verify_inclusion(lh, m, n, proof[:-1], root)
        assert not verify_inclusion(lh, m, n, proof + [root], root)


def test_malformed_proofs_are_rejected_not_raised():
    leaves = data(5)
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 1)
    lh = leaf_hash(leaves[1])
    assert root_from_inclusion_proof(lh, 1, 0, proof) is None
    assert root_from_inclusion_proof(lh[:31], 1, 5, proof) is None
    assert root_from_inclusion_proof(lh, 1, 5, [proof[0][:5]] + proof[1:]) is None
    assert not verify_inclusion(lh, 1, 5, proof, root[:31])
    with pytest.raises(IndexError):
        inclusion_proof(leaves, 5)
