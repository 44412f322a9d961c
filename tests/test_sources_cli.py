"""`collapselab vault add` and `collapselab run --corpus` on the new formats (issue 14 item 1): a
dolma-style ``documents/`` folder of ``.json.gz`` files, a ``.jsonl.zst`` file and a HF
``datasets`` folder hold the same corpus as a plain ``.jsonl`` file and give the same vault and the
same run."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from test_provenance_cli import DATE
from test_run_cli import TINY, one_error_line
from test_sources import DOCS, write

NEW = ["dolma", "jsonl.zst", "datasets"]


@pytest.mark.parametrize("fmt", NEW)
def test_vault_add_reads_the_new_formats(tmp_path, run_main, fmt):
    from collapselab.provenance.vault import Vault, content_hash, init_vault

    init_vault(tmp_path / "v")
    p = write(fmt, tmp_path)
    status, out, err = run_main(["vault", "add", p.name, *DATE, "--vault", "v", "--json"], tmp_path)
    assert status == 0, err
    assert json.loads(out)["added"] == len(set(DOCS))
    vault = Vault(tmp_path / "v")
    assert set(vault.hashes()) == {content_hash(d) for d in DOCS}
    wheres = [r["where"] for r in vault.index()]
    assert all(w.startswith(p.name) and (", line " in w or ", row " in w) for w in wheres), wheres[:3]


def test_vault_add_of_a_broken_dolma_file_names_it_and_adds_nothing(tmp_path, run_main):
    from collapselab.provenance.vault import Vault, init_vault

    init_vault(tmp_path / "v")
    d = write("dolma", tmp_path)
    (d / "b.json.gz").write_bytes(gzip.compress(b'{"text": "fine."}\n{"text": "fine too."}\n{"txt": "typo"}\n'))
    status, _, err = run_main(["vault", "add", "documents", *DATE, "--vault", "v"], tmp_path)
    one_error_line(status, err, "documents/b.json.gz, line 3", "no field 'text' (fields: txt)", "Nothing was added")
    assert Vault(tmp_path / "v").hashes() == []


def test_run_corpus_on_the_new_formats_matches_the_jsonl_run(tmp_path, run_main):
    def run(corpus: str, out: str) -> tuple[pd.DataFrame, dict]:
        status, _, err = run_main(["run", "--corpus", corpus, *TINY, "--out", out], tmp_path)
        assert status == 0, err
        summary = json.loads((tmp_path / out / "summary.json").read_text())["corpus"]
        return pd.read_parquet(tmp_path / out / "metrics.parquet"), {k: v for k, v in summary.items() if k != "name"}

    base = run(write("jsonl", tmp_path).name, "r-jsonl")
    assert base[1]["train_items"] > 50
    for fmt in NEW:
        metrics, corpus = run(write(fmt, tmp_path).name, f"r-{fmt}")
        pd.testing.assert_frame_equal(metrics, base[0])
        assert corpus == base[1], fmt


def test_vault_add_takes_urls_and_patterns(tmp_path):
    import fsspec

    from collapselab.provenance.vault import Vault, content_hash, init_vault

    init_vault(tmp_path / "v")
    d = write("dolma", tmp_path)
    fs = fsspec.filesystem("memory")
    fs.put(str(d), "/vault-add-test/documents", recursive=True)
    try:
        v = Vault(tmp_path / "v")
        r = v.add(["memory://vault-add-test/documents/a/*.json.gz"], source="t", licence="pd", captured_before="2020-01-01")
        assert r.added == 20
        r = v.add([f"file://{d}/b.json.gz", "memory://vault-add-test/documents"], source="t", licence="pd",
                  captured_before="2020-01-01")
        assert (r.added, r.present) == (len(DOCS) - 20, 20 + len(DOCS) - 20)
        assert set(v.hashes()) == {content_hash(t) for t in DOCS}
        with pytest.raises(Exception, match="nope: no such file or folder"):
            v.add(["memory://vault-add-test/nope"], source="t", licence="pd", captured_before="2020-01-01")
    finally:
        fs.rm("/vault-add-test", recursive=True)


def test_vault_add_cli_takes_a_file_url(tmp_path, run_main):
    """The command keeps a URL as written (a Path would turn file:///x into file:/x)."""
    from collapselab.provenance.vault import Vault, content_hash, init_vault

    init_vault(tmp_path / "v")
    p = write("jsonl.zst", tmp_path)
    status, out, err = run_main(["vault", "add", f"file://{p.resolve()}", *DATE, "--vault", "v", "--json"], tmp_path)
    assert status == 0, err
    assert set(Vault(tmp_path / "v").hashes()) == {content_hash(d) for d in DOCS}
