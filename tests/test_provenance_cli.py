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


@pytest.fixture
def umask027():
    old = os.umask(0o027)
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


def test_credentials_init_force_that_fails_keeps_the_old_chain(tmp_path, run_main, monkeypatch):
    from collapselab.provenance import credentials

    assert run_main(["credentials", "init", "c"], tmp_path)[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    real = credentials._write_private

    def full_at_the_second_key(path, data):
        if "leaf" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(credentials, "_write_private", full_at_the_second_key)
    one_error_line(*run_main(["credentials", "init", "c", "--force"], tmp_path)[::2], "no space left")
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before  # not a new root with the old leaf


@pytest.mark.parametrize("args", [["vault", "init", "afile/v"], ["credentials", "init", "afile/c"],
                                  ["vault", "init", "afile"], ["credentials", "init", "afile"],
                                  ["vault", "init", "v", "--signing-key", "afile/k"],
                                  ["keys", "new", "afile/k"], ["keys", "new", "."]])
def test_outputs_under_a_file_or_on_a_folder(tmp_path, run_main, args):
    (tmp_path / "afile").write_text("mine")
    one_error_line(*run_main(args, tmp_path)[::2], args[-1].split("/")[0])
    assert (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing half-made beside it


def _full_disk(monkeypatch, path: str = "x") -> None:
    """Every atomic write (temp file + rename) fails as on a full disk, after its temp file was written."""
    from collapselab.atomic import AtomicFile

    def commit(self):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(AtomicFile, "commit", commit)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def sealed(tmp_path, run_main) -> Path:
    """A vault in tmp_path/v with 6 documents, sealed as s1."""
    assert run_main(["vault", "init", "v"], tmp_path)[0] == 0
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(6, 2)))
    assert run_main(["vault", "add", "d.jsonl", *DATE, "--vault", "v", "-q"], tmp_path)[0] == 0
    assert run_main(["vault", "seal", "--name", "s1", "--vault", "v"], tmp_path)[0] == 0
    return tmp_path / "v"


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EACCES])
def test_vault_add_that_cannot_write_adds_nothing(tmp_path, run_main, monkeypatch, errno_):
    from collapselab.provenance.vault import Vault

    assert run_main(["vault", "init", "v"], tmp_path)[0] == 0
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(8, 2)))
    real, calls = Vault._store, []

    def store(self, h, data):  # the disk fills (or the vault turns read-only) at the 4th object
        calls.append(h)
        if len(calls) == 4:
            raise OSError(errno_, os.strerror(errno_), str(self.object_path(h)))
        return real(self, h, data)

    monkeypatch.setattr(Vault, "_store", store)
    status, _, err = run_main(["vault", "add", "d.jsonl", *DATE, "--vault", "v"], tmp_path)
    one_error_line(status, err, "Nothing was added", "3 documents read")
    assert len(Vault(tmp_path / "v").hashes()) == 0 and not _files(tmp_path / "v" / "objects")


def test_vault_seal_on_a_full_disk_leaves_no_snapshot(sealed, run_main, monkeypatch):
    before = _files(sealed)
    _full_disk(monkeypatch)
    one_error_line(*run_main(["vault", "seal", "--name", "s2", "--vault", "v"], sealed.parent)[::2], "no space left")
    assert _files(sealed) == before


@pytest.mark.parametrize("cmd", [["sample", "3", "--seed", "1"], ["export", "s1"]])
@pytest.mark.parametrize("out, needle", [("afile/o.jsonl", "afile is a file"), ("adir.jsonl", "is a folder"),
                                         ("full.jsonl", "no space left"), ("full.parquet", "no space left")])
def test_vault_sample_and_export_outputs(sealed, run_main, monkeypatch, cmd, out, needle):
    tmp = sealed.parent
    (tmp / "afile").write_text("mine")
    (tmp / "adir.jsonl").mkdir()
    if out.startswith("full"):
        _full_disk(monkeypatch)
    one_error_line(*run_main(["vault", *cmd, "--out", out, "--vault", "v"], tmp)[::2], needle)
    assert sorted(p.name for p in tmp.iterdir()) == ["adir.jsonl", "afile", "d.jsonl", "v"]
    assert not list((tmp / "adir.jsonl").iterdir())


def test_an_unwritable_folder_is_said_before_anything_is_made(tmp_path, run_main, monkeypatch):
    import collapselab.atomic

    monkeypatch.setattr(collapselab.atomic.os, "access", lambda *a, **k: False)  # root may write anywhere
    for args in (["vault", "init", "v"], ["credentials", "init", "c"], ["keys", "new", "k"]):
        one_error_line(*run_main(args, tmp_path)[::2], "not writable")
    assert not list(tmp_path.iterdir())


def test_keys_new_on_a_full_disk_leaves_no_key(tmp_path, run_main, monkeypatch):
    from collapselab.provenance import keys

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keys.os, "fsync", full)
    one_error_line(*run_main(["keys", "new", "k"], tmp_path)[::2], "no space left")
    assert not (tmp_path / "k").exists()


def test_credentials_sign_outputs(tmp_path, run_main, monkeypatch):
    from test_credentials import make_png

    assert run_main(["credentials", "init", "c"], tmp_path)[0] == 0
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "i.png").write_bytes(make_png())
    sign = ["credentials", "sign", "-c", "c", "--model", "m", "--generation", "0"]
    one_error_line(*run_main([*sign, "i.png", "--out", "afile/o.png"], tmp_path)[::2], "afile is a file")
    (tmp_path / "dir.png").mkdir()
    one_error_line(*run_main([*sign, "i.png", "--out", "dir.png"], tmp_path)[::2], "is a folder")
    one_error_line(*run_main([*sign, "i.png", "--origin", "aliens"], tmp_path)[::2], "'aliens'", "human")
    (tmp_path / "s.jsonl").write_text('{"text": "x"}\n')
    _full_disk(monkeypatch)
    one_error_line(*run_main([*sign, "s.jsonl"], tmp_path)[::2], "no space left")
    one_error_line(*run_main([*sign, "i.png", "--out", "o.png"], tmp_path)[::2], "no space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c", "dir.png", "i.png", "s.jsonl"]
    assert (tmp_path / "i.png").read_bytes() == make_png()


def test_public_files_follow_the_umask_and_keys_stay_private(tmp_path, run_main, umask022):
    assert run_main(["credentials", "init", "c"], tmp_path)[0] == 0
    assert run_main(["vault", "init", "v"], tmp_path)[0] == 0
    c, v = tmp_path / "c", tmp_path / "v"
    public = [c / "root.pem", c / "leaf.pem", c / "chain.pem", v / "vault.pub", v / "collapselab-vault.json", v / "index.jsonl"]
    assert {p.name: _mode(p) for p in public} == {p.name: 0o644 for p in public}
    secret = [p for p in [*c.glob("*key*"), *(v / "private").glob("*")] if p.is_file()]
    assert len(secret) >= 3 and {_mode(p) for p in secret} == {0o600}


def test_vault_objects_and_snapshots_are_read_only_and_follow_the_umask(umask027, sealed):
    """Made under umask 027, a vault's objects and snapshots are 0440 (read-only, not for others; they
    were 0444 whatever the umask) and its public key 0640."""
    files = [p for p in (sealed / "objects").rglob("*") if p.is_file()] + [sealed / "snapshots" / "s1.json"]
    assert len(files) == 7 and {_mode(p) for p in files} == {0o440}
    assert _mode(sealed / "vault.pub") == 0o640 and _mode(sealed / "private" / "ed25519.key") == 0o600


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


def test_json_of_seal_and_of_invalid_results_keeps_exit_1(sealed, run_main):
    tmp = sealed.parent
    status, out, err = run_main(["vault", "seal", "--name", "s2", "--vault", "v", "--json"], tmp)
    seal = strict(out)
    assert status == 0 and seal["name"] == "s2" and seal["documents"] == 6 and len(seal["merkle_root"]) == 64, err
    obj = next(p for p in (sealed / "objects").rglob("*") if p.is_file())
    obj.chmod(0o644)
    obj.write_text("changed")
    status, out, _ = run_main(["vault", "verify", "--vault", "v", "--json"], tmp)
    r = strict(out)
    assert status == 1 and r["ok"] is False and any("altered" in p for p in r["problems"])

    from collapselab.provenance.ledger import Document, Ledger

    with Ledger(tmp / "l.sqlite") as led:
        led.append([Document("b" * 64, "human", "test")])
    status, out, _ = run_main(["ledger", "verify", "l.sqlite", "--json", "--head", f"1:{'0' * 64}"], tmp)
    r = strict(out)
    assert status == 1 and r["ok"] is False and r["problems"]

    assert run_main(["credentials", "init", "c"], tmp)[0] == 0
    (tmp / "s.jsonl").write_text('{"text": "x"}\n')
    assert run_main(["credentials", "sign", "s.jsonl", "-c", "c", "--model", "m", "--generation", "2"], tmp)[0] == 0
    (tmp / "s.jsonl").write_text('{"text": "y"}\n')
    status, out, _ = run_main(["credentials", "verify", "s.jsonl", "--trust", "c", "--json"], tmp)
    r = strict(out)
    assert status == 1 and r["ok"] is False and r["status"] == "invalid" and r["problems"]


def test_vault_add_shows_progress_unless_quiet(tmp_path, run_main, monkeypatch):
    from contextlib import contextmanager

    import collapselab.cli.vault as vault_cli

    seen = []

    @contextmanager
    def bar(description, total=None, *, quiet=False, bytes_unit=False):
        seen.append(("quiet", quiet))
        yield lambda **kw: seen.append(kw["completed"])

    monkeypatch.setattr(vault_cli, "progress_bar", bar)
    assert run_main(["vault", "init", "v"], tmp_path)[0] == 0
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(2500)))
    status, _, err = run_main(["vault", "add", "d.jsonl", *DATE, "--vault", "v"], tmp_path)
    assert status == 0 and err == "" and seen == [("quiet", False), 1000, 2000], (err, seen)
    seen.clear()
    assert run_main(["vault", "add", "d.jsonl", *DATE, "--vault", "v", "-q"], tmp_path)[0] == 0
    assert seen[0] == ("quiet", True)


@pytest.mark.parametrize("command", ["init", "seal"])
def test_help_marks_the_old_key_spelling(command):
    import typer

    from collapselab.cli import app

    vault_group = typer.main.get_command(app).commands["vault"]
    (option,) = [p for p in vault_group.commands[command].params if "--signing-key" in p.opts]
    assert option.opts == ["--signing-key", "--key"] and "old spelling --key: deprecated" in option.help


def test_a_file_given_as_the_vault_is_said(tmp_path, run_main):
    (tmp_path / "afile").write_text("mine")
    one_error_line(*run_main(["vault", "ls", "--vault", "afile", "--json"], tmp_path)[::2], "afile: a file, not a vault folder")


def test_snapshot_is_also_named_with_the_shared_flag(sealed, run_main):
    tmp = sealed.parent
    assert run_main(["vault", "seal", "--name", "s2", "--vault", "v"], tmp)[0] == 0
    for args, out in ((["s1"], "a.jsonl"), (["--snapshot", "s1"], "b.jsonl"), ([], "newest.jsonl")):
        status, _, err = run_main(["vault", "export", *args, "--out", out, "--vault", "v"], tmp)
        assert status == 0, err
    assert (tmp / "a.jsonl").read_text() == (tmp / "b.jsonl").read_text() and len((tmp / "a.jsonl").read_text().splitlines()) == 6
    status, out, _ = run_main(["vault", "verify", "--snapshot", "s2", "--vault", "v", "--json"], tmp)
    assert status == 0 and strict(out)["snapshots_checked"] == 1
    one_error_line(*run_main(["vault", "export", "s1", "--snapshot", "s2", "--out", "c.jsonl", "--vault", "v"], tmp)[::2],
                   "name one snapshot")
    assert not (tmp / "c.jsonl").exists()
