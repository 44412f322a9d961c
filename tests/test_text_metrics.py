"""Text metrics and the CSR token container against naive reference implementations."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences
from collapselab.metrics import lexical, tail


# ----------------------------------------------------------------------------- naive references
def naive_mattr(tokens: list[int], window: int) -> float:
    if not tokens:
        return 0.0
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    ratios = [len(set(tokens[i : i + window])) / window for i in range(len(tokens) - window + 1)]
    return sum(ratios) / len(ratios)


def naive_ngrams(items: list[list[int]], n: int) -> list[tuple[int, ...]]:
    return [tuple(it[i : i + n]) for it in items for i in range(len(it) - n + 1)]


def naive_distinct(items: list[list[int]], n: int) -> float:
    grams = naive_ngrams(items, n)
    return len(Counter(grams)) / len(grams) if grams else 0.0


def naive_entropy(tokens: list[int]) -> float:
    if not tokens:
        return 0.0
    c = Counter(tokens)
    return -sum(v / len(tokens) * math.log2(v / len(tokens)) for v in c.values())


def naive_rare(human: list[int], max_count: int) -> list[int]:
    c = Counter(human)
    return sorted(w for w, k in c.items() if 1 <= k <= max_count and w not in (0, 1, 2))


def random_items(rng: np.random.Generator, n_items: int, V: int, max_len: int = 12, zipf: bool = True) -> list[list[int]]:
    p = 1.0 / np.arange(1, V + 1) ** (1.2 if zipf else 0.0)
    p /= p.sum()
    return [rng.choice(V, size=int(rng.integers(0, max_len + 1)), p=p).tolist() for _ in range(n_items)]


SEEDS = [0, 1, 2, 3]


# ----------------------------------------------------------------------------- lexical
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [1, 2, 7, 50, 500])
def test_mattr_matches_sliding_window(seed, window):
    rng = np.random.default_rng(seed)
    toks = rng.choice(40, size=int(rng.integers(1, 400)), p=np.r_[[0.3], np.full(39, 0.7 / 39)]).astype(np.int32)
    assert lexical.mattr(toks, window) == pytest.approx(naive_mattr(toks.tolist(), window), rel=1e-12)


def test_mattr_hand_made():
    toks = np.array([5, 5, 6, 5, 7, 7], dtype=np.int32)
    # windows of 3: [5,5,6] 2, [5,6,5] 2, [6,5,7] 3, [5,7,7] 2 -> 9 / 12
    assert lexical.mattr(toks, 3) == pytest.approx(9 / 12)
    assert lexical.mattr(toks, 6) == pytest.approx(3 / 6)  # one window = TTR
    assert lexical.mattr(toks, 100) == pytest.approx(3 / 6)  # shorter than the window: TTR
    assert lexical.mattr(toks, 1) == pytest.approx(1.0)
    assert lexical.mattr(np.zeros(0, np.int32), 10) == 0.0
    # all distinct
    assert lexical.mattr(np.arange(3, 1003, dtype=np.int32), 500) == pytest.approx(1.0)
    # a constant stream
    assert lexical.mattr(np.full(1000, 9, np.int32), 500) == pytest.approx(1 / 500)


@pytest.mark.parametrize("seed", SEEDS)
def test_ttr_vocab_entropy_match_counter(seed):
    rng = np.random.default_rng(seed)
    items = random_items(rng, 60, 50)
    seqs = TokenSequences.from_lists(items)
    flat = [t for it in items for t in it]
    assert lexical.vocab_size(seqs.tokens) == len(set(flat))
    assert lexical.ttr(seqs.tokens) == pytest.approx(len(set(flat)) / len(flat))
    assert lexical.entropy(seqs.tokens) == pytest.approx(naive_entropy(flat), rel=1e-12)


def test_lexical_hand_made():
    toks = np.array([3, 3, 4, 5], dtype=np.int32)
    assert lexical.vocab_size(toks) == 3
    assert lexical.ttr(toks) == pytest.approx(0.75)
    assert lexical.entropy(toks) == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    assert lexical.entropy(np.full(10, 7, np.int32)) == 0.0
    assert lexical.entropy(np.arange(3, 11, dtype=np.int32)) == pytest.approx(3.0)
    empty = np.zeros(0, np.int32)
    assert lexical.vocab_size(empty) == 0 and lexical.ttr(empty) == 0.0 and lexical.entropy(empty) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_distinct_n_matches_counter_within_items(seed, n):
    rng = np.random.default_rng(seed)
    items = random_items(rng, 80, 20, max_len=6)  # short items: many n-grams would cross boundaries
    seqs = TokenSequences.from_lists(items)
    assert lexical.distinct_n(seqs, n, 20) == pytest.approx(naive_distinct(items, n), rel=1e-12)


def test_distinct_n_never_counts_across_items():
    # "3 4" occurs only across the boundary of items 0 and 1, "4 3" across 1 and 2
    seqs = TokenSequences.from_lists([[5, 3], [4], [3, 6], [], [7]])
    assert lexical.distinct_n(seqs, 2, 10) == pytest.approx(1.0)  # 53, 36: 2 distinct of 2
    seqs = TokenSequences.from_lists([[5, 5], [5, 5], [5]])
    assert lexical.distinct_n(seqs, 2, 10) == pytest.approx(1 / 2)
    assert lexical.distinct_n(seqs, 3, 10) == 0.0  # no item holds a trigram
    assert lexical.distinct_n(TokenSequences.from_lists([[1, 2], [1, 2, 1, 2]]), 2, 10) == pytest.approx(2 / 4)


# ----------------------------------------------------------------------------- n-gram keys
@pytest.mark.parametrize("V,n", [(10, 3), (1000, 4), (20000, 5), (2**31 - 1, 3)])
def test_ngram_keys_are_injective_and_stay_inside_items(V, n):
    rng = np.random.default_rng(V % 97 + n)
    items = [rng.integers(0, min(V, 50), size=int(rng.integers(0, 8))).tolist() for _ in range(300)]
    items = [[t * (V // 50) if V > 50 else t for t in it] for it in items]  # spread ids over the space
    seqs = TokenSequences.from_lists(items)
    k = ngrams.keys(seqs, n, V)
    grams = naive_ngrams(items, n)
    assert len(k) == len(grams)
    assert k.dtype == np.int64
    # same n-gram <-> same key
    by_gram: dict[tuple, set] = {}
    for g, key in zip(grams, k.tolist()):
        by_gram.setdefault(g, set()).add(key)
    assert all(len(s) == 1 for s in by_gram.values())
    assert len({next(iter(s)) for s in by_gram.values()}) == len(by_gram)
    # and the keys are the keys of exactly these windows, in order
    if grams:
        assert np.array_equal(k, ngrams.encode(np.array(grams, dtype=np.int64).reshape(len(grams), n), V))


def test_exact_keys_are_base_v_numbers():
    seqs = TokenSequences.from_lists([[1, 2, 3], [4, 5]])
    assert ngrams.exact(10, 3)
    assert ngrams.keys(seqs, 3, 10).tolist() == [123]
    assert ngrams.keys(seqs, 2, 10).tolist() == [12, 23, 45]
    assert ngrams.keys(seqs, 1, 10).tolist() == [1, 2, 3, 4, 5]
    assert ngrams.keys(seqs, 4, 10).tolist() == []
    assert not ngrams.exact(2**21, 3) and ngrams.exact(2**21 - 1, 3)


# ----------------------------------------------------------------------------- tail
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("max_count", [1, 3, 10])
def test_rare_words_and_tail_retention_match_reference(seed, max_count):
    rng = np.random.default_rng(seed)
    human = [t for it in random_items(rng, 200, 120) for t in it]
    gen = [t for it in random_items(rng, 100, 150) for t in it]
    rare = tail.rare_words(np.array(human, np.int32), max_count)
    ref = naive_rare(human, max_count)
    assert rare.tolist() == ref
    assert len(ref) > 0
    expected = sum(w in set(gen) for w in ref) / len(ref)
    assert tail.tail_retention(np.array(gen, np.int32), rare) == pytest.approx(expected)


def test_tail_hand_made():
    human = np.array([0, 1, 2, 2, 2, 5, 6, 6, 7, 7, 7, 9], np.int32)
    rare = tail.rare_words(human, max_count=2)
    assert rare.tolist() == [5, 6, 9]  # 2 is <unk> (excluded), 7 occurs three times
    assert tail.tail_retention(np.array([5, 7, 7], np.int32), rare) == pytest.approx(1 / 3)
    assert tail.tail_retention(np.array([5, 6, 9, 5], np.int32), rare) == pytest.approx(1.0)
    assert tail.tail_retention(np.zeros(0, np.int32), rare) == 0.0
    assert tail.tail_retention(np.array([3], np.int32), np.zeros(0, np.int64)) == 1.0  # nothing to lose


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [2, 4])
def test_novel_ngram_rate_matches_reference(seed, n):
    rng = np.random.default_rng(seed)
    V = 30
    human_items = random_items(rng, 300, V, max_len=10)
    # half copied human text (no n-gram novel), half uniform noise (mostly novel)
    gen_items = [human_items[i][1:] for i in rng.integers(0, 300, 50)] + random_items(rng, 50, V, max_len=10, zipf=False)
    human_keys = pd.Index(pd.unique(ngrams.keys(TokenSequences.from_lists(human_items), n, V)))
    human_set = set(naive_ngrams(human_items, n))
    grams = naive_ngrams(gen_items, n)
    expected = sum(g not in human_set for g in grams) / len(grams)
    assert 0.1 < expected < 0.9
    got = tail.novel_ngram_rate(TokenSequences.from_lists(gen_items), human_keys, n, V)
    assert got == pytest.approx(expected)


def test_novel_ngram_rate_hand_made():
    V = 10
    human = TokenSequences.from_lists([[3, 4, 5], [6, 7]])
    hk = pd.Index(pd.unique(ngrams.keys(human, 2, V)))
    # "5 6" is only a cross-item pair of the human data: it must count as novel
    gen = TokenSequences.from_lists([[3, 4], [5, 6], [6, 7, 8]])
    assert tail.novel_ngram_rate(gen, hk, 2, V) == pytest.approx(2 / 4)
    assert tail.novel_ngram_rate(TokenSequences.from_lists([[3], [4]]), hk, 2, V) == 0.0


# ----------------------------------------------------------------------------- TokenSequences
@pytest.mark.parametrize("seed", SEEDS)
def test_token_sequences_round_trips(seed):
    rng = np.random.default_rng(seed)
    items = random_items(rng, 50, 1000)
    seqs = TokenSequences.from_lists(items)
    assert seqs.to_lists() == items
    assert len(seqs) == 50 and seqs.n_tokens == sum(map(len, items))
    assert seqs.lengths.tolist() == [len(x) for x in items]
    assert seqs.item_index().tolist() == [i for i, x in enumerate(items) for _ in x]
    idx = rng.integers(0, 50, size=70)  # repeats and any order
    assert seqs.take(idx).to_lists() == [items[i] for i in idx]
    assert seqs.take(np.zeros(0, np.int64)) == TokenSequences.empty()
    parts = [seqs.take(np.arange(0, 10)), TokenSequences.empty(), seqs.take(np.arange(10, 50))]
    assert TokenSequences.concat(parts) == seqs
    assert TokenSequences.concat([seqs, seqs]).to_lists() == items + items
    assert TokenSequences.concat([]) == TokenSequences.empty()
    assert TokenSequences.from_lists([]) == TokenSequences.empty()
    assert TokenSequences.from_lists([[], [], []]).to_lists() == [[], [], []]
    assert seqs.tokens.dtype == np.int32 and seqs.offsets.dtype == np.int64


def test_token_sequences_validation_and_equality():
    with pytest.raises(ValueError):
        TokenSequences(np.array([1, 2, 3]), np.array([1, 3]))
    with pytest.raises(ValueError):
        TokenSequences(np.array([1, 2, 3]), np.array([0, 2]))
    a = TokenSequences.from_lists([[1, 2], [3]])
    assert a == TokenSequences.from_lists([[1, 2], [3]])
    assert a != TokenSequences.from_lists([[1], [2, 3]])  # same tokens, other boundaries
    assert a != TokenSequences.from_lists([[1, 2], [4]])
    assert a.item(1).tolist() == [3]


# ------------------------------------------------------------------ loop diversity: self-BLEU, unigram KL
def test_unigram_kl_is_scipys_on_the_half_smoothed_counts():
    from scipy.stats import entropy

    from collapselab.metrics.suite import unigram_kl

    ref = np.array([5, 0, 3, 2])
    toks = np.array([0, 0, 2, 2, 2, 3, 9])  # 9: outside the vocabulary, ignored
    p = (ref + 0.5) / (ref + 0.5).sum()
    q = (np.bincount([0, 0, 2, 2, 2, 3], minlength=4) + 0.5) / (6 + 2.0)
    assert unigram_kl(ref, toks) == pytest.approx(entropy(p, q, base=2), rel=1e-12)
    assert unigram_kl(ref, np.repeat(np.arange(4), ref)) == pytest.approx(0.0, abs=1e-12)
    assert unigram_kl(ref, np.zeros(50, dtype=np.int64)) > unigram_kl(ref, toks) > 0  # losing words costs


def test_self_bleu_sample_spreads_over_the_set_and_is_deterministic():
    from collapselab.metrics.selfbleu import self_bleu
    from collapselab.metrics.suite import self_bleu_sample

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 12, size=1200)
    seqs = TokenSequences(rng.integers(0, 40, size=int(lengths.sum())), np.r_[0, np.cumsum(lengths)])
    idx = np.unique(np.linspace(0, 1199, 500).astype(np.int64))
    assert self_bleu_sample(seqs, 40) == self_bleu(seqs.take(idx), 40) == self_bleu_sample(seqs, 40)
    small = seqs.take(np.arange(30))
    assert self_bleu_sample(small, 40) == self_bleu(small, 40)  # fewer items than the budget: all of them
    repeated = TokenSequences.concat([small.take(np.zeros(30, dtype=np.int64))])
    assert self_bleu_sample(repeated, 40) == pytest.approx(1.0)
    assert self_bleu_sample(small, 40) < 0.9
