"""The human-data vault: content addressing, dedup, signed snapshots, tamper detection, bad input.

CLI tests go through ``collapselab.cli.main`` (the real one-line-error / exit-2 path) with its
``app`` swapped for a small app that mounts ``vault_app``, so they do not depend on cli.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from collapselab.corpus.readers import read_documents
from collapselab.errors import UserError
from collapselab.provenance import merkle
from collapselab.provenance.vault import Vault, content_hash, init_vault
from collapselab.provenance.vault_cli import vault_app

from conftest import make_documents


@pytest.fixture
def vcli(monkeypatch, run_main):
    from collapselab import cli as cli_module

    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:  # keeps `vault` a sub-command even though it is the only group
        pass

    app.add_typer(vault_app, name="vault")
    monkeypatch.setattr(cli_module, "app", app)

    def go(args: list, cwd: Path) -> tuple[int, str, str]:
        return run_main(["vault", *args], cwd)

    return go


def _add_kw(**kw):
    return {"source": "test", "licence": "CC0", "captured_before": "2020-01-01", **kw}


@pytest.fixture
def vault(tmp_path) -> Vault:
    v = init_vault(tmp_path / "v")
    docs = make_documents(12, 3, seed=1)
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    v.add([tmp_path / "docs.jsonl"], **_add_kw())
    return v


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_writable_and_edit(p: Path, edit) -> None:
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    edit(data)
    p.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------- adding


def test_add_dedups_and_objects_are_content_addressed_and_read_only(tmp_path):
    v = init_vault(tmp_path / "v")
    (tmp_path / "a.txt").write_text("same text", encoding="utf-8")
    (tmp_path / "b.txt").write_text("same text", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "same text"}) + "\n" + json.dumps({"body": "other"}) + "\n", encoding="utf-8")
    r = v.add([tmp_path / "a.txt", tmp_path / "b.txt"], **_add_kw())
    assert (r.added, r.present) == (1, 1)
    r = v.add([tmp_path / "c.jsonl"], text_field="body", **_add_kw())
    assert (r.added, r.present) == (1, 1)
    h = content_hash("same text")
    obj = v.object_path(h)
    assert obj == tmp_path / "v" / "objects" / h[:2] / h[2:]
    assert obj.read_bytes() == b"same text"
    assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert v.hashes() == sorted([h, content_hash("other")])
    rec = v.records()[h]
    assert rec["source"] == "test" and rec["licence"] == "CC0" and rec["captured_before"] == "2020-01-01"
    assert rec["where"].endswith("a.txt") and "added_at" in rec
    assert len(list(v.index())) == 2  # one index line per object


def test_add_from_txt_folder_jsonl_and_parquet(tmp_path):
    v = init_vault(tmp_path / "v")
    folder = tmp_path / "txt"
    folder.mkdir()
    for i in range(3):
        (folder / f"d{i}.txt").write_text(f"document {i}", encoding="utf-8")
    (tmp_path / "x.jsonl").write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(4)), encoding="utf-8")
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(5)]}), tmp_path / "x.parquet")
    r = v.add([folder, tmp_path / "x.jsonl", tmp_path / "x.parquet"], **_add_kw())
    assert (r.added, r.present) == (12, 0)
    assert (v.add([folder], **_add_kw()).present) == 3


@pytest.mark.parametrize("bad", ["2020-13-01", "yesterday", "2020/01/01", "20200101"])
def test_bad_date_names_the_flag_and_writes_nothing(vcli, tmp_path, bad):
    init_vault(tmp_path / "v")
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    before = _all_files(tmp_path / "v")
    code, out, err = vcli(["add", "a.txt", "--source", "s", "--licence", "l", "--captured-before", bad, "--vault", "v"], tmp_path)
    assert code == 2 and "--captured-before" in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert _all_files(tmp_path / "v") == before


# --------------------------------------------------------------------------- seal and verify


def test_seal_verify_and_inclusion_proofs(vault):
    s = vault.seal("s1")
    assert s.count == len(s.hashes) == 12 and list(s.hashes) == sorted(s.hashes)
    assert s.merkle_root == merkle.merkle_root([bytes.fromhex(h) for h in s.hashes]).hex()
    assert stat.S_IMODE(vault.snapshot_path("s1").stat().st_mode) == 0o444
    report = vault.verify()
    assert report.ok, str(report)
    assert report.objects_checked == 12 and report.snapshots_checked == 1
    for h in s.hashes[:5]:
        proof = vault.inclusion_proof("s1", h)
        assert proof.verify() and proof.root == s.merkle_root
    texts = vault.texts("s1")
    assert [content_hash(t) for t in texts] == list(s.hashes)
    ref = vault.ref("s1")
    assert (ref.snapshot, ref.merkle_root, ref.count) == ("s1", s.merkle_root, 12)
    with pytest.raises(UserError, match="already sealed"):
        vault.seal("s1")
    # a later snapshot covers later additions; the first one is unchanged
    vault.add_texts([("x", "a new document")], **_add_kw())
    assert vault.seal("s2").count == 13 and vault.snapshot("s1").count == 12


def test_flipped_byte_in_an_object_is_detected_and_named(vcli, vault, tmp_path):
    s = vault.seal("s1")
    h = s.hashes[3]
    _make_writable_and_edit(vault.object_path(h), lambda d: d.__setitem__(0, d[0] ^ 1))
    report = vault.verify()
    assert not report.ok
    assert any(f"objects/{h[:2]}/{h[2:]}" in p and "altered" in p for p in report.problems)
    with pytest.raises(UserError, match="altered"):
        vault.texts("s1")
    code, out, err = vcli(["verify", "--vault", "v"], tmp_path)
    assert code == 1 and "INVALID" in out and h[2:] in out


@pytest.mark.parametrize(
    "what, expect",
    [
        ("count", "signature"),
        ("hash", "signature"),
        ("root", "signature"),
        ("drop", "signature"),
    ],
)
def test_altered_snapshot_file_fails_signature_and_root(vault, what, expect):
    vault.seal("s1")
    p = vault.snapshot_path("s1")
    d = json.loads(p.read_text())
    if what == "count":
        d["count"] += 1
    elif what == "hash":
        d["hashes"][0] = "0" * 64
    elif what == "root":
        d["merkle_root"] = "f" * 64
    elif what == "drop":
        d["hashes"].pop()
    os.chmod(p, 0o644)
    p.write_text(json.dumps(d))
    report = vault.verify()
    assert not report.ok
    assert any(expect in x for x in report.problems)
    if what in ("hash", "root", "drop"):
        assert any("Merkle root" in x for x in report.problems)
    if what in ("count", "drop"):
        assert any("count" in x for x in report.problems)
    with pytest.raises(UserError):
        vault.texts("s1")


def test_wrong_public_key(vcli, vault, tmp_path):
    vault.seal("s1")
    other = init_vault(tmp_path / "other")
    # a trusted copy that is not the vault's key: one line, exit 2
    code, out, err = vcli(["verify", "--vault", "v", "--public-key", str(other.path / "vault.pub")], tmp_path)
    assert code == 2 and "wrong key" in err and len(err.strip().splitlines()) == 1
    # the vault's own public key swapped for another: every signature fails, exit 1
    pub = vault.path / "vault.pub"
    os.chmod(pub, 0o644)
    pub.write_bytes((other.path / "vault.pub").read_bytes())
    report = vault.verify()
    assert not report.ok and any("bad signature" in p for p in report.problems)
    code, out, err = vcli(["verify", "--vault", "v"], tmp_path)
    assert code == 1


def test_wrong_or_missing_signing_key(vcli, vault, tmp_path):
    other = init_vault(tmp_path / "other")
    code, out, err = vcli(["seal", "--vault", "v", "--key", str(other.key_path)], tmp_path)
    assert code == 2 and "wrong key" in err and len(err.strip().splitlines()) == 1
    code, out, err = vcli(["seal", "--vault", "v", "--key", "nowhere.key"], tmp_path)
    assert code == 2 and "missing" in err
    os.chmod(vault.key_path, 0o644)
    code, out, err = vcli(["seal", "--vault", "v"], tmp_path)
    assert code == 2 and "chmod 600" in err
    assert vault.snapshot_names() == []


def test_private_key_is_0600_and_never_printed(vcli, tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(6, 2)), encoding="utf-8")
    outputs = []

    def run(*args):
        code, out, err = vcli(list(args), tmp_path)
        outputs.append(out + err)
        return code

    assert run("init", "v") == 0
    key = tmp_path / "v" / "private" / "ed25519.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert run("add", "d.jsonl", "--source", "s", "--licence", "l", "--captured-before", "2019-05-01", "--vault", "v") == 0
    assert run("seal", "--name", "s1", "--vault", "v") == 0
    assert run("verify", "--vault", "v") == 0
    assert run("ls", "--vault", "v") == 0
    assert run("sample", "2", "--seed", "0", "--vault", "v") == 0
    assert run("export", "s1", "--out", "e.jsonl", "--vault", "v") == 0
    assert run("init", "v") == 2  # already a vault

    from cryptography.hazmat.primitives import serialization

    pem = key.read_bytes()
    raw = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    import base64

    body = "".join(pem.decode().strip().splitlines()[1:-1])
    secrets = [body, body[:24], raw.hex(), base64.b64encode(raw).decode()]
    text = "\n".join(outputs)
    assert "sealed s1" in text
    for s in secrets:
        assert s not in text


# ------------------------------------------------------------------------------- bad input


def test_folder_that_is_not_a_vault(vcli, tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "notes.txt").write_text("hello", encoding="utf-8")
    before = _all_files(d)
    for args in (
        ["add", "plain/notes.txt", "--source", "s", "--licence", "l", "--captured-before", "2020-01-01", "--vault", "plain"],
        ["seal", "--vault", "plain"],
        ["verify", "--vault", "plain"],
        ["ls", "--vault", "plain"],
        ["sample", "1", "--seed", "0", "--vault", "plain"],
        ["init", "plain"],  # not empty, not a vault: refused too
    ):
        code, out, err = vcli(args, tmp_path)
        assert code == 2, args
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "not a vault" in err or "not empty" in err
    assert _all_files(d) == before and sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    with pytest.raises(UserError, match="not a vault"):
        Vault(d)


def test_unknown_snapshot_is_a_user_error(vcli, vault, tmp_path):
    vault.seal("s1")
    code, out, err = vcli(["verify", "nope", "--vault", "v"], tmp_path)
    assert code == 2 and "no snapshot 'nope'" in err and "s1" in err


# ----------------------------------------------------------------------- sample and export


def test_sample_is_deterministic_under_the_seed(vcli, vault, tmp_path):
    vault.seal("s1")
    a = vault.sample("s1", 5, seed=7)
    assert a == vault.sample("s1", 5, seed=7)
    assert a != vault.sample("s1", 5, seed=8)
    assert len({h for h, _ in a}) == 5 and all(content_hash(t) == h for h, t in a)
    code, out, _ = vcli(["sample", "5", "--seed", "7", "--vault", "v"], tmp_path)
    assert code == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert [(r["hash"], r["text"]) for r in rows] == a and rows[0]["licence"] == "CC0"
    code, out2, _ = vcli(["sample", "5", "--seed", "7", "--snapshot", "s1", "--vault", "v"], tmp_path)
    assert out2 == out
    code, _, err = vcli(["sample", "50", "--seed", "7", "--vault", "v"], tmp_path)
    assert code == 2 and "holds 12" in err


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_export_round_trips(vcli, vault, tmp_path, suffix):
    vault.seal("s1")
    code, out, err = vcli(["export", "s1", "--out", f"e.{suffix}", "--vault", "v"], tmp_path)
    assert code == 0, err
    back = [t for _, t in read_documents(tmp_path / f"e.{suffix}")]
    assert back == vault.texts("s1")
    # re-adding the export finds every document already present
    assert vault.add([tmp_path / f"e.{suffix}"], **_add_kw()).present == 12
    code, _, err = vcli(["export", "s1", "--out", "e.csv", "--vault", "v"], tmp_path)
    assert code == 2 and "--out" in err
