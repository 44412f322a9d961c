"""Issue 14's "done when": a dolma-style ``.json.gz`` folder, a ``.jsonl.zst`` file (with a nested
text field) and a HF ``datasets`` folder go through ``scan``, ``filter`` and ``mix`` unchanged.

Each corpus is scanned (length detector), filtered by the sidecar and in one pass (the two give
the same bytes), and mixed with vault text. JSON-lines records come out as the lines that went in
(decompressed, compared byte for byte), in input order, split exactly by the rule; a datasets
folder's rows come out as Parquet rows with the dataset's columns.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_documents

from collapselab.pipeline import filter_corpus, mix_corpus, scan_corpus

T = 200  # quarantine documents of 200 characters or more


def _lines(recs: list[dict]) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode() for r in recs]


def _read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        with pa.input_stream(str(path), compression="zstd") as f:
            data = f.read()
    return data.splitlines()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("formats")
    texts = make_documents(90, 3, seed=4)
    texts = [t if i % 4 else t + " " + t for i, t in enumerate(texts)]  # some long documents
    # dolma: documents/*.json.gz, one JSON object a line with id, text, source and metadata
    dolma = root / "dolma" / "documents"
    dolma.mkdir(parents=True)
    dolma_recs = [{"id": f"doc-{i}", "text": t, "source": "web", "added": "2024-01-01", "metadata": {"n": i}}
                  for i, t in enumerate(texts[:60])]
    for k in range(3):
        with gzip.GzipFile(dolma / f"part-{k:04d}.json.gz", "wb", mtime=0) as f:
            f.write(b"".join(line + b"\n" for line in _lines(dolma_recs[20 * k: 20 * k + 20])))
    # a zstd JSON-lines file whose text sits in a nested field
    zst_recs = [{"id": f"z{i}", "meta": {"body": t, "lang": "en"}} for i, t in enumerate(texts[60:])]
    zst = root / "web.jsonl.zst"
    zst.write_bytes(pa.compress(b"".join(line + b"\n" for line in _lines(zst_recs)), codec="zstd", asbytes=True))
    # a datasets save_to_disk folder, two Arrow files
    ds_recs = [{"id": f"h{i}", "text": t, "score": float(i)} for i, t in enumerate(texts[30:80])]
    ds = root / "ds"
    datasets.Dataset.from_list(ds_recs).save_to_disk(str(ds), num_shards=2)
    # a vault of human text
    from collapselab.provenance.vault import init_vault

    v = init_vault(root / "vault")
    v.add_texts([(f"v{i}", t) for i, t in enumerate(make_documents(60, 2, seed=9))], source="test", licence="CC0",
                captured_before="2020-01-01")
    v.seal("s1")
    return {"dolma": (str(root / "dolma"), dolma_recs, "text", ".jsonl.gz"),
            "zst": (str(zst), zst_recs, "meta.body", ".jsonl.zst"),
            "datasets": (str(ds), ds_recs, "text", ".parquet"), "vault": str(root / "vault")}


def _text(rec: dict, field: str) -> str:
    return rec["meta"]["body"] if field == "meta.body" else rec[field]


@pytest.mark.parametrize("kind", ["dolma", "zst", "datasets"])
def test_scan_filter_mix_take_every_format(corpora, kind, tmp_path):
    path, recs, field, suffix = corpora[kind]
    side = tmp_path / "s.parquet"
    r = scan_corpus([path], detector="length", out=side, text_field=field, jobs=1)
    assert r.documents == len(recs) and r.malformed_skipped == 0
    table = pq.read_table(side)
    assert table.column("id").to_pylist() == [x["id"] for x in recs]
    assert table.column("score").to_pylist() == [float(len(_text(x, field))) for x in recs]
    assert r.stats["documents"] == len(recs) and r.stats["bytes"] > 0 and r.stats["steps"][0]["step"] == "read"

    long = [len(_text(x, field)) >= T for x in recs]
    assert 0 < sum(long) < len(recs)
    kept, quar = tmp_path / f"k{suffix}", tmp_path / f"q{suffix}"
    f = filter_corpus(path, scores=side, out=kept, quarantine=quar, threshold=T, jobs=1)
    assert (f.records, f.kept, f.quarantined) == (len(recs), len(recs) - sum(long), sum(long))
    if suffix == ".parquet":
        k, q = pq.read_table(kept), pq.read_table(quar)
        assert k.column_names == q.column_names == ["id", "text", "score"]
        assert k.column("id").to_pylist() == [x["id"] for x, b in zip(recs, long) if not b]
        assert q.to_pylist() == [x for x, b in zip(recs, long) if b]
    else:
        lines = _lines(recs)
        assert _read_lines(kept) == [x for x, b in zip(lines, long) if not b]  # the lines as read, in order
        assert _read_lines(quar) == [x for x, b in zip(lines, long) if b]
    why = [json.loads(x) for x in (tmp_path / f"q{suffix}.reasons.jsonl").read_text().splitlines()]
    assert [w["id"] for w in why] == [x["id"] for x, b in zip(recs, long) if b]

    # one pass, no sidecar: the same bytes (JSON lines) or rows (Parquet)
    kept2, quar2 = tmp_path / f"k2{suffix}", tmp_path / f"q2{suffix}"
    filter_corpus(path, detector="length", text_field=field, out=kept2, quarantine=quar2, threshold=T, jobs=1)
    if suffix == ".parquet":
        assert pq.read_table(kept2).equals(pq.read_table(kept)) and pq.read_table(quar2).equals(pq.read_table(quar))
    else:
        assert kept2.read_bytes() == kept.read_bytes() and quar2.read_bytes() == quar.read_bytes()

    m = mix_corpus([path], vault=corpora["vault"], min_human=0.2, out=tmp_path / "mix.jsonl", seed=1, text_field=field,
                   jobs=1)
    assert m.input_records == len(recs) and m.human_share >= 0.2
    out = (tmp_path / "mix.jsonl").read_bytes().splitlines()
    mine = [x for x in out if b'"vault:' not in x]
    if suffix == ".parquet":
        assert [json.loads(x) for x in mine] == recs
    else:
        assert mine == _lines(recs)  # the input lines, unchanged and in order


def test_folder_filter_is_the_same_with_two_jobs(corpora, tmp_path):
    path, _, _, _ = corpora["dolma"]
    scan_corpus([path], detector="length", out=tmp_path / "s.parquet", jobs=2)
    for jobs in (1, 2):
        filter_corpus(path, scores=tmp_path / "s.parquet", out=tmp_path / f"k{jobs}.jsonl.gz",
                      quarantine=tmp_path / f"q{jobs}.jsonl.gz", threshold=T, jobs=jobs)
    assert (tmp_path / "k1.jsonl.gz").read_bytes() == (tmp_path / "k2.jsonl.gz").read_bytes()
    assert (tmp_path / "q1.jsonl.gz").read_bytes() == (tmp_path / "q2.jsonl.gz").read_bytes()


def test_cli_takes_folders_and_urls(corpora, tmp_path, run_main):
    path, recs, _, _ = corpora["dolma"]
    url = Path(corpora["zst"][0]).as_uri()  # file:///...
    code, out, err = run_main(["scan", path, url, "--detector", "length", "--text-field", "text", "--on-error", "skip",
                               "--out", "s.parquet", "-j", "1", "--json"], tmp_path)
    assert code == 0, err
    res = json.loads(out)
    assert res["documents"] == len(recs) and res["malformed_skipped"] == 30  # the zst records hold no top-level text
    assert res["stats"]["documents"] == len(recs) and res["stats"]["mb_per_s"] > 0
    code, out, err = run_main(["filter", path, "--scores", "s.parquet", "--threshold", str(T), "--out", "k.jsonl.gz",
                               "--quarantine", "q.jsonl.gz", "-j", "1"], tmp_path)
    assert code == 0, err
    assert out.splitlines()[-1].startswith(f"filter: {len(recs)} documents, ") and "MB/s" in out and "flagged" in out
    code, out, err = run_main(["mix", path, "--vault", corpora["vault"], "--min-human", "0.1", "--out", "m.jsonl",
                               "-j", "1"], tmp_path)
    assert code == 0, err
    assert out.splitlines()[-1].startswith("mix: ") and "MB/s" in out.splitlines()[-1]
