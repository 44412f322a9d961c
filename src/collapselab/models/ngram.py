"""A word-level n-gram language model: interpolated Kneser-Ney, fitted and sampled with numpy.

The model
---------
For order ``N`` (default 3) and a context ``h`` of the previous ``N-1`` tokens::

    p_N(w | h)  = max(c(h, w) - D_N, 0) / c(h) + D_N * n(h) / c(h) * p_{N-1}(w | h')

where ``h'`` drops the oldest token, ``c`` are raw counts at the top order and continuation counts
(number of distinct left extensions) below it, ``n(h)`` is the number of distinct words seen after
``h`` and ``D_k`` the absolute discount of order ``k`` (Ney's estimate ``n1 / (n1 + 2 n2)`` unless
given). The recursion ends in an add-``alpha`` unigram over the whole id space of ``vocab_size``
ids, so words the model never saw still get a small probability when it *scores* text.
Unseen contexts back off directly. Every item is padded with ``N-1`` ``<s>`` tokens and ends with
``</s>``, which is scored too.

Sampling
--------
The interpolated distribution is a mixture: with probability ``1 - lambda(h)`` draw from the
discounted counts seen after ``h``, otherwise back off. Sampling follows that recursion exactly, so
at temperature 1 without truncation it draws from the very distribution that
:meth:`NGramModel.log_likelihood` scores (the unigram level draws only among words the model was
trained on: the add-``alpha`` mass of unseen words is for scoring, a closed-vocabulary sampler).

Temperature and truncation act on each level's candidate list, the seen continuations plus one
*back-off bucket* that carries the smoothing mass: weights are raised to ``1/T``, then top-k keeps
the ``k`` heaviest candidates and top-p the smallest heaviest-first prefix whose mass reaches
``p``. A dropped bucket means the model never backs off from that context, which is exactly how
truncation cuts the tail. Each step is a handful of ``searchsorted`` calls over all live
sequences at once; there is no Python loop per token or per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokens import BOS, EOS, MAX_LEN, UNK  # noqa: F401  (detectors import them from here too)
from collapselab.models.scoring import WordScores


@dataclass
class _Level:
    """Tables for one order k >= 2."""

    order: int
    discount: float
    # lookup by full n-gram key (scoring), through a hash index
    full_keys: np.ndarray  # int64, distinct
    full_counts: np.ndarray  # float64, aligned with full_keys
    # contexts
    ctx_keys: np.ndarray  # sorted int64
    ctx_total: np.ndarray  # float64 c(h)
    ctx_types: np.ndarray  # float64 n(h)
    ctx_start: np.ndarray  # int64, len(ctx) + 1: block of entries per context
    # entries grouped by context, heaviest first (sampling)
    entry_word: np.ndarray  # int32
    entry_count: np.ndarray  # float64
    _indexes: dict = field(default_factory=dict, repr=False)

    def find(self, which: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``keys`` in ``ctx_keys`` or ``full_keys``, and a found mask.

        A hash lookup, except for one-token contexts (order 2), whose keys are the token ids
        themselves: there a dense array of positions per id answers with one gather."""
        index = self._indexes.get(which)
        if index is None:
            table = getattr(self, which)
            if which == "ctx_keys" and self.order == 2 and len(table) and 0 <= table[0] and table[-1] < 1 << 26:
                index = np.full(int(table[-1]) + 1, -1, dtype=np.int64)
                index[table] = np.arange(len(table))
            else:
                index = pd.Index(table)
            self._indexes[which] = index
        if isinstance(index, np.ndarray):
            inside = (keys >= 0) & (keys < len(index))
            pos = np.where(inside, index[np.where(inside, keys, 0)], -1)
        else:
            pos = index.get_indexer(keys)
        found = pos >= 0
        return np.where(found, pos, 0), found


@dataclass
class _LevelSampler:
    """A level's candidate weights after temperature and truncation.

    The per-context numbers a step reads together sit side by side in one row of ``ctx_table``
    (one cache line per context, not three), and ``last`` is each context's last kept entry."""

    cum: np.ndarray  # inclusive cumulative weight of entries, global
    ctx_table: np.ndarray  # (contexts, 3) float64: total (kept_mass + kept bucket weight), kept_mass, base (cum before the block)
    first: np.ndarray  # per context: its first entry (int64)
    last: np.ndarray  # per context: its last kept entry (the kept entries are a prefix of the block)

    @classmethod
    def build(cls, cum, base, kept_mass, kept_n, total, ctx_start) -> "_LevelSampler":
        first = ctx_start[:-1]
        return cls(cum, np.column_stack([total, kept_mass, base]), first, first + kept_n - 1)


def _pad(data: TokenSequences, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded flat stream, the positions that are prediction targets, and their item index."""
    pad = order - 1
    lengths = data.lengths + pad + 1
    starts = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    stream = np.full(int(starts[-1]), BOS, dtype=np.int32)
    item = data.item_index()
    within = np.arange(data.n_tokens, dtype=np.int64) - data.offsets[:-1][item]
    stream[starts[:-1][item] + pad + within] = data.tokens
    stream[starts[1:] - 1] = EOS
    n_targets = data.lengths + 1
    t_item = np.repeat(np.arange(len(data), dtype=np.int64), n_targets)
    csum = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(n_targets, out=csum[1:])
    targets = starts[:-1][t_item] + pad + (np.arange(int(csum[-1]), dtype=np.int64) - csum[t_item])
    return stream, targets, t_item


def _segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``values`` over consecutive blocks ``[starts[i], starts[i+1])``."""
    c = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return c[starts[1:]] - c[starts[:-1]]


def _count(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct keys (in order of first appearance), where each first appears, how often."""
    codes, distinct = pd.factorize(keys)
    counts = np.bincount(codes, minlength=len(distinct))
    # codes are numbered by first appearance, so a position is a first occurrence exactly when
    # its code exceeds every code before it
    is_first = np.ones(len(codes), dtype=bool)
    is_first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return np.asarray(distinct, dtype=np.int64), np.flatnonzero(is_first), counts


def _block_order(ctx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``np.lexsort((-counts, ctx))``: rows by context, then heaviest first, then in row order.

    When context, count rank and row number pack into one uint64, one sort of that key gives the
    same permutation (the row number makes every key distinct) in about half lexsort's time."""
    n = len(ctx)
    if n == 0 or int(ctx.min()) < 0:
        return np.lexsort((-counts, ctx))
    present = np.zeros(int(counts.max()) + 1, dtype=np.int64)
    present[counts] = 1
    rank = np.cumsum(present) - 1  # dense rank of each count value
    n_ranks = int(rank[-1]) + 1
    bits_row = max(n - 1, 1).bit_length()
    bits_rank = max(n_ranks - 1, 1).bit_length()
    if int(ctx.max()).bit_length() + bits_rank + bits_row > 64:
        return np.lexsort((-counts, ctx))
    key = ctx.astype(np.uint64) << np.uint64(bits_rank + bits_row)
    key |= (n_ranks - 1 - rank[counts]).astype(np.uint64) << np.uint64(bits_row)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & np.uint64((1 << bits_row) - 1)).astype(np.int64)


def _estimate_discount(counts: np.ndarray) -> float:
    n1 = float(np.count_nonzero(counts == 1))
    n2 = float(np.count_nonzero(counts == 2))
    if n1 + 2 * n2 == 0:
        return 0.5
    return float(np.clip(n1 / (n1 + 2 * n2), 0.05, 0.95))


class NGramModel(WordScores):
    """Word-level interpolated Kneser-Ney n-gram model (see the module docstring).

    Parameters
    ----------
    order: n-gram order (1 = unigram).
    vocab_size: size of the token id space; ids are ``< vocab_size``. ``None``: ``max id + 1``
        of the training data. Pass the reference vocabulary's size so that perplexities of
        different generations are comparable.
    discount: absolute discount for every order; ``None`` estimates one per order.
    temperature, top_k, top_p: sampling knobs (``top_k=0`` and ``top_p=1`` switch truncation off).
    max_len: longest item :meth:`sample` produces (items that reach it end without ``</s>``).
    alpha: add-alpha smoothing of the unigram level.
    """

    def __init__(
        self,
        order: int = 3,
        vocab_size: int | None = None,
        discount: float | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_len: int = MAX_LEN,
        alpha: float = 0.01,
    ) -> None:
        self.order = order
        self.vocab_size = vocab_size
        self.discount = discount
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.max_len = max_len
        self.alpha = alpha

    # ------------------------------------------------------------------ fitting
    def fit(self, data: TokenSequences, *, rng: np.random.Generator | None = None) -> "NGramModel":
        if self.order < 1:
            raise ValueError("order must be >= 1")
        if len(data) == 0:
            raise ValueError("cannot fit an n-gram model on no items")
        V = self.vocab_size or int(max(int(data.tokens.max(initial=UNK)), UNK) + 1)
        self.V_ = V
        N = self.order
        stream, targets, _ = _pad(data, N)
        def key_at(pos: np.ndarray, k: int) -> np.ndarray:  # the k tokens ending at each position
            return ngrams.combine([stream[pos - k + 1 + j] for j in range(k)], V)

        levels: list[_Level] = []
        # top order: raw counts over every position. Lower orders: continuation counts, i.e. how
        # many distinct (k+1)-gram types end in each k-gram; every k-gram occurrence is the suffix
        # of a (k+1)-gram (items are padded), so only the distinct types are looked at below N.
        keys, first, counts = _count(key_at(targets, N))
        pos_types = targets[first]
        per_order = {N: (keys, pos_types, counts)}
        for k in range(N - 1, 0, -1):
            keys, first, counts = _count(key_at(pos_types, k))
            pos_types = pos_types[first]
            per_order[k] = (keys, pos_types, counts)
        for k in range(2, N + 1):
            keys_k, pos_k, cnt_k = per_order[k]
            ctx = key_at(pos_k - 1, k - 1)
            word = stream[pos_k]
            cnt = cnt_k.astype(np.float64)
            D = self.discount if self.discount is not None else _estimate_discount(cnt_k)
            order_idx = _block_order(ctx, cnt_k)
            ctx_sorted = ctx[order_idx]
            is_start = np.ones(len(ctx_sorted), dtype=bool)
            is_start[1:] = ctx_sorted[1:] != ctx_sorted[:-1]
            starts = np.flatnonzero(is_start)
            ctx_start = np.append(starts, len(ctx_sorted)).astype(np.int64)
            e_count = cnt[order_idx]
            levels.append(
                _Level(
                    order=k,
                    discount=float(D),
                    full_keys=keys_k,
                    full_counts=cnt,
                    ctx_keys=ctx_sorted[starts],
                    ctx_total=_segment_sum(e_count, ctx_start),
                    ctx_types=np.diff(ctx_start).astype(np.float64),
                    ctx_start=ctx_start,
                    entry_word=word[order_idx].astype(np.int32),
                    entry_count=e_count,
                )
            )
        uni_keys, _, uni_cnt = per_order[1]
        unigram = np.zeros(V, dtype=np.float64)
        unigram[uni_keys] = uni_cnt
        unigram[BOS] = 0.0
        self.levels_ = levels
        self.unigram_counts_ = unigram
        denom = unigram.sum() + self.alpha * (V - 1)
        p1 = (unigram + self.alpha) / denom
        p1[BOS] = 0.0
        self.unigram_p_ = p1
        return self

    # ------------------------------------------------------------------ scoring
    def token_log_probs(self, data: TokenSequences) -> tuple[np.ndarray, np.ndarray]:
        """Natural-log probability of every scored token (each item's tokens and its ``</s>``),
        and the item each belongs to."""
        self._check_fitted()
        stream, targets, t_item = _pad(data, self.order)
        stream = np.where(stream < self.V_, stream, UNK)
        p = self.unigram_p_[stream[targets]]
        rolled = {1: ngrams.rolling(stream, 1, self.V_)}
        for L in self.levels_:
            k = L.order
            rolled[k] = ngrams.rolling(stream, k, self.V_)
            ctx = rolled[k - 1][targets - k + 1]
            ci, found = L.find("ctx_keys", ctx)
            fi, seen = L.find("full_keys", rolled[k][targets - k + 1])
            c = np.where(seen, L.full_counts[fi], 0.0)
            total = np.where(found, L.ctx_total[ci], 1.0)  # unseen contexts keep p (below): no 0/0 to compute
            mixed = np.maximum(c - L.discount, 0.0) / total + L.discount * L.ctx_types[ci] / total * p
            p = np.where(found, mixed, p)
        return np.log(p), t_item

    # ------------------------------------------------------------------ sampling
    def _level_sampler(self, L: _Level) -> _LevelSampler:
        inv_t = 1.0 / self.temperature
        n_ctx = len(L.ctx_keys)
        ctx_of = np.repeat(np.arange(n_ctx), np.diff(L.ctx_start))
        # weights in log space, scaled so each context's heaviest candidate weighs 1: at low
        # temperature raw powers underflow (or overflow) and one context's mass would vanish in
        # the running sum over all contexts
        log_w = np.log((L.entry_count - L.discount) / L.ctx_total[ctx_of])
        log_b = np.log(L.discount * L.ctx_types / L.ctx_total)
        if inv_t != 1.0:
            log_w *= inv_t
            log_b *= inv_t
        top = np.maximum(log_w[L.ctx_start[:-1]], log_b)  # entries are heaviest first per context
        log_w -= top[ctx_of]
        w = np.exp(log_w, out=log_w)
        bucket = np.exp(log_b - top)
        cum = np.cumsum(w)
        base = np.concatenate([[0.0], cum])[L.ctx_start[:-1]]
        if self.top_k <= 0 and self.top_p >= 1.0:  # no truncation: every candidate kept
            kept_mass = np.bincount(ctx_of, weights=w, minlength=n_ctx)
            return _LevelSampler.build(cum, base, kept_mass, np.diff(L.ctx_start), kept_mass + bucket, L.ctx_start)
        cum_before = cum - w - base[ctx_of]
        pos = np.arange(len(w)) - L.ctx_start[:-1][ctx_of]
        kept = np.ones(len(w), dtype=bool)
        bucket_kept = np.ones(n_ctx, dtype=bool)
        rank_of_bucket = np.bincount(ctx_of, weights=(w > bucket[ctx_of]), minlength=n_ctx).astype(np.int64)
        if self.top_p < 1.0:
            z = _segment_sum(w, L.ctx_start) + bucket
            before = cum_before + np.where(pos >= rank_of_bucket[ctx_of], bucket[ctx_of], 0.0)
            kept &= before < self.top_p * z[ctx_of]
            mass_above_bucket = np.bincount(ctx_of, weights=w * (pos < rank_of_bucket[ctx_of]), minlength=n_ctx)
            bucket_kept &= mass_above_bucket < self.top_p * z
        if self.top_k > 0:
            combined_rank = pos + (pos >= rank_of_bucket[ctx_of])
            kept &= combined_rank < self.top_k
            bucket_kept &= rank_of_bucket < self.top_k
        kept_n = np.bincount(ctx_of, weights=kept, minlength=n_ctx).astype(np.int64)
        kept_mass = np.bincount(ctx_of, weights=w * kept, minlength=n_ctx)
        return _LevelSampler.build(cum, base, kept_mass, kept_n, kept_mass + bucket * bucket_kept, L.ctx_start)

    def _unigram_sampler(self) -> tuple[np.ndarray, np.ndarray]:
        seen = np.flatnonzero(self.unigram_counts_ > 0)
        log_w = np.log(self.unigram_counts_[seen] + self.alpha) / self.temperature
        w = np.exp(log_w - log_w.max())
        order = np.argsort(-w, kind="stable")
        seen, w = seen[order], w[order]
        keep = len(w)
        if self.top_p < 1.0:
            before = np.cumsum(w) - w
            keep = int(np.count_nonzero(before < self.top_p * w.sum()))
        if self.top_k > 0:
            keep = min(keep, self.top_k)
        return seen[:keep].astype(np.int32), np.cumsum(w[:keep])

    def sample(self, n: int, *, rng: np.random.Generator, watermark=None) -> TokenSequences:
        """Draw ``n`` items, all advanced together one token per step.

        ``watermark``: a :class:`collapselab.provenance.watermark.Watermark`, or the ``collapselab``
        scheme (:class:`~collapselab.detect.schemes.ours.CollapselabScheme`, its watermark); each
        token is then drawn from this model's (tempered, truncated) distribution reweighted by
        ``exp(delta * green)`` (rejection sampling, exact). Detect with ``watermark.detect(items,
        pad=BOS)`` (the scheme's ``score``). A watermarked run draws more random numbers, so its text
        differs from an unwatermarked run with the same seed (it is still deterministic). Other
        schemes need logits over a whole vocabulary at every step, which this sampler never forms:
        they are a ``ValueError``.
        """
        self._check_fitted()
        if watermark is not None and not hasattr(watermark, "green"):
            inner = getattr(watermark, "watermark", None)
            if inner is None or not hasattr(inner, "green"):
                raise ValueError(f"ngram samples only with the collapselab scheme, not {getattr(watermark, 'name', watermark)!r}")
            watermark = inner
        samplers = [self._level_sampler(L) for L in self.levels_]
        hist = np.full((n, max(self.order - 1, 1)), BOS, dtype=np.int32)
        return self._generate(hist, self.max_len, samplers, rng, watermark)

    def watermark_tokens(self, data: TokenSequences) -> TokenSequences:
        """The token ids a watermark scheme reads: the word ids themselves (the scheme pads with ``<s>``)."""
        return data

    def watermark_vocab_size(self) -> int:
        """The id space the watermark lives in: the model's word ids."""
        self._check_fitted()
        return int(self.V_)

    def complete(self, prompts: TokenSequences, n_new: int, *, rng: np.random.Generator,
                 top_k: int | None = None, temperature: float | None = None) -> TokenSequences:
        """Continue each prompt by at most ``n_new`` tokens, all prompts advanced together.

        Item ``i`` of the result holds only the continuation of ``prompts[i]`` (the prompt is read
        as the start of an item: ``<s>`` padding, then its tokens), up to and excluding ``</s>``.
        ``top_k`` / ``temperature`` override the model's own knobs for this call only (``top_k=1``
        keeps the heaviest candidate at every back-off level: a greedy-style completion).
        """
        self._check_fitted()
        saved = self.top_k, self.temperature
        try:
            self.top_k = saved[0] if top_k is None else top_k
            self.temperature = saved[1] if temperature is None else temperature
            samplers = [self._level_sampler(L) for L in self.levels_]
            uni = self._unigram_sampler()
        finally:
            self.top_k, self.temperature = saved
        width = max(self.order - 1, 1)
        n = len(prompts)
        padded = np.full((n, width + int(prompts.lengths.max(initial=0))), BOS, dtype=np.int32)
        # right-align each prompt so its last ``width`` tokens (with <s> padding) are the context
        end = padded.shape[1]
        item = prompts.item_index()
        within = np.arange(prompts.n_tokens, dtype=np.int64) - prompts.offsets[:-1][item]
        col = end - prompts.lengths[item] + within
        padded[item, col] = np.where(prompts.tokens < self.V_, prompts.tokens, UNK)
        hist = np.ascontiguousarray(padded[:, end - width:])
        return self._generate(hist, n_new, samplers, rng, None, uni=uni)

    def _generate(self, hist: np.ndarray, max_len: int, samplers, rng, watermark, uni=None) -> TokenSequences:
        N = self.order
        n = len(hist)
        uni_words, uni_cum = self._unigram_sampler() if uni is None else uni
        out = np.zeros((n, max_len), dtype=np.int32)
        lengths = np.full(n, max_len, dtype=np.int64)
        live = np.arange(n)
        wctx = None if watermark is None else np.full((n, watermark.h), BOS, dtype=np.int64)
        for t in range(max_len):
            if len(live) == 0:
                break
            if watermark is None:
                nxt = self._next_tokens(hist, samplers, uni_words, uni_cum, rng)
            else:
                def draw(rows, h=hist):
                    return self._next_tokens(h[rows], samplers, uni_words, uni_cum, rng)

                nxt = watermark.sample(draw, wctx, rng).astype(np.int32)
            out[live, t] = nxt
            ended = nxt == EOS
            lengths[live[ended]] = t
            go = ~ended
            live = live[go]
            hist = np.concatenate([hist[go, 1:], nxt[go, None]], axis=1) if N > 1 else hist[go]
            if wctx is not None:
                wctx = np.concatenate([wctx[go, 1:], nxt[go, None]], axis=1)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        mask = np.arange(max_len)[None, :] < lengths[:, None]
        return TokenSequences(out[mask], offsets)

    def _next_tokens(self, hist, samplers, uni_words, uni_cum, rng) -> np.ndarray:
        m = len(hist)
        word = np.empty(m, dtype=np.int32)
        pending = np.arange(m)
        for L, S in zip(reversed(self.levels_), reversed(samplers)):
            if len(pending) == 0:
                break
            k = L.order
            ctx = ngrams.encode(hist[pending, -(k - 1):], self.V_)
            ci, found = L.find("ctx_keys", ctx)
            row = S.ctx_table[ci]  # total, kept_mass, base
            u = rng.random(len(pending)) * row[:, 0]
            take = found & (u < row[:, 1])
            x = row[take, 2] + u[take]
            # the same searchsorted, over the queries in increasing order: neighbouring queries then
            # walk the same path through the cumulative weights (cache hits), and each result is
            # what it would be in any order
            order = np.argsort(x)
            c = ci[take][order]
            e = np.searchsorted(S.cum, x[order], side="right")
            e = np.clip(e, S.first[c], S.last[c])
            word[pending[take][order]] = L.entry_word[e]
            pending = pending[~take]
        if len(pending):
            u = rng.random(len(pending)) * uni_cum[-1]
            idx = np.minimum(np.searchsorted(uni_cum, u, side="right"), len(uni_cum) - 1)
            word[pending] = uni_words[idx]
        return word

    def _check_fitted(self) -> None:
        if not hasattr(self, "levels_"):
            raise RuntimeError("NGramModel is not fitted: call fit() first")
