"""Unit tests of the interpolated Kneser-Ney n-gram model (collapselab.models.ngram).

Everything runs on tiny synthetic corpora with a small ``vocab_size`` so that exhaustive checks
(every possible next token of a context) are cheap. Ids 0, 1, 2 are ``<s>``, ``</s>``, ``<unk>``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences
from collapselab.models.ngram import BOS, EOS, NGramModel

V_SMALL = 9  # ids 2..8 are words (2 = <unk> is used as an ordinary word so that every id is seen)


def markov_items(rng: np.random.Generator, n_items: int, words: np.ndarray, stop: float = 0.2, max_len: int = 30) -> list[list[int]]:
    """Items from a first-order Markov chain with skewed, sparse-ish transitions over ``words``."""
    k = len(words)
    start = rng.dirichlet(np.full(k, 0.5))
    trans = rng.dirichlet(np.full(k, 0.3), size=k)
    items = []
    for _ in range(n_items):
        cur = rng.choice(k, p=start)
        item = [int(words[cur])]
        while rng.random() > stop and len(item) < max_len:
            cur = rng.choice(k, p=trans[cur])
            item.append(int(words[cur]))
        items.append(item)
    return items


@pytest.fixture(scope="module")
def small_items() -> list[list[int]]:
    items = markov_items(np.random.default_rng(1234), 400, np.arange(2, V_SMALL))
    seen = {t for it in items for t in it}
    assert seen == set(range(2, V_SMALL)), "the fixture must use every word id (closed vocabulary)"
    return items


@pytest.fixture(scope="module")
def small_data(small_items) -> TokenSequences:
    return TokenSequences.from_lists(small_items)


@pytest.fixture(scope="module")
def small_model(small_data) -> NGramModel:
    return NGramModel(order=3, vocab_size=V_SMALL).fit(small_data)


@pytest.fixture(scope="module")
def zipf_data() -> TokenSequences:
    """A larger, Zipf-like corpus (300 ids) for the diversity knobs."""
    rng = np.random.default_rng(7)
    V = 300
    p = 1.0 / np.arange(1, V - 2) ** 1.1
    p /= p.sum()
    items = []
    for _ in range(1500):
        n = int(rng.integers(3, 15))
        # a little local structure: each item repeats a "topic" word
        topic = int(rng.choice(V - 3, p=p)) + 3
        toks = rng.choice(V - 3, size=n, p=p) + 3
        toks[:: 3] = topic
        items.append(toks.tolist())
    return TokenSequences.from_lists(items)


def next_token_probs(model: NGramModel, context: list[int], V: int) -> np.ndarray:
    """p(w | context) for every id w in 0..V-1 (index 1 = </s>; index 0 = <s> stays 0).

    Item ``context + [w]`` scores w as its token number ``len(context)``; item ``context`` scores
    </s> at that same position.
    """
    items = [context + [w] for w in range(2, V)] + [context]
    data = TokenSequences.from_lists(items)
    logp, item = model.token_log_probs(data)
    starts = np.concatenate([[0], np.cumsum(model.n_scored(data))[:-1]])
    assert np.array_equal(item, np.repeat(np.arange(len(items)), model.n_scored(data)))
    lp = logp[starts + len(context)]
    p = np.zeros(V)
    p[2:V] = np.exp(lp[:-1])
    p[EOS] = np.exp(lp[-1])
    return p


def trigram_continuations(items: list[list[int]]) -> dict[tuple[int, int], Counter]:
    """Raw counts of the next token (</s> included) after each padded 2-token history."""
    out: dict[tuple[int, int], Counter] = {}
    for it in items:
        s = [BOS, BOS] + it + [EOS]
        for i in range(2, len(s)):
            out.setdefault((s[i - 2], s[i - 1]), Counter())[s[i]] += 1
    return out


def pick_contexts(items: list[list[int]]) -> dict[str, list[int]]:
    """A seen trigram context, an unseen one (both words seen, never adjacent) and short ones."""
    seen_pairs = Counter((a, b) for it in items for a, b in zip(it, it[1:]))
    seen = list(max(seen_pairs, key=seen_pairs.get))
    words = sorted({t for it in items for t in it})
    unseen = next([a, b] for a in words for b in words if (a, b) not in seen_pairs)
    return {"empty": [], "one_word": [items[0][0]], "seen": seen, "unseen": unseen}


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_next_token_distribution_sums_to_one(order, small_items, small_data):
    model = NGramModel(order=order, vocab_size=V_SMALL).fit(small_data)
    for name, ctx in pick_contexts(small_items).items():
        p = next_token_probs(model, ctx, V_SMALL)
        assert p.sum() == pytest.approx(1.0, abs=1e-9), (order, name, p)
        assert np.all(p[1:] > 0), (order, name, p)


def test_normalises_with_unseen_words_and_discount_given(small_data):
    """A larger id space than the data uses: unseen ids get the add-alpha mass, sums stay 1."""
    V = 15
    for discount in (None, 0.3, 0.9):
        model = NGramModel(order=3, vocab_size=V, discount=discount).fit(small_data)
        for ctx in ([], [3], [3, 4], [13, 14], [3, 14], [14, 3]):
            p = next_token_probs(model, ctx, V)
            assert p.sum() == pytest.approx(1.0, abs=1e-9), (discount, ctx)
            # ids 9..14 never occur: all of them get the same (small) probability
            assert np.allclose(p[9:], p[9]) and 0 < p[9] < p[3:9].min()


def test_unigram_probabilities_are_add_alpha_counts(small_items, small_data):
    """Order 1: p(w) = (c(w) + alpha) / (N + alpha (V - 1)) with </s> counted once per item."""
    alpha = 0.5
    V = 12
    model = NGramModel(order=1, vocab_size=V, alpha=alpha).fit(small_data)
    counts = Counter(t for it in small_items for t in it)
    counts[EOS] = len(small_items)
    total = sum(counts.values())
    expected = np.array([0.0] + [(counts.get(w, 0) + alpha) / (total + alpha * (V - 1)) for w in range(1, V)])
    assert np.allclose(next_token_probs(model, [], V), expected, rtol=1e-12)
    assert np.allclose(next_token_probs(model, [5, 6], V), expected, rtol=1e-12)


def test_seen_context_prefers_its_observed_continuation(small_items, small_model):
    """The interpolated estimate follows the trigram counts: in a well-attested context the most
    frequent continuation is the most probable next token, and an unseen continuation is rarer
    than any seen one."""
    cont = trigram_continuations(small_items)
    (ctx, cnt) = max(cont.items(), key=lambda kv: sum(kv[1].values()) if BOS not in kv[0] else -1)
    p = next_token_probs(small_model, list(ctx), V_SMALL)
    best = max(cnt, key=cnt.get)
    assert int(np.argmax(p)) == best
    unseen = [w for w in range(1, V_SMALL) if w not in cnt]
    if unseen:
        assert p[unseen].max() < min(p[w] for w in cnt)


def test_log_likelihood_sums_token_log_probs(small_data, small_model):
    sub = small_data.take(np.arange(20))
    logp, item = small_model.token_log_probs(sub)
    assert len(logp) == sub.n_tokens + len(sub)
    assert np.allclose(small_model.log_likelihood(sub), np.bincount(item, weights=logp, minlength=len(sub)))
    assert np.array_equal(small_model.n_scored(sub), sub.lengths + 1)
    assert small_model.perplexity(sub) == pytest.approx(float(np.exp(-logp.mean())))
    # an item's score is its chain of conditionals: the sum over the next-token table of its prefix
    it = sub.item(3).tolist()
    chain = sum(np.log(next_token_probs(small_model, it[:i], V_SMALL)[it[i]]) for i in range(len(it)))
    chain += np.log(next_token_probs(small_model, it, V_SMALL)[EOS])
    assert small_model.log_likelihood(TokenSequences.from_lists([it]))[0] == pytest.approx(chain, rel=1e-12)


# ----------------------------------------------------------------------------- sampling = scoring
def _chi2_pvalue(observed: np.ndarray, expected: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson chi-square; cells with small expectation are pooled into one."""
    observed = np.asarray(observed, float)
    expected = np.asarray(expected, float)
    small = expected < min_expected
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
        if expected[-1] == 0:
            assert observed[-1] == 0
            observed, expected = observed[:-1], expected[:-1]
    stat = float(((observed - expected) ** 2 / expected).sum())
    return stat, len(observed) - 1


def test_sampling_draws_from_the_scored_distribution(small_items, small_model):
    n = 20000
    samples = small_model.sample(n, rng=np.random.default_rng(99))
    lists = samples.to_lists()
    # first token (</s> when the item is empty)
    first = np.array([it[0] if it else EOS for it in lists])
    p_first = next_token_probs(small_model, [], V_SMALL)
    obs = np.bincount(first, minlength=V_SMALL)
    stat, df = _chi2_pvalue(obs[1:], n * p_first[1:])
    assert stats.chi2.sf(stat, df) > 1e-3, (obs, n * p_first)
    # power: the same counts clearly reject the order-1 marginal
    uni = next_token_probs(NGramModel(order=1, vocab_size=V_SMALL).fit(TokenSequences.from_lists(small_items)), [], V_SMALL)
    stat_u, df_u = _chi2_pvalue(obs[1:], n * uni[1:])
    assert stats.chi2.sf(stat_u, df_u) < 1e-6

    # second token given the first
    total_stat, total_df = 0.0, 0
    for a in range(2, V_SMALL):
        rows = [it for it in lists if it and it[0] == a]
        if len(rows) < 200:
            continue
        second = np.array([it[1] if len(it) > 1 else EOS for it in rows])
        obs2 = np.bincount(second, minlength=V_SMALL)
        p2 = next_token_probs(small_model, [a], V_SMALL)
        s, d = _chi2_pvalue(obs2[1:], len(rows) * p2[1:])
        total_stat += s
        total_df += d
    assert total_df >= 10
    assert stats.chi2.sf(total_stat, total_df) > 1e-3, (total_stat, total_df)


def test_sampled_items_respect_max_len_and_vocabulary(small_data):
    model = NGramModel(order=3, vocab_size=V_SMALL, max_len=4).fit(small_data)
    s = model.sample(3000, rng=np.random.default_rng(0))
    assert len(s) == 3000
    assert s.lengths.max() == 4 and s.lengths.min() >= 0
    assert np.all((s.tokens >= 2) & (s.tokens < V_SMALL))  # never <s> or </s> inside an item
    assert len(model.sample(0, rng=np.random.default_rng(0))) == 0


def test_sampling_never_produces_words_absent_from_training():
    """Closed-vocabulary sampler: ids the model never saw are scored, never sampled."""
    data = TokenSequences.from_lists([[3, 4, 5], [5, 4], [3, 3, 6]] * 20)
    model = NGramModel(order=2, vocab_size=50, temperature=3.0).fit(data)
    s = model.sample(5000, rng=np.random.default_rng(1))
    assert set(np.unique(s.tokens)) <= {3, 4, 5, 6}


# ----------------------------------------------------------------------------- truncation / temperature
def test_top_k_one_is_greedy(small_items, small_data):
    model = NGramModel(order=3, vocab_size=V_SMALL, top_k=1).fit(small_data)
    s = model.sample(500, rng=np.random.default_rng(3))
    distinct = {tuple(it) for it in s.to_lists()}
    assert len(distinct) == 1  # every choice is deterministic
    # every step whose trigram context has a continuation heavier than the back-off bucket takes
    # the most frequent continuation
    D = model.levels_[-1].discount
    cont = trigram_continuations(small_items)
    item = list(next(iter(distinct)))
    seq = [BOS, BOS] + item + ([EOS] if len(item) < model.max_len else [])
    checked = 0
    for i in range(2, len(seq)):
        cnt = cont.get((seq[i - 2], seq[i - 1]))
        if not cnt:
            continue
        top = max(cnt.values())
        if top - D > D * len(cnt):
            assert cnt.get(seq[i], 0) == top, (seq[:i], cnt, seq[i])
            checked += 1
    assert checked >= 1
    # the first token is the most frequent first word of the training items
    firsts = Counter(it[0] for it in small_items)
    assert item[0] == max(firsts, key=firsts.get)


def _diversity(model: NGramModel, data: TokenSequences, seed: int = 5, n: int = 2000) -> dict[str, float]:
    s = model.fit(data).sample(n, rng=np.random.default_rng(seed))
    bigrams = ngrams.keys(s, 2, model.V_)
    return {
        "types": len(np.unique(s.tokens)),
        "items": len({tuple(x) for x in s.to_lists()}),
        "bigrams": len(np.unique(bigrams)),
        "self_ppl": model.perplexity(s),  # how predictable the samples are to their own model
    }


def test_truncation_and_temperature_change_diversity(zipf_data):
    """Measured (seed 5, 2000 samples): base 292 types / 1843 items / 5485 bigrams; top_p=0.9:
    193 / 1790 / 3365; temperature 0.7: 273 / 1628 / 3226; top_k=5: 7 / 763 / 31; temperature
    1.5: 296 / 1961 / 6985."""
    V = 300
    base = _diversity(NGramModel(order=3, vocab_size=V), zipf_data)
    for kw in ({"top_p": 0.9}, {"top_p": 0.5}, {"temperature": 0.7}, {"top_k": 5}):
        d = _diversity(NGramModel(order=3, vocab_size=V, **kw), zipf_data)
        assert d["types"] < base["types"], (kw, d, base)
        assert d["items"] < base["items"], (kw, d, base)
        assert d["bigrams"] < 0.8 * base["bigrams"], (kw, d, base)
        assert d["self_ppl"] < 0.8 * base["self_ppl"], (kw, d, base)
    # a hotter sampler spreads mass to the tail
    hot = _diversity(NGramModel(order=3, vocab_size=V, temperature=1.5), zipf_data)
    assert hot["types"] >= base["types"] and hot["items"] > base["items"], (hot, base)
    assert hot["bigrams"] > 1.1 * base["bigrams"], (hot, base)
    assert hot["self_ppl"] > 1.1 * base["self_ppl"], (hot, base)


def test_small_data_sharpness_knobs(small_data):
    """On the 7-word Markov corpus every type and bigram shows up anyway, so sharpness is read from
    how predictable the samples are to their own model (measured: base 3.91; temperature 0.5: 2.92;
    top_p 0.9: 3.49; top_k 2: 2.71; temperature 2: 5.66). Note: top_p can *lengthen* items here
    (it may drop </s>), so distinct whole items is not a monotone measure on this corpus."""
    base = _diversity(NGramModel(order=3, vocab_size=V_SMALL), small_data)["self_ppl"]
    for kw in ({"temperature": 0.5}, {"top_p": 0.9}, {"top_k": 2}):
        sharp = _diversity(NGramModel(order=3, vocab_size=V_SMALL, **kw), small_data)["self_ppl"]
        assert sharp < 0.95 * base, (kw, sharp, base)
    hot = _diversity(NGramModel(order=3, vocab_size=V_SMALL, temperature=2.0), small_data)["self_ppl"]
    assert hot > 1.2 * base, (hot, base)


# ----------------------------------------------------------------------------- determinism, API
def test_fit_returns_self_and_sampling_is_deterministic(small_data):
    model = NGramModel(order=3, vocab_size=V_SMALL)
    assert model.fit(small_data) is model
    a = model.sample(300, rng=np.random.default_rng(11))
    b = model.sample(300, rng=np.random.default_rng(11))
    c = model.sample(300, rng=np.random.default_rng(12))
    assert isinstance(a, TokenSequences)
    assert a == b
    assert a != c
    # a refit on the same data gives the same numbers
    other = NGramModel(order=3, vocab_size=V_SMALL).fit(small_data)
    assert other.sample(300, rng=np.random.default_rng(11)) == a
    assert np.array_equal(other.log_likelihood(small_data), model.log_likelihood(small_data))


def test_unfitted_model_and_bad_input_raise(small_data):
    with pytest.raises(RuntimeError):
        NGramModel().sample(3, rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError):
        NGramModel().log_likelihood(small_data)
    with pytest.raises(ValueError):
        NGramModel(order=0).fit(small_data)
    with pytest.raises(ValueError):
        NGramModel().fit(TokenSequences.empty())


def test_vocab_size_defaults_to_max_id_plus_one(small_data):
    model = NGramModel(order=2).fit(small_data)
    assert model.V_ == V_SMALL
    assert next_token_probs(model, [4], V_SMALL).sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_order_fits_scores_and_samples(order, small_data):
    model = NGramModel(order=order, vocab_size=V_SMALL).fit(small_data)
    assert len(model.levels_) == order - 1
    s = model.sample(200, rng=np.random.default_rng(order))
    assert len(s) == 200 and s.n_tokens > 0
    ll = model.log_likelihood(s)
    assert np.all(np.isfinite(ll)) and np.all(ll < 0)


def test_higher_order_fits_training_text_better(small_data):
    ppl = [NGramModel(order=o, vocab_size=V_SMALL).fit(small_data).perplexity(small_data) for o in (1, 2, 3)]
    assert ppl[0] > ppl[1] > ppl[2]


# ----------------------------------------------------------------------------- hashed keys
def _hashed_corpus(V: int) -> tuple[list[list[int]], dict[int, int]]:
    """The small Markov corpus with its 7 word ids spread over a huge id space."""
    items = markov_items(np.random.default_rng(1234), 400, np.arange(2, V_SMALL))
    mapping = {2: 2, 3: 17, 4: 999, 5: 5000, 6: 12345, 7: V - 2, 8: V - 1}
    return [[mapping[t] for t in it] for it in items], mapping


@pytest.mark.parametrize("order", [5, 6])
def test_hashed_keys_normalise_and_match_exact_keys(order):
    V = 20000
    assert not ngrams.exact(V, order)  # the top level's n-gram keys are hashed
    if order == 6:
        assert not ngrams.exact(V, order - 1)  # and so are its context keys
    items, mapping = _hashed_corpus(V)
    alpha = 1e-9  # so that the unigram level hardly depends on V
    big = NGramModel(order=order, vocab_size=V, alpha=alpha).fit(TokenSequences.from_lists(items))
    small_items = markov_items(np.random.default_rng(1234), 400, np.arange(2, V_SMALL))
    small = NGramModel(order=order, vocab_size=V_SMALL, alpha=alpha).fit(TokenSequences.from_lists(small_items))
    assert ngrams.exact(V_SMALL, order)
    # same corpus up to a renaming of ids: the same scores, whichever key path is used
    assert np.allclose(big.log_likelihood(TokenSequences.from_lists(items)),
                       small.log_likelihood(TokenSequences.from_lists(small_items)), rtol=1e-6)
    # exhaustive normalisation over all 20000 ids for a seen and an unseen long context
    for ctx in (items[0][:order], [17, 999, 999, 5000, 17, 12345][:order - 1], []):
        p = next_token_probs(big, ctx, V)
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
    # sampling: the empirical first-token law matches the scored one
    n = 10000
    s = big.sample(n, rng=np.random.default_rng(4))
    assert set(np.unique(s.tokens)) <= set(mapping.values())
    first = np.array([x[0] if len(x) else EOS for x in s.to_lists()])
    p_first = next_token_probs(big, [], V)
    ids = [EOS] + list(mapping.values())
    obs = np.array([(first == w).sum() for w in ids])
    stat, df = _chi2_pvalue(obs, n * p_first[ids])
    assert stats.chi2.sf(stat, df) > 1e-3
    # and the generated text is as likely under the model as its training text (not unigram noise)
    ppl_train = big.perplexity(TokenSequences.from_lists(items))
    assert big.perplexity(s) < 1.3 * ppl_train


# ----------------------------------------------------------------------------- perplexity
def test_perplexity_lower_on_training_text_than_on_shuffled_words(zipf_data, small_data):
    for data, V in ((small_data, V_SMALL), (zipf_data, 300)):
        model = NGramModel(order=3, vocab_size=V).fit(data)
        rng = np.random.default_rng(0)
        shuffled = TokenSequences(rng.permutation(data.tokens), data.offsets)
        assert model.perplexity(data) < 0.9 * model.perplexity(shuffled)


def test_out_of_vocabulary_words_get_finite_log_probability(small_data):
    V = 20
    model = NGramModel(order=3, vocab_size=V).fit(small_data)
    held = TokenSequences.from_lists([[3, 15, 4], [19, 19], [12, 3, 4, 5], [3, 4]])
    logp, _ = model.token_log_probs(held)
    assert np.all(np.isfinite(logp)) and np.all(logp < 0)
    ll = model.log_likelihood(held)
    # an unseen word costs more than a seen one in the same place
    assert ll[0] < model.log_likelihood(TokenSequences.from_lists([[3, 5, 4]]))[0]
    assert np.isfinite(model.perplexity(held))
    # ids beyond vocab_size are clamped rather than crashing or giving -inf
    beyond = model.token_log_probs(TokenSequences.from_lists([[3, 4000, 4]]))[0]
    assert np.all(np.isfinite(beyond))


# ----------------------------------------------------------------------------- low temperature
def test_low_temperature_sampling_picks_the_mode_in_every_context():
    """At temperature 0.05 a continuation seen twice as often is 2**20 times more likely: sampling
    is greedy in practice. Context 35 comes after 28 deterministic contexts in the sampler's key
    order, whose weights (about 0.8 each at this temperature) fill the global cumulative sum.

    BUG (src/collapselab/models/ngram.py, _level_sampler / _next_tokens): the sampler looks up
    ``base[c] + u`` in one global ``cumsum`` of the temperature-scaled weights of *all* contexts.
    Context 35's weights (about 0.095**20 = 4e-21) vanish next to base = 23, so every draw lands
    past the block and is clipped to its *last* kept entry: the least frequent continuation is
    sampled instead of the most frequent one.
    """
    items = [[w] for w in range(3, 31) for _ in range(50)]
    items += [[35, 3]] * 30 + [[35, x] for x in range(4, 23) for _ in range(15)]
    model = NGramModel(order=2, vocab_size=40, temperature=0.05).fit(TokenSequences.from_lists(items))
    s = model.sample(1000, rng=np.random.default_rng(0))
    lists = s.to_lists()
    assert sum(it[:1] == [35] for it in lists) > 990  # context <s>: first in key order, fine
    after_35 = Counter(it[1] for it in lists if len(it) > 1 and it[0] == 35)
    assert after_35[3] >= 0.95 * sum(after_35.values()), after_35


def test_very_low_temperature_unigram_sampler_picks_the_mode():
    """Order 1 at temperature 0.01: weights are ``count ** 100``.

    BUG (src/collapselab/models/ngram.py, _unigram_sampler): 3000 ** 100 overflows to inf, the
    cumulative weights become all inf, ``u = random * inf`` is inf, and searchsorted clips every
    draw to the *last* (least frequent) word: the sampler emits only the rarest word.
    """
    items = [[3] * 30 + [4] for _ in range(100)]
    model = NGramModel(order=1, vocab_size=8, temperature=0.01, max_len=20).fit(TokenSequences.from_lists(items))
    with np.errstate(over="ignore"):
        s = model.sample(200, rng=np.random.default_rng(0))
    counts = Counter(s.tokens.tolist())
    assert counts[3] >= 0.95 * s.n_tokens, counts
