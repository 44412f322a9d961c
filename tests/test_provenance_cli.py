"""Issue 10 for ``vault``, ``credentials``, ``ledger`` and ``keys``: one line and exit 2 for every
mistake with nothing half-written, public files readable, strict ``--json``, renamed flags kept."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import make_documents
from test_run_cli import one_error_line, strict

DATE = ["--source", "test", "--licence", "public-domain", "--captured-before", "2020-01-01"]


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _broken_at_58(path: Path) -> Path:
    lines = [json.dumps({"text": t}) for t in make_documents(70, 2)]
    lines[57] = '{"text": oops'
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vault_add_of_a_broken_file_adds_nothing(tmp_path, run_main):
    from collapselab.provenance.vault import Vault, init_vault

    init_vault(tmp_path / "v")
    index = tmp_path / "v" / "index.jsonl"
    before = index.read_bytes() if index.exists() else None
    _broken_at_58(tmp_path / "bad.jsonl")
    status, _, err = run_main(["vault", "add", "bad.jsonl", *DATE, "--vault", "v"], tmp_path)
    one_error_line(status, err, "bad.jsonl", "line 58", "Nothing was added")
    assert len(Vault(tmp_path / "v").hashes()) == 0
    assert not [p for p in (tmp_path / "v" / "objects").rglob("*") if p.is_file()]
    if before is not None:
        assert index.read_bytes() == before
    (tmp_path / "good.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(5, 2)))
    status, out, err = run_main(["vault", "add", "good.jsonl", *DATE, "--vault", "v", "--json"], tmp_path)
    assert status == 0 and strict(out)["added"] == 5, err
    assert len(Vault(tmp_path / "v").hashes()) == 5  # the failed add left nothing that blocks the next


def test_init_that_fails_part_way_leaves_nothing(tmp_path, run_main, monkeypatch):
    from collapselab.provenance import credentials, vault

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(vault, "_write_private_key", full)
    one_error_line(*run_main(["vault", "init", "v"], tmp_path)[::2], "no space left")
    assert not (tmp_path / "v").exists()
    monkeypatch.setattr(credentials, "_write_private", full)
    one_error_line(*run_main(["credentials", "init", "c"], tmp_path)[::2], "no space left")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("args", [["vault", "init", "afile/v"], ["credentials", "init", "afile/c"],
                                  ["keys", "new", "afile/k"], ["keys", "new", "."]])
def test_outputs_under_a_file_or_on_a_folder(tmp_path, run_main, args):
    (tmp_path / "afile").write_text("mine")
    one_error_line(*run_main(args, tmp_path)[::2], args[-1].split("/")[0])
    assert (tmp_path / "afile").read_text() == "mine"


def test_public_files_follow_the_umask_and_keys_stay_private(tmp_path, run_main, umask022):
    assert run_main(["credentials", "init", "c"], tmp_path)[0] == 0
    assert run_main(["vault", "init", "v"], tmp_path)[0] == 0
    c, v = tmp_path / "c", tmp_path / "v"
    public = [c / "root.pem", c / "chain.pem", v / "vault.pub", v / "collapselab-vault.json"]
    assert {p.name: _mode(p) for p in public} == {p.name: 0o644 for p in public}
    secret = [p for p in [*c.glob("*key*"), *(v / "private").glob("*")] if p.is_file()]
    assert len(secret) >= 3 and {_mode(p) for p in secret} == {0o600}


def test_credentials_origin_is_checked(tmp_path, run_main):
    assert run_main(["credentials", "init", "c"], tmp_path)[0] == 0
    (tmp_path / "s.jsonl").write_text('{"text": "x"}\n')
    one_error_line(*run_main(["credentials", "sign", "s.jsonl", "-c", "c", "--model", "m", "--generation", "1",
                              "--origin", "aliens"], tmp_path)[::2], "'aliens'", "human", "synthetic")
    assert not (tmp_path / "s.jsonl.manifest.json").exists()
    status, _, err = run_main(["credentials", "sign", "s.jsonl", "-c", "c", "--model", "m", "--generation", "1",
                               "--origin", "human"], tmp_path)
    assert status == 0, err
    status, out, err = run_main(["credentials", "verify", "s.jsonl", "--trust", "c", "--json"], tmp_path)
    r = strict(out)
    assert status == 0 and r["ok"] and r["origin"] == "human" and r["generation"] == 1


def test_vault_and_ledger_json_and_the_signing_key_flag(tmp_path, run_main):
    from collapselab.provenance.ledger import Document, Ledger

    key = tmp_path / "keys" / "vault.key"
    assert run_main(["vault", "init", "v", "--signing-key", key], tmp_path)[0] == 0
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(4, 2)))
    assert run_main(["vault", "add", "d.jsonl", *DATE, "--vault", "v", "-q"], tmp_path)[0] == 0
    for flag, name in (("--signing-key", "s1"), ("--key", "s2")):  # the old spelling still works
        status, _, err = run_main(["vault", "seal", "--name", name, "--vault", "v", flag, key], tmp_path)
        assert status == 0, err
    status, out, _ = run_main(["vault", "ls", "--vault", "v", "--json"], tmp_path)
    ls = strict(out)
    assert status == 0 and ls["documents"] == 4 and [s["name"] for s in ls["snapshots"]] == ["s1", "s2"]
    status, out, _ = run_main(["vault", "verify", "--vault", "v", "--json"], tmp_path)
    assert status == 0 and strict(out)["ok"] is True and strict(out)["snapshots_checked"] == 2

    with Ledger(tmp_path / "l.sqlite") as led:
        led.append([Document("a" * 64, "human", "test")])
    status, out, _ = run_main(["ledger", "head", "l.sqlite", "--json"], tmp_path)
    head = strict(out)
    assert status == 0 and head["seq"] == 1 and len(head["hash"]) == 64
    status, out, _ = run_main(["ledger", "verify", "l.sqlite", "--json", "--head", head["head"]], tmp_path)
    r = strict(out)
    assert status == 0 and r["ok"] and r["entries"] == 1 and r["problems"] == []
