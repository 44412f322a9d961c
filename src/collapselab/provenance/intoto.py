"""The ledger's lineage as in-toto attestations: DSSE-signed in-toto Statements (v1).

One envelope per model that has a training snapshot, and one per snapshot no model was trained
on. Each Statement's subjects are the snapshot's documents (shards), ``{"name": HASH, "digest":
{"sha256": HASH}}``; its predicate (type :data:`PREDICATE_TYPE`) records the lineage::

    {"model": {"id", "family", "parents", "ledgerSeq"} or null,
     "trainingSnapshot": {"name", "merkleRoot", "size", "ledgerSeq"},
     "ledger": {"treeSize", "rootHash"}}          # the ledger's tree head when exported

And one per pipeline step (``scan``, ``filter``, ``mix`` run with ``--ledger``) that wrote a file:
its subjects are the files it wrote, ``{"name": PATH, "digest": {"sha256": ...}}``, and its
predicate (type :data:`STEP_PREDICATE_TYPE`, in the spirit of SLSA provenance) names what it read::

    {"step": {"name", "id", "ledgerSeq", "parameters"},
     "materials": [{"name": PATH, "digest": {"sha256": ...}}, ...],
     "ledger": {"treeSize", "rootHash"}}

The envelope is DSSE (https://github.com/secure-systems-lab/dsse): ``payloadType``
``application/vnd.in-toto+json``, ``payload`` the Statement's JSON in base64, and one Ed25519
signature over ``PAE(payloadType, payload)`` with the key id of
:func:`collapselab.provenance.core.key_id`. Any DSSE verifier (securesystemslib, in-toto,
sigstore) checks it with the signer's public key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from collapselab.provenance import core
from collapselab.provenance.ledger import Ledger, Snapshot

__all__ = ["PAYLOAD_TYPE", "STATEMENT_TYPE", "PREDICATE_TYPE", "STEP_PREDICATE_TYPE", "pae", "statements", "sign_envelope", "verify_envelope",
           "export_in_toto"]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://collapselab.dev/attestation/lineage/v1"
STEP_PREDICATE_TYPE = "https://collapselab.dev/attestation/pipeline-step/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _snapshot_json(snap: Snapshot) -> dict[str, Any]:
    return {"name": snap.name, "merkleRoot": snap.merkle_root, "size": snap.size, "ledgerSeq": snap.seq}


def statements(ledger: Ledger) -> list[dict[str, Any]]:
    """The in-toto Statements of :func:`export_in_toto`, unsigned: models, untrained snapshots, steps (each in ledger order)."""
    head = ledger.tree_head()
    snapshots = {s.name: s for s in ledger.snapshots()}
    ledger_json = {"treeSize": head.tree_size, "rootHash": head.root_hash}
    out = []

    def statement(snap: Snapshot, model: dict[str, Any] | None) -> dict[str, Any]:
        subjects = [{"name": h, "digest": {"sha256": h}} for h in snap.content_hashes]
        return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
                "predicate": {"model": model, "trainingSnapshot": _snapshot_json(snap), "ledger": ledger_json}}

    trained_on = set()
    for m in ledger.models():
        snap = snapshots.get(m.snapshot or "")
        if snap is None or not snap.content_hashes:  # no data to attest: a Statement needs a subject
            continue
        trained_on.add(snap.name)
        out.append(statement(snap, {"id": m.model_id, "family": m.family, "parents": list(m.parents), "ledgerSeq": m.seq}))
    out += [statement(s, None) for s in snapshots.values() if s.name not in trained_on and s.content_hashes]
    for step in ledger.steps():
        if not step.outputs:  # a Statement needs a subject
            continue
        out.append({"_type": STATEMENT_TYPE, "subject": _files(step.outputs), "predicateType": STEP_PREDICATE_TYPE,
                    "predicate": {"step": {"name": step.name, "id": step.step_id, "ledgerSeq": step.seq,
                                           "parameters": step.parameters},
                                  "materials": _files(step.inputs), "ledger": ledger_json}})
    return out


def _files(files) -> list[dict[str, Any]]:
    return [{"name": name, "digest": {"sha256": digest}} for name, digest in files]


def sign_envelope(statement: dict[str, Any], private_key) -> dict[str, Any]:
    """A DSSE envelope around ``statement``, signed with an Ed25519 private key."""
    payload = core.canonical_json(statement)
    sig = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": PAYLOAD_TYPE,
            "signatures": [{"keyid": core.key_id(private_key.public_key()), "sig": base64.b64encode(sig).decode("ascii")}]}


def verify_envelope(envelope: dict[str, Any], public_key) -> dict[str, Any] | None:
    """The Statement in ``envelope`` if one of its signatures is ``public_key``'s, else None."""
    from cryptography.exceptions import InvalidSignature

    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        for s in envelope["signatures"]:
            try:
                public_key.verify(base64.b64decode(s["sig"], validate=True), pae(envelope["payloadType"], payload))
            except InvalidSignature:
                continue
            return json.loads(payload)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def export_in_toto(ledger: Ledger, private_key) -> list[dict[str, Any]]:
    """One signed DSSE envelope per model with a training snapshot, per untrained snapshot and per step that wrote a file."""
    return [sign_envelope(s, private_key) for s in statements(ledger)]
