"""Collapse Lab's steps inside a datatrove pipeline (collapselab.integrations.datatrove), run by
datatrove's own LocalPipelineExecutor: the same sidecar as ``scan``, the same kept documents as
``filter``."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("datatrove")
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402

from collapselab.integrations.datatrove import (CollapseLabFilter, CollapseLabReader, CollapseLabScore,  # noqa: E402
                                                SidecarWriter, merge_sidecar)
from collapselab.pipeline import filter_corpus, scan_corpus  # noqa: E402
from conftest import watermarked_sotu  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dt")
    corpus, key, human, marked = watermarked_sotu(d, n_train=1000, n_human=60, n_marked=40, size=4)
    texts = corpus.vocab.decode(human) + corpus.vocab.decode(marked)
    corpus.vocab.save(d / "vocab.txt")
    recs = [{"text": t, **({"id": f"r{i}"} if i % 3 else {})} for i, t in enumerate(texts)]
    (d / "docs").mkdir()
    a = d / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in recs[:30]) + "\n" + json.dumps(recs[30]) + "\n")  # a blank line
    with gzip.open(d / "docs" / "b.json.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs[31:70])
    with gzip.open(d / "docs" / "c.json.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs[70:])
    return dict(dir=d, key=key, vocab=d / "vocab.txt", inputs=[str(a), str(d / "docs")])


def _pipeline(data, tmp, steps, tasks):
    LocalPipelineExecutor(pipeline=[CollapseLabReader(data["inputs"]), *steps], tasks=tasks, workers=1,
                          logging_dir=str(tmp / "logs")).run()


@pytest.mark.parametrize("detector", ["length", "watermark"])
def test_datatrove_pipeline_writes_scans_sidecar(data, tmp_path, detector):
    opts = {} if detector == "length" else {"key": data["key"], "vocab": data["vocab"]}
    scan_corpus(data["inputs"], detector=detector, out=tmp_path / "scan.parquet", jobs=1, **opts)
    _pipeline(data, tmp_path, [CollapseLabScore(detector, **opts), SidecarWriter(tmp_path / "parts")], tasks=2)
    assert merge_sidecar(tmp_path / "parts", tmp_path / "dt.parquet") == 100
    ours, theirs = pq.read_table(tmp_path / "scan.parquet"), pq.read_table(tmp_path / "dt.parquet")
    assert theirs.schema == ours.schema
    pd.testing.assert_frame_equal(theirs.to_pandas(), ours.to_pandas())  # NaN equals NaN here (length's z)
    assert ours.column("line").to_pylist()[29:32] == [30, 32, 1]  # the blank line keeps its number


def test_datatrove_filter_keeps_what_collapselab_filter_keeps(data, tmp_path):
    opts = {"key": data["key"], "vocab": data["vocab"]}
    b = str(data["dir"] / "docs" / "b.json.gz")  # 29 human documents, then 10 watermarked
    scan_corpus([b], out=tmp_path / "s.parquet", jobs=1, **opts)
    r = filter_corpus(b, scores=tmp_path / "s.parquet", out=tmp_path / "kept.jsonl",
                      quarantine=tmp_path / "q.jsonl", threshold=4.0)
    LocalPipelineExecutor(pipeline=[
        CollapseLabReader([b]), CollapseLabScore("watermark", **opts),
        CollapseLabFilter(JsonlWriter(str(tmp_path / "dq"), compression=None), threshold=4.0),
        JsonlWriter(str(tmp_path / "dk"), compression=None)], tasks=1, logging_dir=str(tmp_path / "logs")).run()
    kept = [json.loads(x)["text"] for x in (tmp_path / "kept.jsonl").read_text().splitlines() if x.strip()]
    dk = [json.loads(x)["text"] for f in sorted((tmp_path / "dk").glob("*.jsonl")) for x in f.read_text().splitlines()]
    dq = [json.loads(x)["text"] for f in sorted((tmp_path / "dq").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert dk == kept and len(dq) == r.quarantined > 0


def test_steps_refuse_what_cannot_work():
    from datatrove.data import Document

    from collapselab.errors import UserError

    with pytest.raises(UserError, match="--watermark-key"):
        CollapseLabScore("watermark")  # no key: refused when the pipeline is built, not in every task
    with pytest.raises(UserError, match="put CollapseLabScore before"):
        CollapseLabFilter().filter(Document(text="x", id="1"))
    with pytest.raises(UserError, match="threshold or fpr"):
        CollapseLabFilter(threshold=1.0, fpr=0.01)
