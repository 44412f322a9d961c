"""Signed tree heads over the ledger (Certificate Transparency style): RFC 9162 consistency proofs,
Ed25519 heads, entry inclusion proofs, heads in a run's summary.json, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat

import pytest
from collapselab.provenance import merkle
from collapselab.provenance.keys import new_signing_key_file
from collapselab.provenance.ledger import Ledger, hash_content
from collapselab.provenance.merkle import consistency_proof, leaf_hash, merkle_root, node_hash, verify_consistency
from collapselab.provenance.sth import TreeHead, head_bytes, load_head, verify_head


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 section 2.1 defines it."""
    if not leaves:
        return H(b"")
    if len(leaves) == 1:
        return H(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return H(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:]))


def reference_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) exactly as RFC 9162 section 2.1.4.1 defines it."""
    n = len(leaves)
    if m == n:
        return [] if b else [reference_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return reference_subproof(m, leaves[:k], b) + [reference_root(leaves[k:])]
    return reference_subproof(m - k, leaves[k:], False) + [reference_root(leaves[:k])]


def data(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


CT_LEAVES = [bytes.fromhex(h) for h in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]


# ------------------------------------------------------------------------------ consistency proofs


def test_consistency_of_small_trees_by_hand():
    d = data(3)
    a, b, c = (leaf_hash(x) for x in d)
    # tree of 2 = node(a, b); tree of 3 = node(node(a, b), c): the proof from 2 to 3 is [c]
    assert consistency_proof(d, 2, 3) == [c]
    assert verify_consistency(2, 3, node_hash(a, b), node_hash(node_hash(a, b), c), [c])
    # from 1 to 3: the left subtree of 2 leaves splits into a (known) and b, then c
    assert consistency_proof(d, 1, 3) == [b, c]
    assert verify_consistency(1, 3, a, merkle_root(d), [b, c])
    # from 1 to 2: [b]
    assert consistency_proof(d, 1, 2) == [b]
    # equal sizes and the empty tree: empty proofs
    assert consistency_proof(d, 3, 3) == [] and verify_consistency(3, 3, merkle_root(d), merkle_root(d), [])
    assert consistency_proof(d, 0, 3) == [] and verify_consistency(0, 3, merkle.EMPTY_ROOT, merkle_root(d), [])
    assert not verify_consistency(3, 3, merkle_root(d[:2]), merkle_root(d), [])


def test_certificate_transparency_consistency_vectors():
    # the consistency proofs published with CT's 8-leaf test tree (certificate-transparency-go, transparency-dev/merkle)
    assert [p.hex() for p in consistency_proof(CT_LEAVES, 1, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in consistency_proof(CT_LEAVES, 6, 8)] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in consistency_proof(CT_LEAVES, 2, 5)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]


def test_every_consistency_proof_up_to_40_leaves():
    leaves = data(40)
    roots = [merkle_root(leaves[:n]) for n in range(41)]
    for n in range(1, 41):
        for m in range(1, n + 1):
            proof = consistency_proof(leaves, m, n)
            assert proof == reference_subproof(m, leaves[:n], True)
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)
            for i in range(len(proof)):  # a flipped byte anywhere in the proof fails
                bad = list(proof)
                bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                assert not verify_consistency(m, n, roots[m], roots[n], bad), (m, n, i)
            flipped = bytes([roots[m][0] ^ 1]) + roots[m][1:]
            assert not verify_consistency(m, n, flipped, roots[n], proof), (m, n)
            assert not verify_consistency(m, n, roots[m], bytes([roots[n][0] ^ 1]) + roots[n][1:], proof)
            if m < n:  # a dropped or an extra hash: refused, never raised
                assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
                assert not verify_consistency(m, n, roots[m], roots[n], proof + [roots[0]])
    assert not verify_consistency(5, 4, roots[5], roots[4], [])
    assert not verify_consistency(2, 3, roots[2], roots[3], [b"short"])


# ------------------------------------------------------------------------------ the ledger's tree


def build(path, n_docs: int = 5) -> Ledger:
    ledger = Ledger(path)
    hashes = [hash_content(f"doc {i}") for i in range(n_docs)]
    ledger.append([_doc(h) for h in hashes])
    ledger.add_snapshot("s0", hashes[:3])
    ledger.add_model("m0", "ngram", snapshot="s0")
    return ledger


def _doc(h: str):
    from collapselab.provenance.ledger import Document

    return Document(h, "human", "test", created_at="2026-01-01T00:00:00Z")


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "signing.key"
    pub = new_signing_key_file(path)
    return path, pub


def entry_hashes(ledger: Ledger) -> list[bytes]:
    with sqlite3.connect(ledger.path) as c:
        return [bytes.fromhex(h) for (h,) in c.execute("SELECT entry_hash FROM ledger_entries ORDER BY seq")]


def test_signing_key_files(key, tmp_path):
    path, pub = key
    assert pub == tmp_path / "signing.key.pub"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and b"PRIVATE KEY" in path.read_bytes()
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE" not in pub.read_bytes()
    with pytest.raises(Exception, match="exists already"):
        new_signing_key_file(path)
    os.chmod(path, 0o644)
    with Ledger(tmp_path / "l.sqlite") as ledger, pytest.raises(Exception, match="readable by others"):
        ledger.sign_head(path)


def test_tree_head_is_the_merkle_root_over_entry_hashes(tmp_path):
    with build(tmp_path / "l.sqlite") as ledger:
        head = ledger.tree_head()
        leaves = entry_hashes(ledger)
        assert head.tree_size == len(leaves) == 7
        assert bytes.fromhex(head.root_hash) == reference_root(leaves)
        assert head.entry_hash == ledger.head()[1] == leaves[-1].hex()
    with Ledger(tmp_path / "empty.sqlite") as empty:
        assert empty.tree_head().tree_size == 0 and empty.tree_head().root_hash == H(b"").hex()


def test_signed_head_is_ct_tree_head_signature(tmp_path, key):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    path, pub = key
    public = load_pem_public_key(pub.read_bytes())
    with build(tmp_path / "l.sqlite") as ledger:
        sth = ledger.sign_head(path, timestamp=1_767_225_600_000)
    assert sth.signed and sth.timestamp == 1_767_225_600_000 and len(sth.key_id) == 16
    # the signed bytes, by hand: version 0, type tree_hash 1, uint64 timestamp, uint64 size, root
    signed = (b"\x00\x01" + (1_767_225_600_000).to_bytes(8, "big") + (7).to_bytes(8, "big") + bytes.fromhex(sth.root_hash))
    assert head_bytes(7, sth.root_hash, sth.timestamp) == signed and len(signed) == 50
    public.verify(bytes.fromhex(sth.signature), signed)  # raises if wrong
    assert verify_head(sth, public)
    assert not verify_head(TreeHead(8, sth.root_hash, None, sth.timestamp, sth.key_id, sth.signature), public)
    assert not verify_head(TreeHead(7, sth.root_hash, None, sth.timestamp + 1, sth.key_id, sth.signature), public)
    assert not verify_head(TreeHead(7, sth.root_hash), public)  # unsigned
    other = Ed25519PublicKey.from_public_bytes(bytes(32))
    assert not verify_head(sth, other)
    assert TreeHead.from_dict(json.loads(json.dumps(sth.to_dict()))) == sth
    with pytest.raises(Exception, match="root_hash"):
        TreeHead.from_dict({"tree_size": 1, "root_hash": "xyz"})


def test_entry_inclusion_and_consistency_proofs(tmp_path):
    with build(tmp_path / "l.sqlite") as ledger:
        root = ledger.tree_head().root_hash
        for seq in range(1, 8):
            proof = ledger.prove_entry(seq)
            assert proof.verify() and proof.root_hash == root and proof.index == seq - 1
            assert not type(proof)(seq, "0" * 64, proof.index, 7, proof.path, root).verify()
        with pytest.raises(Exception, match="no entry 8"):
            ledger.prove_entry(8)
        for old in range(0, 8):
            c = ledger.consistency(old)
            assert c.verify() and c.new_size == 7 and c.new_root == root
        with pytest.raises(Exception, match="no consistency proof"):
            ledger.consistency(8)


def test_verify_against_an_earlier_sth(tmp_path, key):
    from collapselab.provenance.keys import load_public_key

    path, pub = key
    public = load_public_key(pub)
    ledger = build(tmp_path / "l.sqlite")
    sth = ledger.sign_head(path)
    ledger.append([_doc(hash_content("later"))])  # the ledger grows: it still extends the head
    report = ledger.verify(expected_sth=sth, public_key=public)
    assert report.ok, str(report)
    assert ledger.verify(expected_sth=sth).ok

    forged = TreeHead(sth.tree_size, sth.root_hash, None, sth.timestamp, sth.key_id, "00" * 64)
    assert [p.what for p in ledger.verify(expected_sth=forged, public_key=public).problems] == ["signature"]

    with sqlite3.connect(ledger.path) as c:  # cut the last three entries off (model, snapshot, document)
        for t, col in (("ledger_entries", "seq"), ("ledger_documents", "seq"), ("ledger_models", "seq"),
                       ("ledger_snapshots", "seq"), ("ledger_snapshot_members", "snapshot_seq")):
            c.execute(f"DELETE FROM {t} WHERE {col} >= 6")
    assert ledger.verify().ok  # a hash chain alone does not see it
    assert [p.what for p in ledger.verify(expected_sth=sth, public_key=public).problems] == ["truncated"]
    ledger.close()


def test_a_recomputed_rewrite_is_inconsistent_with_the_sth(tmp_path, key):
    path, _ = key
    with build(tmp_path / "a.sqlite") as ledger:
        sth = ledger.sign_head(path)
    # the same entries, rewritten from scratch with one licence changed: a valid chain of its own
    from collapselab.provenance.ledger import Document

    with Ledger(tmp_path / "b.sqlite") as other:
        hashes = [hash_content(f"doc {i}") for i in range(5)]
        other.append([Document(h, "human", "test", licence="cc0" if i == 0 else None,
                               created_at="2026-01-01T00:00:00Z") for i, h in enumerate(hashes)])
        other.add_snapshot("s0", hashes[:3])
        other.add_model("m0", "ngram", snapshot="s0")
        other.add_document(hash_content("more"), "human")
        report = other.verify(expected_sth=sth)
    assert [p.what for p in report.problems] == ["inconsistent"]


# ------------------------------------------------------------------------------ the command line


@pytest.fixture
def cli(run_main, tmp_path):
    """Run ``collapselab ARGS`` through its main(); (exit status, stdout + stderr)."""
    def go(*args) -> tuple[int, str]:
        code, out, err = run_main(list(args), tmp_path)
        return code, out + err
    return go


def test_cli_sign_verify_prove_consistency(tmp_path, key, cli):
    path, pub = key
    build(tmp_path / "l.sqlite").close()
    code, out = cli("ledger", "head", tmp_path / "l.sqlite", "--sign", path, "--json")
    sth = json.loads(out)
    assert code == 0 and sth["tree_size"] == 7 and sth["head"] == f"7:{sth['entry_hash']}" and len(sth["signature"]) == 128
    (tmp_path / "sth.json").write_text(out)
    code, out = cli("ledger", "verify", tmp_path / "l.sqlite", "--sth", tmp_path / "sth.json", "--public-key", pub)
    assert code == 0 and "valid ledger" in out and "signature checked" in out
    code, out = cli("ledger", "prove", tmp_path / "l.sqlite", 3, "--json")
    proof = json.loads(out)
    assert code == 0 and proof["ok"] and proof["seq"] == 3 and proof["root_hash"] == sth["root_hash"]
    code, out = cli("ledger", "consistency", tmp_path / "l.sqlite", 3, "--json")
    c = json.loads(out)
    assert code == 0 and c["ok"] and c["old_size"] == 3 and c["new_root"] == sth["root_hash"]
    assert verify_consistency(3, 7, bytes.fromhex(c["old_root"]), bytes.fromhex(c["new_root"]),
                              [bytes.fromhex(p) for p in c["path"]])
    code, out = cli("ledger", "prove", tmp_path / "l.sqlite", 99)
    assert code == 2 and "no entry 99" in out

    with sqlite3.connect(tmp_path / "l.sqlite") as c:  # tail truncation
        c.execute("DELETE FROM ledger_entries WHERE seq = 7")
        c.execute("DELETE FROM ledger_models WHERE seq = 7")
    code, out = cli("ledger", "verify", tmp_path / "l.sqlite", "--sth", tmp_path / "sth.json", "--public-key", pub)
    assert code == 1 and "truncated" in out
    code, out = cli("ledger", "verify", tmp_path / "l.sqlite")
    assert code == 0  # without the head, the cut is invisible


def test_run_summary_holds_the_final_head_and_verify_reads_it(tmp_path, cli):
    import collapselab as cl

    run = cl.run_experiment({"family": "gaussian", "generations": 2, "policies": ["replace"], "seeds": [0]},
                            out=tmp_path / "run", jobs=1)
    head = load_head(run.path / "summary.json")
    with Ledger(run.path / "ledger.sqlite", create=False) as ledger:
        assert head == ledger.tree_head() and not head.signed and head.tree_size == len(ledger)
    code, out = cli("ledger", "verify", run.path / "ledger.sqlite")
    assert code == 0 and "checked against the tree head" in out and "summary.json" in out
    with sqlite3.connect(run.path / "ledger.sqlite") as c:  # cut the newest entry off
        seq, kind = c.execute("SELECT seq, kind FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
        c.execute("DELETE FROM ledger_entries WHERE seq = ?", (seq,))
        c.execute(f"DELETE FROM ledger_{kind}s WHERE seq = ?", (seq,))
    code, out = cli("ledger", "verify", run.path / "ledger.sqlite", "--json")
    r = json.loads(out)
    assert code == 1 and [p["what"] for p in r["problems"]] == ["truncated"] and r["tree_head_file"].endswith("summary.json")


def test_keys_new_signing_cli(tmp_path, cli):
    code, out = cli("keys", "new-signing", tmp_path / "k")
    assert code == 0 and "key id" in out and (tmp_path / "k.pub").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    code, out = cli("keys", "new-signing", tmp_path / "k")
    assert code != 0 and "exists already" in out


def test_run_head_is_signed_when_a_key_is_given(tmp_path, key):
    from collapselab.provenance.keys import load_public_key
    from collapselab.provenance.ledger import run_head

    path, pub = key
    build(tmp_path / "l.sqlite").close()
    plain = TreeHead.from_dict(run_head(tmp_path / "l.sqlite"))
    signed = TreeHead.from_dict(run_head(tmp_path / "l.sqlite", path))
    assert not plain.signed and signed.signed and verify_head(signed, load_public_key(pub))
    assert (signed.tree_size, signed.root_hash, signed.entry_hash) == (plain.tree_size, plain.root_hash, plain.entry_hash)
