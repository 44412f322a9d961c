"""Dolma attribute files from a scan's sidecar (collapselab.integrations.dolma).

The mixer's rules are checked as dolma's ``mix`` applies them (src/shard.rs): the attributes file is
the document path with ``/documents/`` replaced by ``/attributes/<name>/``, gzip, read line by line
beside the documents, each line's ``id`` equal to the document's (the JSON value, absent = absent)."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from collapselab.errors import UserError
from collapselab.integrations.dolma import attributes_path, write_attributes
from collapselab.pipeline.scan import scan_corpus
from conftest import watermarked_sotu


def _docs(folder, name, records, blank_after=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, r in enumerate(records):
            f.write(json.dumps(r) + "\n")
            if blank_after == i:
                f.write("\n")
    return path


def _mix(doc_path, attr_path, keep):
    """dolma's mixer, reduced to its alignment rules and a per-document filter ``keep(attributes)``."""
    docs = gzip.open(doc_path, "rt", encoding="utf-8").read().splitlines()
    attrs = gzip.open(attr_path, "rt", encoding="utf-8").read().splitlines()
    assert len(docs) == len(attrs)
    kept = []
    for d, a in zip(docs, attrs):
        d, a = json.loads(d), json.loads(a)
        assert a.get("id") == d.get("id")  # serde_json's Value equality: type and value
        assert isinstance(a["attributes"], dict)
        if keep(a["attributes"]):
            kept.append(d)
    return kept


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "crawl" / "documents"
    a = _docs(docs, "a.json.gz", [{"id": f"a{i}", "text": "x" * (10 * i + 1), "source": "web"} for i in range(30)])
    b = _docs(docs / "sub", "b.json.gz", [{"id": i, "text": "é" * (7 * i)} for i in range(20)]  # integer ids
              + [{"text": "no id here"}])
    return tmp_path, [a, b]


def test_attributes_align_with_documents_and_carry_the_scores(corpus):
    root, files = corpus
    out = root / "scores.parquet"
    scan_corpus([str(f) for f in files], detector="length", out=out, jobs=1)
    res = write_attributes(out)
    assert res.documents == 51 and [f["lines"] for f in res.files] == [30, 21]
    side = pq.read_table(out).to_pylist()
    for f in files:
        dest = attributes_path(str(f), "collapselab")
        assert dest == root / "crawl" / "attributes" / "collapselab" / f.relative_to(root / "crawl" / "documents")
        rows = [json.loads(x) for x in gzip.open(dest, "rt", encoding="utf-8")]
        docs = [json.loads(x) for x in gzip.open(f, "rt", encoding="utf-8")]
        scores = [r["score"] for r in side if r["file"] == str(f)]
        for d, r, s in zip(docs, rows, scores):
            assert ("id" in r) == ("id" in d) and r.get("id") == d.get("id")
            assert r["attributes"] == {"collapselab__length__score": [[0, len(d["text"]), s]]}  # NaN z, p: absent
            assert s == len(d["text"])
    # a mix-time threshold, without rescoring: documents under 100 characters
    kept = [d for f in files for d in _mix(f, attributes_path(str(f), "collapselab"),
                                           lambda a: a["collapselab__length__score"][0][2] < 100)]
    assert sorted(len(d["text"]) for d in kept) == sorted(
        len(t) for t in ["x" * (10 * i + 1) for i in range(30)] + ["é" * (7 * i) for i in range(20)] + ["no id here"]
        if len(t) < 100)


def test_watermark_scan_attributes_name_the_detector_and_hold_p_values(tmp_path):
    """A keyed-watermark scan: score, z and p-value per document, under the detector's name."""
    corpus, key, human, marked = watermarked_sotu(tmp_path, n_train=1000, n_human=20, n_marked=20, size=3)
    texts = corpus.vocab.decode(human) + corpus.vocab.decode(marked)
    docs = _docs(tmp_path / "c" / "documents", "w.json.gz", [{"id": f"w{i}", "text": t} for i, t in enumerate(texts)])
    corpus.vocab.save(tmp_path / "vocab.txt")
    out = tmp_path / "s.parquet"
    scan_corpus([str(docs)], key=key, vocab=tmp_path / "vocab.txt", out=out, jobs=1)
    write_attributes(out, name="wm")
    rows = [json.loads(x) for x in gzip.open(tmp_path / "c" / "attributes" / "wm" / "w.json.gz", "rt")]
    side = pq.read_table(out).to_pylist()
    assert len(rows) == len(side) == 40
    for r, s in zip(rows, side):
        assert r["id"] == s["id"]
        assert r["attributes"]["wm__watermark__z"][0][2] == s["z"]
        assert r["attributes"]["wm__watermark__p_value"][0][2] == s["p_value"]
    z = [r["attributes"]["wm__watermark__z"][0][2] for r in rows]
    assert sum(z[20:]) / 20 > sum(z[:20]) / 20 + 3  # the marked documents stand out: the values are the scores, in order


def test_refusals_name_the_file_and_line(tmp_path):
    docs = tmp_path / "documents"
    f = _docs(docs, "a.json.gz", [{"id": str(i), "text": "abc"} for i in range(5)], blank_after=2)
    out = tmp_path / "s.parquet"
    scan_corpus([str(f)], detector="length", out=out, jobs=1)
    with pytest.raises(UserError, match=r"a\.json\.gz:4: a blank line"):
        write_attributes(out)
    assert not (tmp_path / "attributes").exists() or not any((tmp_path / "attributes").rglob("*.gz"))

    g = _docs(tmp_path / "elsewhere", "b.jsonl.gz", [{"id": "1", "text": "abc"}, {"id": "2", "text": "de"}])
    out2 = tmp_path / "s2.parquet"
    scan_corpus([str(g)], detector="length", out=out2, jobs=1)
    with pytest.raises(UserError, match="documents/.*--attributes-root"):
        write_attributes(out2)
    res = write_attributes(out2, root=tmp_path / "attrs")
    assert res.files[0]["attributes"] == str(tmp_path / "attrs" / "b.jsonl.gz")

    # the file changed after the scan: one more document than the sidecar has rows
    _docs(tmp_path / "elsewhere", "b.jsonl.gz", [{"id": "1", "text": "abc"}, {"id": "2", "text": "de"},
                                                   {"id": "3", "text": "f"}])
    with pytest.raises(UserError, match="no row for this document line"):
        write_attributes(out2, root=tmp_path / "attrs2")
    assert not list((tmp_path / "attrs2").glob("*.gz"))
    with pytest.raises(UserError, match="plain name"):
        write_attributes(out2, name="a__b", root=tmp_path / "attrs3")


def test_scan_format_dolma_from_the_command_line(tmp_path, run_main):
    _docs(tmp_path / "documents", "a.json.gz", [{"id": f"a{i}", "text": "y" * i} for i in range(1, 8)])
    status, out, err = run_main(["scan", "documents", "--detector", "length", "-o", "s.parquet", "--format", "dolma",
                                 "--attributes-name", "cl", "--json"], tmp_path)
    assert status == 0, err
    res = json.loads(out)
    assert res["documents"] == 7 and res["dolma"]["documents"] == 7
    rows = [json.loads(x) for x in gzip.open(tmp_path / "attributes" / "cl" / "a.json.gz", "rt")]
    assert [r["attributes"]["cl__length__score"] for r in rows] == [[[0, i, float(i)]] for i in range(1, 8)]
    status, _, err = run_main(["scan", "documents", "--detector", "length", "-o", "t.parquet", "--format", "csv"], tmp_path)
    assert status == 2 and "--format" in err
