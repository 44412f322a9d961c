"""`ledger export --format in-toto`: DSSE-signed in-toto Statements, checked with securesystemslib
(an independent DSSE implementation from PyPI)."""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("securesystemslib")  # in the `test` extra

from securesystemslib.dsse import Envelope  # noqa: E402
from securesystemslib.exceptions import VerificationError  # noqa: E402
from securesystemslib.signer import SSlibKey  # noqa: E402

from collapselab.provenance.intoto import PAYLOAD_TYPE, PREDICATE_TYPE, export_in_toto, pae, verify_envelope  # noqa: E402
from collapselab.provenance.keys import load_public_key, load_signing_key, new_signing_key_file, signing_key_id  # noqa: E402
from collapselab.provenance.ledger import Document, Ledger, hash_content  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    key = tmp_path / "k"
    pub = new_signing_key_file(key)
    ledger = Ledger(tmp_path / "l.sqlite")
    human = [hash_content(f"human {i}") for i in range(3)]
    ledger.append([Document(h, "human", "corpus") for h in human])
    ledger.add_snapshot("train:g0", human)
    ledger.add_model("g0", "ngram", snapshot="train:g0")
    out = hash_content("samples of g0")
    ledger.add_document(out, "synthetic", model_id="g0", generation=1)
    ledger.add_snapshot("train:g1", [out, human[0]])
    ledger.add_model("g1", "ngram", parents=["g0"], snapshot="train:g1")
    ledger.add_snapshot("held-out", human[1:])  # no model trained on it
    yield ledger, key, pub, human, out
    ledger.close()


def envelope(d: dict) -> Envelope:
    """securesystemslib's Envelope of ``d`` (a copy: Envelope.from_dict rewrites its input)."""
    return Envelope.from_dict(json.loads(json.dumps(d)))


def independent_key(pub) -> SSlibKey:
    public = load_public_key(pub)
    return SSlibKey.from_crypto(public, keyid=signing_key_id(public))


def test_envelopes_verify_with_securesystemslib(setup):
    ledger, key, pub, human, out = setup
    envelopes = export_in_toto(ledger, load_signing_key(key))
    assert len(envelopes) == 3
    statements = []
    for e in envelopes:
        env = envelope(e)
        assert env.payload_type == PAYLOAD_TYPE == "application/vnd.in-toto+json"
        verified = env.verify([independent_key(pub)], 1)
        assert list(verified) == [signing_key_id(load_public_key(pub))]
        statements.append(json.loads(env.payload))
    g0, g1, held = statements
    for s in statements:
        assert s["_type"] == "https://in-toto.io/Statement/v1" and s["predicateType"] == PREDICATE_TYPE
        assert s["predicate"]["ledger"] == {"treeSize": len(ledger), "rootHash": ledger.tree_head().root_hash}
    assert sorted(x["digest"]["sha256"] for x in g0["subject"]) == sorted(human)
    assert g0["predicate"]["model"] == {"id": "g0", "family": "ngram", "parents": [], "ledgerSeq": 5}
    snap = ledger.snapshot("train:g0")
    assert g0["predicate"]["trainingSnapshot"] == {"name": "train:g0", "merkleRoot": snap.merkle_root, "size": 3, "ledgerSeq": 4}
    assert {x["digest"]["sha256"] for x in g1["subject"]} == {out, human[0]}
    assert g1["predicate"]["model"]["parents"] == ["g0"] and g1["predicate"]["trainingSnapshot"]["name"] == "train:g1"
    assert held["predicate"]["model"] is None and held["predicate"]["trainingSnapshot"]["name"] == "held-out"
    assert all(verify_envelope(e, load_public_key(pub)) is not None for e in envelopes)


def test_tampered_envelopes_fail_the_independent_check(setup, tmp_path):
    ledger, key, pub, human, _ = setup
    e = export_in_toto(ledger, load_signing_key(key))[0]
    statement = json.loads(base64.b64decode(e["payload"]))
    statement["subject"].pop()  # hide a training document
    forged = {**e, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}
    with pytest.raises(VerificationError):
        envelope(forged).verify([independent_key(pub)], 1)
    assert verify_envelope(forged, load_public_key(pub)) is None
    other = tmp_path / "other"
    with pytest.raises(VerificationError):  # the right envelope, someone else's key
        envelope(e).verify([independent_key(new_signing_key_file(other))], 1)
    # the signature covers DSSE's PAE, not the bare payload
    assert pae("t", b"ab") == b"DSSEv1 1 t 2 ab"


def test_cli_export(setup, tmp_path, run_main):
    ledger, key, pub, _, _ = setup
    code, out, err = run_main(["ledger", "export", ledger.path, "--format", "in-toto", "--signing-key", key, "--out", "att.jsonl"], tmp_path)
    assert code == 0 and "3 DSSE envelope(s)" in out, err
    lines = (tmp_path / "att.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        envelope(json.loads(line)).verify([independent_key(pub)], 1)
    code, _, err = run_main(["ledger", "export", ledger.path, "--format", "spdx", "--key", key, "--out", "x"], tmp_path)
    assert code == 2 and "in-toto" in err
