"""``scan --detector fast-detectgpt | binoculars`` and ``filter --scores`` on their sidecars.

Tiny random language models (tests/lm_tiny.py) stand in for SmolLM2. "Human" text is random word
strings, synthetic text the scoring model's own samples. The scan must score as the detector does,
set its threshold at --fpr-target on all the vault's human text, write conformal p-values that
``filter --fpr`` uses unchanged, and record its settings in the manifest.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collapselab.errors import UserError

pytest.importorskip("transformers")
pytest.importorskip("torch")

from lm_tiny import make_tiny_lm, random_texts, sample_texts  # noqa: E402

from collapselab.detect.calibration import threshold_at_fpr  # noqa: E402
from collapselab.detect.lm import Binoculars, FastDetectGPT  # noqa: E402
from collapselab.pipeline import filter_corpus, scan_corpus  # noqa: E402

N_VAULT, N_HUMAN, N_SYN = 100, 60, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from collapselab.provenance.vault import init_vault

    d = tmp_path_factory.mktemp("scanlm")
    a, b = make_tiny_lm(d / "a", seed=0), make_tiny_lm(d / "b", seed=1)
    v = init_vault(d / "vault")
    v.add_texts([(f"h{i}", t) for i, t in enumerate(random_texts(N_VAULT, seed=10, low=8, high=30))],
                source="random words", licence="public domain", captured_before="2020-01-01")
    v.seal("ref")
    small = init_vault(d / "small")
    small.add_texts([(f"s{i}", t) for i, t in enumerate(random_texts(10, seed=12))], source="random words",
                    licence="public domain", captured_before="2020-01-01")
    small.seal("ref")
    syn = sample_texts(a, 2 * N_SYN, 20, seed=3)
    docs = [{"text": t, "kind": "human"} for t in random_texts(N_HUMAN, seed=11, low=8, high=30)]
    docs += [{"text": t, "kind": "synthetic", "id": f"s{i}"} for i, t in enumerate(syn[:N_SYN])]
    docs = [docs[i] for i in np.random.default_rng(0).permutation(len(docs))]
    docs.insert(7, {"text": ""})  # no token: NaN score, p-value 1, never flagged
    files = {"mix": docs, "cal": [{"text": t} for t in syn[N_SYN:]]}
    for name, records in files.items():
        (d / f"{name}.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n", encoding="utf-8")
    return dict(dir=d, a=a, b=b, vault=v.path, small=small.path, vault_texts=v.texts("ref"), docs=docs,
                mix=d / "mix.jsonl", cal=d / "cal.jsonl")


def _conformal(human: np.ndarray, score: np.ndarray) -> np.ndarray:
    s = np.where(np.isnan(score), -np.inf, score)
    return np.array([(1 + np.sum(human >= x)) / (len(human) + 1) for x in s])


def test_fast_detectgpt_scan_calibrates_on_all_the_vault(data, tmp_path):
    out = tmp_path / "s.parquet"
    r = scan_corpus([data["mix"]], out=out, detector="fast-detectgpt", lm_model=data["a"], reference_vault=data["vault"],
                    fpr_target=0.05, tpr_from=[data["cal"]], batch_tokens=300, max_tokens=64, jobs=1)
    det = FastDetectGPT(data["a"], max_tokens=64, batch_tokens=300)  # the scan's batches: the same floats
    human = det.score(data["vault_texts"])
    texts = [d["text"] for d in data["docs"]]
    want = det.score(texts)
    assert r.threshold == pytest.approx(threshold_at_fpr(human, 0.05), rel=1e-6)
    assert r.rule == f"score > {r.threshold:.6g}"
    assert r.fpr <= 0.05 and r.fpr == np.mean(human > r.threshold)
    assert r.fpr_source == f"measured on the {N_VAULT} vault documents the threshold was set on"
    assert r.tpr > 0.9 and r.tpr_source.startswith(f"measured on {N_SYN}")
    side = pd.read_parquet(out)
    assert len(side) == len(texts) and set(side["scheme"]) == {"fast-detectgpt"}
    np.testing.assert_allclose(side["score"], want, rtol=1e-5, equal_nan=True)
    assert np.isnan(side["score"][7]) and side["p_value"][7] == 1.0 and side["n_tokens"][7] == 0
    assert side["n_tokens"].tolist() == [len(t) for t in det.encode(texts)] == side["n_scored"].tolist()
    np.testing.assert_allclose(side["p_value"], _conformal(human, side["score"].to_numpy()), rtol=1e-12)
    assert side["z"].isna().all() and side["n_green"].isna().all()
    truth = np.array([d.get("kind") == "synthetic" for d in data["docs"]])
    assert r.flagged == int((side["score"] > r.threshold).sum())
    assert (side["score"][truth] > r.threshold).all() and (side["score"][~truth] > r.threshold).mean() < 0.15
    share = N_SYN / len(texts)
    assert r.low <= share <= r.high
    man = json.loads((tmp_path / "s.parquet.json").read_text())["params"]
    assert {k: man[k] for k in ("detector", "lm_model", "performer", "dtype", "max_tokens", "batch_tokens", "device",
                                "fpr_target", "snapshot")} == {
        "detector": "fast-detectgpt", "lm_model": str(data["a"]), "performer": None, "dtype": "float32", "max_tokens": 64,
        "batch_tokens": 300, "device": "cpu", "fpr_target": 0.05, "snapshot": "ref"}
    assert len(man["lm_model_sha256"]) == 64 and man["merkle_root"]


def test_filter_fpr_uses_the_lm_sidecar_unchanged(data, tmp_path):
    side_path = tmp_path / "s.parquet"
    scan_corpus([data["mix"]], out=side_path, detector="fast-detectgpt", lm_model=data["a"],
                reference_vault=data["vault"], fpr_target=0.05, jobs=1)
    side = pd.read_parquet(side_path)
    kept, quar = tmp_path / "k.jsonl", tmp_path / "q.jsonl"
    f = filter_corpus(data["mix"], scores=side_path, out=kept, quarantine=quar, fpr=0.05)
    hit = (side["p_value"] <= 0.05).to_numpy()
    assert 0 < hit.sum() < len(side) and f.quarantined == f.flagged == hit.sum() and f.kept == len(side) - hit.sum()
    lines = data["mix"].read_text().splitlines()
    assert quar.read_text().splitlines() == [x for x, h in zip(lines, hit) if h]
    assert kept.read_text().splitlines() == [x for x, h in zip(lines, hit) if not h]
    why = [json.loads(x) for x in Path(str(quar) + ".reasons.jsonl").read_text().splitlines()]
    assert [w["line"] for w in why] == (np.flatnonzero(hit) + 1).tolist()
    assert all(w["p_value"] <= 0.05 and w["reason"] == "p_value <= 0.05" for w in why)
    # synthetic documents are quarantined; human ones (like the vault's) at about the rate asked for
    truth = np.array([d.get("kind") == "synthetic" for d in data["docs"]])
    assert hit[truth].mean() > 0.9 and hit[~truth].mean() < 0.15
    t = filter_corpus(data["mix"], scores=side_path, out=tmp_path / "k2.jsonl", quarantine=tmp_path / "q2.jsonl",
                      threshold=0.0)
    assert t.flagged == int((side["score"] >= 0.0).sum())


def test_binoculars_scan_from_the_cli(data, tmp_path, run_main):
    code, out, err = run_main(["scan", data["mix"], "--detector", "binoculars", "--lm-model", data["a"], "--performer",
                               data["b"], "--vault", data["vault"], "--max-tokens", "10", "--batch-tokens", "64",
                               "--dtype", "float32", "--device", "cpu", "--tpr", "0.5", "--n-tpr", "40", "-o", "b.parquet",
                               "--json"], tmp_path)
    assert code == 0, err
    res = json.loads(out)
    side = pd.read_parquet(tmp_path / "b.parquet")
    det = Binoculars(observer=data["a"], performer=data["b"], max_tokens=10)
    np.testing.assert_allclose(side["score"], det.score([d["text"] for d in data["docs"]]), rtol=1e-5, equal_nan=True)
    assert set(side["scheme"]) == {"binoculars"} and res["tpr_source"] == "given (n=40)"
    assert res["threshold"] == pytest.approx(threshold_at_fpr(det.score(data["vault_texts"]), 0.01), rel=1e-6)
    man = json.loads((tmp_path / "b.parquet.json").read_text())["params"]
    assert man["performer"] == str(data["b"]) and len(man["performer_sha256"]) == 64 and man["max_tokens"] == 10
    assert man["lm_model_sha256"] != man["performer_sha256"]


def test_rerun_is_skipped_without_reading_the_vault_and_settings_count(data, tmp_path, monkeypatch):
    from collapselab.pipeline import scorers as scan_mod

    kw = dict(out=tmp_path / "s.parquet", detector="fast-detectgpt", lm_model=data["a"], reference_vault=data["vault"],
              max_tokens=16, jobs=1)
    first = scan_corpus([data["mix"]], **kw)
    before = (tmp_path / "s.parquet").read_bytes()

    def no_calibration(self):
        raise AssertionError("a skipped rerun calibrated again")

    monkeypatch.setattr(scan_mod.LMScorer, "calibrate", no_calibration)
    again = scan_corpus([data["mix"]], **kw)
    assert again.skipped and again.threshold == first.threshold
    monkeypatch.undo()
    other = scan_corpus([data["mix"]], **{**kw, "max_tokens": 8})  # another setting: scanned again
    assert not other.skipped and (tmp_path / "s.parquet").read_bytes() != before


def test_the_scorer_travels_to_a_worker_without_its_models(data):
    from collapselab.pipeline.scorers import LMScorer as _LMScorer

    scorer = _LMScorer(FastDetectGPT(data["a"]), data["vault"], None, fpr_target=0.01, threads=1)
    scorer.calibrate()
    texts = [d["text"] for d in data["docs"][:10]]
    copy = pickle.loads(pickle.dumps(scorer))
    assert "_loaded" not in copy.detector.__dict__ and copy.snapshot == "ref"
    a, b = scorer.score(texts), copy.score(texts)
    for k in ("score", "p_value", "n_tokens"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("args, message", [
    (["--detector", "binoculars", "--lm-model", "{a}", "--vault", "{vault}"], "needs --performer"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}"], "needs --vault"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}", "--performer", "{b}", "--vault", "{vault}"], "--performer"),
    (["--detector", "fast-detectgpt", "--lm-model", "{dir}/nope", "--vault", "{vault}"], "not a language model folder"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}", "--vault", "{vault}", "--dtype", "float16"], "dtype"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}", "--vault", "{vault}", "--batch-tokens", "0"], "batch_tokens"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}", "--vault", "{vault}", "--device", "tpu"], "unknown device"),
    (["--detector", "fast-detectgpt", "--lm-model", "{a}", "--vault", "{small}"], "holds 10 documents"),
])
def test_bad_lm_settings_are_one_line_errors(data, tmp_path, run_main, args, message):
    fill = {k: str(data[k]) for k in ("a", "b", "vault", "small", "dir")}
    code, out, err = run_main(["scan", data["mix"], *[x.format(**fill) for x in args], "-o", "x.parquet"], tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.parquet").exists()


def test_cuda_without_a_gpu_is_a_one_line_error(data, tmp_path, run_main):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    code, _, err = run_main(["scan", data["mix"], "--detector", "fast-detectgpt", "--lm-model", data["a"], "--vault",
                             data["vault"], "--device", "cuda", "-o", "x.parquet"], tmp_path)
    assert code == 2 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
