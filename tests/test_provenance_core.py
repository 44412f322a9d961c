"""One provenance core: old ledgers, vaults and sidecars still verify; steps are recorded and checked.

``tests/data/provenance-v1`` holds a ledger and a vault written by the code before the provenance
core and the ledger package (commit 0d0d19a), with the ledger's head and tree root as it printed them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from collapselab.errors import UserError
from collapselab.provenance import core
from collapselab.provenance.ledger import Document, Ledger, Step, hash_content, verify
from collapselab.provenance.sth import TreeHead

V1 = Path(__file__).parent / "data" / "provenance-v1"
DIGEST = "ab" * 32


def old_ledger(tmp_path) -> tuple[Path, dict]:
    path = tmp_path / "old.sqlite"
    shutil.copyfile(V1 / "ledger.sqlite", path)
    return path, json.loads((V1 / "ledger-head.json").read_text())


def test_an_old_ledger_verifies_and_is_not_modified_by_verify(tmp_path):
    path, head = old_ledger(tmp_path)
    before = path.read_bytes()
    report = verify(path, expected_head=(head["head_seq"], head["head_hash"]),
                    expected_sth=TreeHead(head["tree_size"], head["root_hash"], head["head_hash"]))
    assert report.ok and report.entries == head["entries"] == 14 and report.snapshots == 2, str(report)
    assert path.read_bytes() == before  # verify opens read-only: no tables added, no journal mode changed
    with Ledger(path, create=False) as ledger:
        assert ledger.steps() == [] and ledger.step("x") is None
        assert ledger.synthetic_depth("m1") == 1 and ledger.ancestors("m1") == ["m0"]
        assert ledger.snapshot("gen1-train").size == 6
        assert ledger.document(hash_content("human text 0 — naïve café")).licence == "public-domain"


def test_an_old_ledger_gains_steps_and_still_extends_its_old_head(tmp_path):
    path, head = old_ledger(tmp_path)
    with Ledger(path) as ledger:  # opened for writing: the step tables are added, nothing else changes
        assert ledger.tree_head().root_hash == head["root_hash"]
        step = ledger.add_step("scan", inputs=[("a.jsonl", DIGEST)], outputs=[("a.jsonl.scan.parquet", "cd" * 32)],
                               params={"detector": "watermark", "fpr": 0.01})
        assert step.seq == 15 and ledger.steps() == [step]
    old = TreeHead(head["tree_size"], head["root_hash"], head["head_hash"])
    report = verify(path, expected_sth=old)
    assert report.ok and report.entries == 15, str(report)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE ledger_documents SET licence = 'proprietary' WHERE seq = 2")
    bad = verify(path, expected_sth=old)
    assert [(p.seq, p.what) for p in bad.problems] == [(2, "changed")]


def test_steps_are_idempotent_and_their_files_are_covered_by_the_hash(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as ledger:
        ledger.add_document(hash_content("x"), "human")
        a = ledger.add_step("filter", inputs=[("in.jsonl", DIGEST)], outputs=[("kept.jsonl", "cd" * 32), ("dropped.jsonl", "ef" * 32)],
                            params={"keep": "human"})
        again = ledger.add_step("filter", inputs=[("in.jsonl", DIGEST)], outputs=[("kept.jsonl", "cd" * 32), ("dropped.jsonl", "ef" * 32)],
                                params={"keep": "human"})
        assert again == a and len(ledger) == 2  # a rerun on the same files adds nothing
        b = ledger.add_step("filter", inputs=[("in.jsonl", DIGEST)], outputs=[("kept.jsonl", "cd" * 32)], params={"keep": "all"})
        assert b.seq == 3 and b.step_id != a.step_id and b.parameters == {"keep": "all"}
        assert [s.outputs for s in ledger.steps()] == [a.outputs, b.outputs]
        with pytest.raises(UserError, match="already entry 2"):
            ledger.append([Step.of("mix", step_id=a.step_id)])
    assert verify(path).ok
    for statement, what in (("UPDATE ledger_step_files SET digest = '" + "00" * 32 + "' WHERE step_seq = 2 AND role = 'output' AND position = 1", "changed"),
                            ("UPDATE ledger_step_files SET name = 'other.jsonl' WHERE step_seq = 2 AND role = 'input'", "changed"),
                            ("DELETE FROM ledger_step_files WHERE step_seq = 3", "changed"),
                            ("UPDATE ledger_steps SET params = '{\"keep\":\"none\"}' WHERE seq = 3", "changed"),
                            ("UPDATE ledger_step_files SET role = 'coffee' WHERE step_seq = 2 AND position = 0 AND role = 'input'", "unreadable")):
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as c:
            c.execute(statement)
        report = verify(copy)
        assert any(p.what == what and p.kind == "step" for p in report.problems), (statement, str(report))


@pytest.mark.parametrize("step, message", [
    (Step.of("scan", inputs="a.jsonl"), "list of"),
    (Step.of("scan", inputs=[("a.jsonl", "nothex")]), "not a SHA-256"),
    (Step.of("scan", outputs=[("a.jsonl",)]), "pair"),
    (Step.of("", inputs=[]), "step name"),
])
def test_bad_steps_are_user_errors_and_append_nothing(tmp_path, step, message):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(UserError, match=message):
            ledger.append([Document(hash_content("d"), "human"), step])
        assert len(ledger) == 0


def test_step_parameters_must_be_json():
    with pytest.raises(UserError, match="must be JSON"):
        Step.of("scan", params={"x": object()})
    with pytest.raises(UserError, match="must be JSON"):
        Step.of("scan", params={"x": float("nan")})


def test_an_old_vault_snapshot_still_verifies(tmp_path):
    from collapselab.provenance.vault import Vault

    copy = tmp_path / "vault"
    shutil.copytree(V1 / "vault", copy)
    vault = Vault(copy)
    snap = vault.snapshot("v1", check=True)
    assert snap.count == 2 and snap.merkle_root == "6cc6f50e80584d2ee403c51fc39b39ca1d0fc401ef6e6e77de16ee8f9eee9e4a"
    assert sorted(vault.texts("v1")) == ["A second one.", "The first human paragraph — with ünïcode."]
    (copy / "snapshots" / "v1.json").chmod(0o644)
    doc = json.loads((copy / "snapshots" / "v1.json").read_text())
    doc["count"] = 3
    (copy / "snapshots" / "v1.json").write_text(json.dumps(doc))
    with pytest.raises(UserError):
        Vault(copy).snapshot("v1", check=True)


def test_credentials_sidecars_signed_with_the_old_ascii_bytes_still_verify(tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from collapselab.provenance import credentials as cred

    creds = tmp_path / "c"
    cred.init_credentials(creds)
    shard = tmp_path / "s.jsonl"
    shard.write_text('{"text": "une phrase générée"}\n', encoding="utf-8")
    side = cred.sign_text_shard(shard, origin="synthetic", model_id="modèle-ü", generation=1, credentials_dir=creds)
    assert cred.verify(shard).ok
    doc = json.loads(side.read_text())
    signed = {"format": doc["format"], "payload": doc["payload"]}
    legacy = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    assert legacy != core.canonical_json(signed)  # the non-ASCII model id is spelled differently
    key = cred._load_signing(creds).key
    doc["signature"]["value"] = key.sign(legacy, ec.ECDSA(hashes.SHA256())).hex()
    side.write_text(cred._file_text(doc))
    assert cred.verify(shard).ok
    doc["payload"]["model_id"] = "modèle-v"
    side.write_text(cred._file_text(doc))
    assert not cred.verify(shard).ok


def test_secret_files_are_0600_never_overwritten_and_removed_when_the_write_fails(tmp_path, monkeypatch):
    import errno
    import os

    p = core.write_secret_file(tmp_path / "k", b"secret")
    assert p.stat().st_mode & 0o777 == 0o600 and p.read_bytes() == b"secret"
    with pytest.raises(UserError, match="never overwritten"):
        core.write_secret_file(p, b"other")
    assert p.read_bytes() == b"secret"
    os.chmod(p, 0o640)
    with pytest.raises(UserError, match="readable by others"):
        core.check_secret_file(p, "key", "")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        core.write_secret_file(tmp_path / "k2", b"secret")
    assert not (tmp_path / "k2").exists()


def test_canonical_json_is_sorted_compact_utf8_and_refuses_nan():
    assert core.canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'.encode("utf-8")
    with pytest.raises(ValueError):
        core.canonical_json({"x": float("nan")})
    assert core.content_hash("é") == core.content_hash("é".encode("utf-8")) == hash_content("é")
