"""The corpus pipeline (collapselab.pipeline): scan, filter, mix; bad input (shards, jobs, kills: test_pipeline_shards.py).

Real text: human State of the Union chunks (5 sentences) and watermarked samples of a 3-gram model
trained on other SOTU sentences, mixed in a known share (30 %).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collapselab.errors import UserError
from collapselab.pipeline import filter_corpus, mix_corpus, scan_corpus
from conftest import watermarked_sotu

N_HUMAN, N_MARKED = 700, 300


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    corpus, key_file, human, marked = watermarked_sotu(d, n_train=3000, n_human=N_HUMAN, n_marked=2 * N_MARKED, size=5)
    human, marked = corpus.vocab.decode(human), corpus.vocab.decode(marked)
    order = np.random.default_rng(1).permutation(N_HUMAN + N_MARKED)
    docs = [{"text": t, "kind": "human"} for t in human] + [{"text": t, "kind": "wm", "id": f"w{i}"} for i, t in enumerate(marked[:N_MARKED])]
    docs = [docs[i] for i in order]
    corpus.vocab.save(d / "vocab.txt")
    return dict(dir=d, key=key_file, vocab=d / "vocab.txt", docs=docs,
                mix=_jsonl(d / "mix.jsonl", docs),
                cal=_jsonl(d / "cal.jsonl", [{"text": t} for t in marked[N_MARKED:]]),
                human=human)


def _scan(data, inputs, out, **kw):
    return scan_corpus(inputs, key=data["key"], vocab=data["vocab"], out=out, **kw)


# ------------------------------------------------------------------------------------- scan
def test_scan_estimate_covers_the_known_share(data, tmp_path):
    before = data["mix"].read_bytes()
    r = _scan(data, [data["mix"]], tmp_path / "s.parquet", tpr_from=[data["cal"]])
    assert data["mix"].read_bytes() == before  # input never modified
    assert r.documents == 1000 and r.malformed_skipped == 0
    assert r.low <= 0.30 <= r.high and abs(r.estimate - 0.30) < 0.04
    assert 0.2 < r.flagged_share <= 0.31 and r.fpr < 1e-3 and r.fpr_source.startswith("exact")
    assert r.tpr > 0.9 and r.tpr_source.startswith("measured on 300")
    side = pd.read_parquet(tmp_path / "s.parquet")
    assert list(side.columns) == ["file", "line", "id", "n_tokens", "n_scored", "n_green", "score", "z", "p_value", "scheme"]
    assert set(side["scheme"]) == {"collapselab"}
    assert side["line"].tolist() == list(range(1, 1001))
    truth = np.array([d["kind"] == "wm" for d in data["docs"]])
    ids = [d.get("id", f"{data['mix']}:{i + 1}") for i, d in enumerate(data["docs"])]
    assert side["id"].tolist() == ids
    assert (side["z"] >= 4).sum() == r.flagged
    assert (side["z"][~truth] >= 4).sum() <= 2  # human documents rarely reach z >= 4

    # default TPR: assumed 1, the estimate is a lower bound
    lb = _scan(data, [data["mix"]], tmp_path / "s2.parquet")
    assert lb.tpr == 1.0 and "lower bound" in lb.tpr_source and lb.estimate <= r.estimate
    given = _scan(data, [data["mix"]], tmp_path / "s3.parquet", tpr=r.tpr, n_tpr=300)
    assert abs(given.estimate - r.estimate) < 1e-12 and given.tpr_source == "given (n=300)"


def test_exact_fpr_is_the_binomial_tail(data):
    from scipy import stats

    from collapselab.detect.schemes.ours import CollapselabScheme
    from collapselab.pipeline.scorers import SchemeScorer as _SchemeScorer

    s = _SchemeScorer(CollapselabScheme(b"k" * 16, gamma=0.25, context_width=1), None, z_threshold=4.0)
    for T in (0, 1, 10, 57, 200, 1001, 4000):
        g = np.arange(T + 1)
        z = (g - 0.25 * T) / np.sqrt(max(T, 1) * 0.25 * 0.75)
        want = float(stats.binom.pmf(g, T, 0.25)[z >= 4].sum()) if T else 0.0
        assert s.exact_fpr(np.array([T]))[0] == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_scan_rerun_skips_and_notices_changes(data, tmp_path):
    inp = tmp_path / "in.jsonl.gz"
    with gzip.open(inp, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in data["docs"][:100])
    out = tmp_path / "s.parquet"
    a = _scan(data, [inp], out)
    assert not a.skipped and a.documents == 100
    b = _scan(data, [inp], out)
    assert b.skipped and b.flagged == a.flagged
    assert not _scan(data, [inp], out, z_threshold=5.0).skipped  # other settings: rescored
    with gzip.open(inp, "at", encoding="utf-8") as f:
        f.write(json.dumps({"text": "one more document ."}) + "\n")
    c = _scan(data, [inp], out)
    assert not c.skipped and c.documents == 101


# ------------------------------------------------------------------------------- bad input
def _bad_file(tmp_path: Path) -> Path:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "a fine line ."}\n{"text": broken\n\n[1, 2]\n{"other": 1}\n{"text": "last one ."}')
    return p


def test_malformed_lines_fail_or_skip(data, tmp_path):
    bad = _bad_file(tmp_path)
    with pytest.raises(UserError, match=r"bad\.jsonl:2: malformed"):
        _scan(data, [bad], tmp_path / "s.parquet")
    assert not (tmp_path / "s.parquet").exists()
    r = _scan(data, [bad], tmp_path / "s.parquet", on_error="skip")
    assert r.documents == 2 and r.malformed_skipped == 3
    assert pd.read_parquet(tmp_path / "s.parquet")["line"].tolist() == [1, 6]
    f = filter_corpus(bad, scores=tmp_path / "s.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl",
                      threshold=4.0, on_error="skip")
    assert (f.records, f.kept, f.malformed) == (5, 2, 3)
    reasons = [json.loads(x) for x in (tmp_path / "q.jsonl.reasons.jsonl").read_text().splitlines()]
    assert [x["line"] for x in reasons] == [2, 4, 5] and {x["reason"] for x in reasons} == {"malformed"}
    # nothing lost: kept + quarantined = input, byte for byte (the blank line stays with the kept)
    assert sorted((tmp_path / "k.jsonl").read_bytes().splitlines(True) + (tmp_path / "q.jsonl").read_bytes().splitlines(True)) \
        == sorted(bad.read_bytes().splitlines(True))


def test_cli_reports_bad_input_with_exit_2(data, tmp_path):
    bad = _bad_file(tmp_path)
    cmd = [sys.executable, "-m", "collapselab.pipeline.pipeline_cli", "scan", str(bad), "--out", str(tmp_path / "s.parquet"),
           "--key", str(data["key"]), "--vocab", str(data["vocab"])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 2 and "bad.jsonl:2: malformed" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(cmd + ["--on-error", "skip", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["malformed_skipped"] == 3


# ------------------------------------------------------------------------------------ filter
def test_filter_quarantines_with_reasons_and_loses_nothing(data, tmp_path):
    s = tmp_path / "s.parquet"
    _scan(data, [data["mix"]], s)
    k, q = tmp_path / "kept.jsonl", tmp_path / "q.jsonl"
    r = filter_corpus(data["mix"], scores=s, out=k, quarantine=q, fpr=0.01)
    assert r.records == 1000 and r.kept + r.quarantined == 1000 and r.malformed == 0
    inp = data["mix"].read_bytes().splitlines(True)
    kept, quar = k.read_bytes().splitlines(True), q.read_bytes().splitlines(True)
    assert sorted(kept + quar) == sorted(inp)
    assert kept == [x for x in inp if x in set(kept)]  # input order kept
    reasons = [json.loads(x) for x in Path(str(q) + ".reasons.jsonl").read_text().splitlines()]
    assert len(reasons) == len(quar) and all(x["p_value"] <= 0.01 and x["reason"] == "p_value <= 0.01" for x in reasons)
    wm_in_quar = sum(json.loads(x)["kind"] == "wm" for x in quar)
    assert wm_in_quar >= 290 and len(quar) - wm_in_quar <= 20  # ~1 % of 700 humans at most, by construction
    assert filter_corpus(data["mix"], scores=s, out=k, quarantine=q, fpr=0.01).skipped
    t = filter_corpus(data["mix"], scores=s, out=k, quarantine=q, threshold=4.0)
    assert not t.skipped and t.flagged == pd.read_parquet(s)["score"].ge(4.0).sum()
    with pytest.raises(UserError, match="exactly one"):
        filter_corpus(data["mix"], scores=s, out=k, quarantine=q)


def test_filter_parquet_and_misaligned_sidecar(data, tmp_path):
    pq_in = tmp_path / "mix.parquet"
    pd.DataFrame(data["docs"][:200]).to_parquet(pq_in)
    s = tmp_path / "s.parquet"
    _scan(data, [pq_in], s)
    r = filter_corpus(pq_in, scores=s, out=tmp_path / "k.parquet", quarantine=tmp_path / "q.parquet", threshold=4.0)
    k, q = pd.read_parquet(tmp_path / "k.parquet"), pd.read_parquet(tmp_path / "q.parquet")
    assert len(k) + len(q) == 200 == r.records and (q["kind"] == "wm").all()
    both = pd.concat([k, q]).sort_values("text").reset_index(drop=True)
    assert both.equals(pd.read_parquet(pq_in).sort_values("text").reset_index(drop=True))
    # a sidecar for another version of the file is refused
    other = _jsonl(tmp_path / "m.jsonl", data["docs"][:50])
    _scan(data, [other], tmp_path / "o.parquet")
    _jsonl(other, data["docs"][:49])
    with pytest.raises(UserError, match="changed since it was scanned"):
        filter_corpus(other, scores=tmp_path / "o.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl", fpr=0.01)


# --------------------------------------------------------------------------------------- mix
@pytest.fixture(scope="module")
def vault(data):
    from collapselab.provenance.vault import init_vault

    v = init_vault(data["dir"] / "vault")
    v.add_texts([(f"sotu{i}", t) for i, t in enumerate(data["human"][:150])], source="SOTU", licence="public domain",
                captured_before="2020-01-01")
    v.seal("s1")
    return v


def test_mix_guarantees_the_human_share(data, vault, tmp_path):
    inp = _jsonl(tmp_path / "web.jsonl", data["docs"][:500])
    out = tmp_path / "train.jsonl"
    r = mix_corpus([inp], vault=vault.path, min_human=0.2, out=out, seed=7)
    assert r.human_records == 125 and r.human_share >= 0.2 and r.total == 625
    lines = out.read_bytes().splitlines(True)
    recs = [json.loads(x) for x in lines]
    human = [x for x in recs if x.get("source") == "vault:s1"]
    assert len(human) == 125 and len(lines) == 625
    snap = vault.snapshot("s1")
    assert {x["vault_sha256"] for x in human} <= set(snap.hashes)
    assert [x for x in lines if b'"vault:' not in x] == inp.read_bytes().splitlines(True)  # inputs byte for byte, in order
    first_human = [i for i, x in enumerate(recs) if x.get("source")][:3]
    assert first_human[0] < 300  # interleaved, not appended
    m = json.loads(Path(str(out) + ".json").read_text())
    assert m["vault"]["merkle_root"] == snap.merkle_root and m["counts"]["human"] == 125
    assert m["sources"][0]["records"] == 500 and m["output"]["sha256"] == r.output_sha256
    again = mix_corpus([inp], vault=vault.path, min_human=0.2, out=out, seed=7)
    assert again.skipped
    other = mix_corpus([inp], vault=vault.path, min_human=0.2, out=tmp_path / "t2.jsonl", seed=7)
    assert (tmp_path / "t2.jsonl").read_bytes() == out.read_bytes() and other.output_sha256 == r.output_sha256
    with pytest.raises(UserError, match="holds 150"):
        mix_corpus([inp], vault=vault.path, min_human=0.5, out=tmp_path / "t3.jsonl")
    assert not (tmp_path / "t3.jsonl").exists()


def test_scan_with_the_perplexity_detector(data, tmp_path):
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.detect.base import chunk
    from collapselab.provenance.vault import init_vault

    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=3000, split_seed=0)
    ref = corpus.vocab.decode(chunk(corpus.pool.take(np.arange(4000)), 5))  # 800 human docs, not in the mixture
    v = init_vault(tmp_path / "v")
    v.add_texts([(f"p{i}", t) for i, t in enumerate(ref)], source="SOTU", licence="public domain", captured_before="2020-01-01")
    v.seal("ref")
    human = _jsonl(tmp_path / "h.jsonl", [{"text": t} for t in data["human"]])
    r = scan_corpus([human], vocab=data["vocab"], out=tmp_path / "p.parquet", detector="perplexity",
                    reference_vault=v.path, fpr_target=0.05)
    assert r.fpr <= 0.05 and r.fpr_source == "measured on 400 held-out vault documents"
    assert r.rule.startswith("score > ") and r.flagged_share < 0.15  # human text: about the target FPR
    assert r.low == 0.0 and r.estimate < 0.1  # all human: the estimate's CI reaches 0
    side = pd.read_parquet(tmp_path / "p.parquet")
    assert len(side) == 700 and side["p_value"].isna().all() and (side["score"] > r.threshold).sum() == r.flagged
    with pytest.raises(UserError, match="no p-value"):
        filter_corpus(human, scores=tmp_path / "p.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl", fpr=0.01)
    f = filter_corpus(human, scores=tmp_path / "p.parquet", out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl",
                      threshold=r.threshold + 1e-12)
    assert f.kept + f.quarantined == 700
    with pytest.raises(UserError, match="needs --vault"):
        scan_corpus([human], vocab=data["vocab"], out=tmp_path / "x.parquet", detector="perplexity")
