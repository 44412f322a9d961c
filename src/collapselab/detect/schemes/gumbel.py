"""vLLM's Gumbel-max text watermark (``gumbel``) and its dual-key variant (``gumbel-dual``).

vLLM 0.34 (``WatermarkConfig(algorithm="gumbel" | "dual_key_gumbel")``) watermarks by sampling
with the Gumbel-max trick, drawing the Gumbel noise not at random but from a keyed pseudo-random
function of the preceding tokens (Aaronson 2022; Kuditipudi et al. 2023). Detection sums, over the
scored tokens, a statistic that is Exp(1) for text written without the key and larger for text
sampled with it. This module reproduces vLLM's detector exactly (scores and p-values to 1e-9,
tested against fixtures made by vLLM's own code: ``bench/make_vllm_fixtures.py``), vectorised in
numpy over a whole corpus, and its sampling rule as a logits processor for our loop.

The PRF, exactly (vLLM ``prfs/philox.py``, ``PhiloxPRF``, version ``philox4x32-10-v1``)
--------------------------------------------------------------------------------------
All words are uint32; ``P(c0..c3; k0, k1)`` is Philox4x32-10 (Salmon et al. 2011; Random123's
known-answer vectors are tested): 10 rounds of ``(c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0,
lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))`` with ``M0 = 0xD2511F53``, ``M1 = 0xCD9E8D57``, the
key bumped by ``(0x9E3779B9, 0xBB67AE85)`` between rounds. The 64-bit watermark key gives
``k0 = key & 0xFFFFFFFF``, ``k1 = key >> 32``.

* Context state: a context is the ``w = context_width`` token ids before a token, oldest first,
  with ``-1`` (as the uint32 ``0xFFFFFFFF``) standing for positions before the text starts.
  ``s = (0x574D4358, w, 0, 0)``; for each block ``j`` of 4 context words (offset ``o = 4 j``,
  positions past the end filled with ``0xFFFFFFFF - i`` for slot ``i``):
  ``s <- P(s ^ block; k0 ^ o, k1)``.
* Token word: for candidate token ``t``,
  ``r = P(t >> 2, s0, s1, s2; k0 ^ s3, k1 ^ 0x574D544B)[t & 3]`` (one Philox call gives the words
  of 4 consecutive tokens).
* Uniform: ``u = float32(((r >> 8) + 1) / (2**24 + 1))``, in (0, 1).

Sampling (vLLM ``GumbelWatermarker``, driven by ``GPUWatermarkSampler``)
--------------------------------------------------------------------
At each step, with processed logits ``l`` (after temperature, top-k/top-p), the token is
``argmax_v l[v] - log(-log u(context, v))`` (float32): the Gumbel-max trick with keyed noise, so
the token is distributed as ``softmax(l)`` over keys but fixed given the key and context. The
context is the last ``w`` *generated* tokens (the prompt is not used: positions before the first
generated token are -1). A step is sampled ordinarily, without the watermark, when its context
holds a -1 (the first ``w`` generated tokens) or, with ``deduplicate_contexts="single_turn"``
(vLLM's default), when the same context already occurred earlier in this generation (within the
last ``deduplicate_contexts_max_history = 8192`` positions).

Dual key (``gumbel-dual``, vLLM ``DualKeyGumbelWatermarker``): two keys are derived,
``key_X = int.from_bytes(SHA-256(b"key_a" or b"key_b" + key.to_bytes(8, "big"))[:8], "big")``;
each watermarked step samples with key A with probability ``1 - alpha`` and with key B with
probability ``alpha`` (independently of the keys' noise).

Detection (vLLM ``WatermarkDetector.detect`` / ``GumbelWatermarkDetector``)
-----------------------------------------------------------------------
An item's every token is a candidate, its context built from the item's own preceding tokens with
-1 padding at the start (so, unlike sampling, the first ``w`` tokens are scored too). With
``deduplicate_contexts`` (default True) only the first occurrence of each context in the item is
scored. Each scored token contributes ``-log1p(-u)`` (float64 from the float32 ``u``), Exp(1)
without the key; ``score`` is the sum over the ``n = n_scored`` tokens, and the p-value is the
Gamma(n, 1) survival function at ``score``. vLLM sums ``exp(-score) score**k / k!`` over ``k < n``
in log space (``_gamma_survival_integer_shape``, clipped to 1); this module calls scipy's
``gammaincc(n, score)``, the same function, which agrees with that sum to about 1e-11 relative
(tested) at O(1) per item. Dual: the per-token score is ``(1 - alpha) s_A + alpha s_B`` (one term
per derived key); with ``v = (1 - alpha)**2 + alpha**2`` the p-value is the integer-shape survival
at ``(score / v, round(n / v))`` when alpha is 0, 0.5 or 1, else the regularised upper incomplete
gamma ``Q(n / v, score / v)`` (vLLM's moment-matched gamma; torch's ``gammaincc`` in vLLM, which is
off by up to 2e-9 relative for shapes of 20-100, scipy's here). Nothing scored: score 0, p-value 1.

``z`` is ``(score - n) / sqrt(n v)`` (``v = 1`` for ``gumbel``): the standardised score, since each
per-token term has mean 1 and variance ``v`` without the key; NaN where nothing was scored.

Vectorisation: one call scores a whole corpus. Philox runs on numpy uint64 lanes (uint32 values;
the 32x32-bit products fit in 64 bits), in place, over chunks of 16,384 tokens that stay in the
CPU cache: per chunk, the context words are gathered from the flat token array, the context
states computed (one Philox call per 4 context words) and the token words (one call per token).
De-duplication mixes each token's (item, context) into a 64-bit key and numbers the keys with a
hash table (pandas' ``factorize``); every repeat is checked against the first token of its key
(an exact sort decides should two contexts ever share a key), so a collision never drops a
token. Repeats are scored too and then given an exact 0.0, which leaves the sums those of the
kept tokens and keeps every pass on contiguous slices. Speed: 2-5 million tokens/s on one core
of the shared test VM, 100-200x vLLM's detector (``bench/bench_schemes_gumbel.py``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes.base import Scheme, SchemeScores, key_digest

MASK = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
CONTEXT_DOMAIN, TOKEN_DOMAIN = 0x574D4358, 0x574D544B
MAX_HISTORY = 8192  # vLLM's deduplicate_contexts_max_history default
CHUNK = 16384  # tokens per pass: the Philox lanes stay in the CPU's cache


# ------------------------------------------------------------------------------------- Philox
def _mulhilo(m: int, x):
    """(high, low) 32-bit words of ``m * x`` for uint32 values ``x`` held in numpy uint64 or
    torch int64 lanes (torch: in 16-bit halves, as vLLM does, so nothing overflows)."""
    if isinstance(x, np.ndarray):
        p = x * np.uint64(m)
        return p >> np.uint64(32), p & np.uint64(MASK)
    xl, xh, ml, mh = x & 0xFFFF, x >> 16, m & 0xFFFF, m >> 16
    cross = xh * ml + xl * mh
    low = xl * ml + ((cross & 0xFFFF) << 16)
    return (xh * mh + (cross >> 16) + (low >> 32)) & MASK, low & MASK


def philox4x32_10(counter, key):
    """Philox4x32-10 on lanes: ``counter`` 4 words, ``key`` 2 words (arrays or ints, uint32
    values in numpy uint64 or torch int64). Returns the 4 output words."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        h0, l0 = _mulhilo(PHILOX_M0, c0)
        h1, l1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        if r != 9:
            k0, k1 = (k0 + PHILOX_W0) & MASK, (k1 + PHILOX_W1) & MASK
    return c0, c1, c2, c3


def _philox_np(counter, key, select=None, chunk: int = 16384):
    """:func:`philox4x32_10` over numpy uint64 lanes, in place and in cache-sized chunks (about 3x
    faster than the plain expression on long arrays). Counter words are arrays or scalars (broadcast
    to the lanes); a key word that is a scalar stays one (its round keys are precomputed).
    ``select`` (ints 0-3 per lane): return only that output word of each lane."""
    n = max(np.size(w) for w in counter)
    words = [np.broadcast_to(np.asarray(w, np.uint64), (n,)) for w in counter]
    # per key word: the 10 round keys as scalars, or the lanes (bumped in place each round)
    round_keys = [[np.uint64((int(k) + r * bump) & MASK) for r in range(10)] if np.ndim(k) == 0 else None
                  for k, bump in zip(key, (PHILOX_W0, PHILOX_W1))]
    lanes = [np.asarray(k, np.uint64) if rk is None else None for k, rk in zip(key, round_keys)]
    out = [np.empty(n, np.uint64) for _ in range(1 if select is not None else 4)]
    m0, m1, s32, mask = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(32), np.uint64(MASK)
    bumps = (np.uint64(PHILOX_W0), np.uint64(PHILOX_W1))
    a, b = np.empty(min(n, chunk), np.uint64), np.empty(min(n, chunk), np.uint64)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        c0, c1, c2, c3 = (w[lo:hi].copy() for w in words)
        k = [None if lane is None else lane[lo:hi].copy() for lane in lanes]
        pa, pb = a[: hi - lo], b[: hi - lo]
        for r in range(10):
            np.multiply(c0, m0, out=pa)
            np.multiply(c2, m1, out=pb)
            np.right_shift(pb, s32, out=c0)
            c0 ^= c1
            c0 ^= k[0] if k[0] is not None else round_keys[0][r]
            np.bitwise_and(pb, mask, out=c1)
            np.right_shift(pa, s32, out=c2)
            c2 ^= c3
            c2 ^= k[1] if k[1] is not None else round_keys[1][r]
            np.bitwise_and(pa, mask, out=c3)
            if r != 9:
                for kk, bump in zip(k, bumps):
                    if kk is not None:
                        kk += bump
                        kk &= mask
        if select is not None:  # (np.choose is several times slower than three masked copies)
            o, sel = out[0][lo:hi], select[lo:hi]
            o[:] = c0
            for i, c in ((1, c1), (2, c2), (3, c3)):
                np.copyto(o, c, where=sel == i)
        else:
            for o, c in zip(out, (c0, c1, c2, c3)):
                o[lo:hi] = c
    return out[0] if select is not None else tuple(out)


def context_state(columns, key: int):
    """vLLM's Philox context state for the contexts whose words (uint32 values; -1 as
    ``0xFFFFFFFF``) are ``columns``, oldest first: numpy uint64 or torch int64 lanes."""
    w = len(columns)
    k0, k1 = key & MASK, key >> 32
    if isinstance(columns[0], np.ndarray):
        s, philox = (np.uint64(CONTEXT_DOMAIN), np.uint64(w), np.uint64(0), np.uint64(0)), _philox_np
    else:
        s, philox = (CONTEXT_DOMAIN, w, 0, 0), philox4x32_10
    for o in range(0, w, 4):
        block = [columns[o + i] if o + i < w else MASK - i for i in range(4)]
        s = philox(tuple(s[i] ^ block[i] for i in range(4)), (k0 ^ o, k1))
    return s


def token_words(state, tokens: np.ndarray, key: int) -> np.ndarray:
    """vLLM's uint32 PRF word for each (context state, token) lane (numpy)."""
    s0, s1, s2, s3 = state
    tokens = tokens.astype(np.uint64)
    return _philox_np((tokens >> np.uint64(2), s0, s1, s2), ((key & MASK) ^ s3, (key >> 32) ^ TOKEN_DOMAIN),
                      select=(tokens & np.uint64(3)).astype(np.intp))


def uniforms(words):
    """vLLM's ``uint32_to_uniform``: ``float32(((r >> 8) + 1) / (2**24 + 1))``."""
    if isinstance(words, np.ndarray):
        return (((words >> np.uint64(8)).astype(np.float64) + 1.0) / (2**24 + 1)).astype(np.float32)
    return (((words >> 8).double() + 1.0) / (2**24 + 1)).float()


def derive_key(key: int, domain: bytes) -> int:
    """vLLM's ``derive_watermark_key``: the first 8 bytes (big-endian) of SHA-256(domain + key)."""
    return int.from_bytes(hashlib.sha256(domain + key.to_bytes(8, "big")).digest()[:8], "big")


def _torch():
    import torch

    return torch


# ---------------------------------------------------------------------------------- p-values
def gamma_survival(score, shape) -> np.ndarray:
    """``P(Gamma(shape, 1) > score)`` per item (scipy's regularised upper incomplete gamma), with
    vLLM's conventions: 1 where ``shape <= 0`` or ``score <= 0``, clipped to [0, 1]. For integer
    shapes vLLM sums ``exp(-score) score**k / k!`` over ``k < shape`` in log space
    (``_gamma_survival_integer_shape``), the same function: the two agree to about 1e-11 relative
    (tested), and this costs O(1) per item instead of O(shape)."""
    from scipy.special import gammaincc

    score, shape = np.asarray(score, np.float64), np.asarray(shape, np.float64)
    live = (shape > 0) & (score > 0)
    with np.errstate(invalid="ignore"):
        p = gammaincc(np.where(live, shape, 1.0), np.where(live, score, 1.0))
    return np.where(live, np.clip(p, 0.0, 1.0), 1.0)


# -------------------------------------------------------------------------------------- scheme
class GumbelScheme(Scheme):
    """vLLM's Gumbel-max watermark (``dual=False``: ``gumbel``) or its dual-key variant
    (``dual=True``: ``gumbel-dual``, ``alpha`` the weight of key B). See the module docstring."""

    name = "gumbel"

    def __init__(self, key: int, *, context_width: int = 4, deduplicate_contexts: bool = True, prf: str = "philox",
                 alpha: float = 0.1, vocab_size: int, dual: bool = False) -> None:
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**64:
            raise ValueError("a gumbel key is an integer in [0, 2**64)")
        if prf != "philox":
            raise ValueError(f"unknown watermark PRF {prf!r} (vLLM has 'philox')")
        if int(context_width) < 1:
            raise ValueError("context_width must be positive")
        if not 0 <= alpha <= 1:
            raise ValueError("alpha must be between 0 and 1")
        if int(vocab_size) < 2:
            raise ValueError("vocab_size must be at least 2")
        self.name = "gumbel-dual" if dual else "gumbel"
        self.dual, self.alpha = bool(dual), float(alpha)
        self.context_width, self.deduplicate_contexts, self.prf = int(context_width), bool(deduplicate_contexts), prf
        self.vocab_size = int(vocab_size)
        self.flag_p_value = 0.01
        self._key = key
        # (PRF key, weight) per term of the per-token score
        self._keys = ([(derive_key(key, b"key_a"), 1.0 - self.alpha), (derive_key(key, b"key_b"), self.alpha)]
                      if dual else [(key, 1.0)])

    @property
    def key_id(self) -> str:
        return key_digest(self.name, self._key.to_bytes(8, "big"))

    def params(self) -> dict:
        p = {"context_width": self.context_width, "deduplicate_contexts": self.deduplicate_contexts, "prf": self.prf,
             "vocab_size": self.vocab_size}
        if self.dual:
            p["alpha"] = self.alpha
        return p

    @property
    def variance(self) -> float:
        """The variance of one token's score without the key (1 for ``gumbel``)."""
        return (1 - self.alpha) ** 2 + self.alpha**2 if self.dual else 1.0

    # ---------------------------------------------------------------------------- detection
    def _layout(self, seqs: TokenSequences):
        """What the context columns are cut from: the flat tokens as uint64 behind ``w`` pad words,
        and, sorted, the positions of every item's first ``w`` tokens with their rank in the item."""
        w = self.context_width
        padded = np.concatenate([np.full(w, MASK, np.uint64), seqs.tokens.astype(np.uint64)])
        rank = np.arange(w)
        heads = seqs.offsets[:-1, None] + rank
        inside = rank < seqs.lengths[:, None]
        return padded, heads[inside], np.broadcast_to(rank, heads.shape)[inside]

    def _columns(self, layout, lo: int, hi: int) -> list[np.ndarray]:
        """The contexts of the tokens at flat positions ``lo:hi`` as ``w`` columns of uint64 words
        (oldest first), ``0xFFFFFFFF`` before each item's start."""
        padded, heads, rank = layout
        w = self.context_width
        a, b = np.searchsorted(heads, [lo, hi])
        heads, rank = heads[a:b] - lo, rank[a:b]
        cols = []
        for d in range(w, 0, -1):  # the token d positions back
            col = padded[lo + w - d:hi + w - d].copy()
            col[heads[rank < d]] = MASK
            cols.append(col)
        return cols

    def first_occurrences(self, seqs: TokenSequences) -> np.ndarray:
        """Mask of the tokens whose context occurs for the first time in their item (vLLM's
        ``deduplicate_contexts``). Each token's (item, context) is mixed into a 64-bit key and the
        keys are numbered in order of first appearance by a hash table (pandas' ``factorize``); a
        token whose key number is not new is a repeat. Every repeat is checked to hold the same item
        and context as the first token of its key; if a 64-bit collision ever made two contexts
        share a key, an exact lexicographic sort of (item, context words) decides instead."""
        import pandas as pd

        n, layout, item = seqs.n_tokens, self._layout(seqs), seqs.item_index()
        if n == 0:
            return np.zeros(0, bool)
        h = np.empty(n, np.uint64)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            h[lo:hi] = self._context_keys(item[lo:hi], self._columns(layout, lo, hi))
        codes = pd.factorize(h)[0]
        keep = np.empty(n, bool)
        keep[0] = True
        keep[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]  # a key number seen for the first time
        if keep.all():
            return keep
        rep = np.flatnonzero(~keep)
        first = np.flatnonzero(keep)[codes[rep]]  # the first token with the same key
        a, b = self._gathered(seqs, layout, item, rep), self._gathered(seqs, layout, item, first)
        if np.array_equal(a, b):
            return keep
        rows = self._gathered(seqs, layout, item, np.arange(n))  # a collision: decide exactly
        order = np.lexsort(rows.T[::-1])  # by item, then context; stable: by position within ties
        rows = rows[order]
        keep[:] = False
        keep[order[np.concatenate([[True], (rows[1:] != rows[:-1]).any(axis=1)])]] = True
        return keep

    def _gathered(self, seqs: TokenSequences, layout, item: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """(len(pos), 1 + w): the item and the context words of the tokens at positions ``pos``."""
        w, padded = self.context_width, layout[0]
        within = pos - seqs.offsets[item[pos]]
        cols = [np.where(within >= d, padded[pos + w - d], MASK) for d in range(w, 0, -1)]
        return np.stack([item[pos].astype(np.uint64)] + cols, axis=1)

    @staticmethod
    def _context_keys(item: np.ndarray, cols: list[np.ndarray]) -> np.ndarray:
        """A 64-bit mix of each token's (item, context): equal contexts give equal keys."""
        h = item.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for col in cols:
            h ^= col
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        return h

    def token_scores(self, seqs: TokenSequences) -> np.ndarray:
        """Every token's score (float64; before de-duplication), in cache-sized chunks."""
        n, layout, tokens = seqs.n_tokens, self._layout(seqs), seqs.tokens
        out = np.empty(n)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            cols, tok = self._columns(layout, lo, hi), tokens[lo:hi]
            for i, (key, weight) in enumerate(self._keys):
                term = -np.log1p(-uniforms(token_words(context_state(cols, key), tok, key)).astype(np.float64))
                if i == 0:
                    out[lo:hi] = term * weight if self.dual else term
                else:
                    out[lo:hi] += term * weight
        return out

    def score(self, seqs: TokenSequences) -> SchemeScores:
        tokens = seqs.tokens
        if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}) (the generator's vocabulary)")
        item = seqs.item_index()
        terms = self.token_scores(seqs)
        if self.deduplicate_contexts:  # repeats add an exact 0.0: the sums are those of the kept tokens
            keep = self.first_occurrences(seqs)
            terms[~keep] = 0.0
            n = np.bincount(item[keep], minlength=len(seqs)).astype(np.int64)
        else:
            n = seqs.lengths.astype(np.int64)
        score = np.bincount(item, weights=terms, minlength=len(seqs)).astype(np.float64)
        return SchemeScores(n_scored=n, score=score, z=self.z(score, n), p_value=self.p_value(score, n))

    def z(self, score: np.ndarray, n: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, (score - n) / np.sqrt(n * self.variance), np.nan)

    def p_value(self, score: np.ndarray, n: np.ndarray) -> np.ndarray:
        """vLLM's p-value per item (see the module docstring); 1 where ``n == 0``."""
        score, n = np.asarray(score, np.float64), np.asarray(n, np.int64)
        if not self.dual:
            return gamma_survival(score, n)
        v = self.variance
        if self.alpha in (0.0, 0.5, 1.0):  # vLLM's integer-shape branch
            return gamma_survival(score / v, np.round(n / v))
        return np.where(n > 0, gamma_survival(score / v, n / v), 1.0)

    # ---------------------------------------------------------------------------- generation
    def logits_processor(self, *, prompt_len: int | None = None, seed: int = 0, deduplicate: bool = True,
                         max_history: int | None = MAX_HISTORY) -> GumbelLogitsProcessor:
        """A callable ``(input_ids (B, T), scores (B, V)) -> scores`` that makes sampling from
        ``softmax(scores)`` follow vLLM's watermarked sampler (see :class:`GumbelLogitsProcessor`)."""
        return GumbelLogitsProcessor(self, prompt_len=prompt_len, seed=seed, deduplicate=deduplicate,
                                     max_history=max_history)


class GumbelLogitsProcessor:
    """vLLM's Gumbel-max sampling rule as a logits processor, in torch (any device).

    Called with ``input_ids`` (B, T), the prompt (left-padded to a common width) followed by the
    tokens generated so far, and the processed ``scores`` (B, V) (after temperature and top-k/p, as
    vLLM applies them first), it returns, for each watermarked row, ``scores`` with every entry
    but the Gumbel-max token set to ``-inf`` (that token keeps 0), so sampling from the softmax
    yields that token; rows vLLM samples without the watermark keep their scores unchanged and
    the caller samples them normally.

    Which tokens are *generated*: the first ``prompt_len`` columns of ``input_ids`` are the prompt
    (vLLM does not use it for contexts). ``prompt_len`` is given, or remembered at the first call
    as that call's ``T``. Use one processor per generation (or call :meth:`reset`), since a batch
    that drops finished rows keeps its column layout and is handled, but a new batch is not.

    A row is sampled without the watermark (vLLM's ``skip_mask``) when fewer than ``w`` tokens were
    generated, or (``deduplicate=True``: vLLM's default scope ``single_turn``) when its current
    context already preceded a token generated at one of the last ``max_history`` positions.
    ``gumbel-dual``: each watermarked row uses key B with probability ``alpha`` (drawn from a torch
    generator seeded with ``seed``, on the CPU), else key A; with alpha 0 or 1 nothing is drawn.
    """

    def __init__(self, scheme: GumbelScheme, *, prompt_len: int | None = None, seed: int = 0,
                 deduplicate: bool = True, max_history: int | None = MAX_HISTORY) -> None:
        self.scheme, self.prompt_len, self.seed = scheme, prompt_len, seed
        self.deduplicate, self.max_history = deduplicate, max_history
        self._given_prompt_len = prompt_len
        self.reset()

    def reset(self) -> None:
        """Start a new generation: forget the remembered prompt length and restart the routing draws."""
        torch = _torch()
        self.prompt_len = self._given_prompt_len
        self._generator = torch.Generator().manual_seed(self.seed)

    def skip_mask(self, generated):
        """(B,) True where vLLM samples the row without the watermark; ``generated`` (B, t)."""
        torch = _torch()
        B, t = generated.shape
        w = self.scheme.context_width
        if t < w:
            return torch.ones(B, dtype=torch.bool, device=generated.device)
        skip = torch.zeros(B, dtype=torch.bool, device=generated.device)
        if self.deduplicate and t > w:
            lo = 0 if self.max_history is None else max(0, t - self.max_history - w)
            windows = generated[:, lo:].unfold(1, w, 1)  # window i: the context of token lo + i + w
            skip = (windows[:, :-1] == windows[:, -1:]).all(-1).any(-1)
        return skip

    def gumbel_argmax(self, scores, contexts, key: int):
        """vLLM's ``GumbelWatermarker._sample_watermarked``: ``argmax(scores - log(-log u))``."""
        torch = _torch()
        V = scores.shape[-1]
        state = context_state([c for c in (contexts & MASK).T], key)
        state = tuple(s[:, None] for s in state)
        counters = torch.arange((V + 3) // 4, device=scores.device, dtype=torch.int64)
        words = philox4x32_10((counters[None, :], state[0], state[1], state[2]),
                              ((key & MASK) ^ state[3], (key >> 32) ^ TOKEN_DOMAIN))
        u = uniforms(torch.stack(words, -1).reshape(len(scores), -1)[:, :V])
        u = u.clamp_min(torch.finfo(torch.float32).tiny)
        return torch.argmax(scores + -torch.log(-torch.log(u)), dim=-1)

    def __call__(self, input_ids, scores):
        torch = _torch()
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        generated = input_ids[:, self.prompt_len:].to(torch.int64)
        skip = self.skip_mask(generated)
        rows = torch.nonzero(~skip)[:, 0]
        if len(rows) == 0:
            return scores
        w = self.scheme.context_width
        contexts = generated[rows, generated.shape[1] - w:]
        sub = scores[rows].float()
        keys = self.scheme._keys
        if not self.scheme.dual:
            chosen = self.gumbel_argmax(sub, contexts, keys[0][0])
        elif self.scheme.alpha in (0.0, 1.0):
            chosen = self.gumbel_argmax(sub, contexts, keys[int(self.scheme.alpha)][0])
        else:
            use_b = (torch.rand(len(rows), generator=self._generator) < self.scheme.alpha).to(scores.device)
            chosen = torch.where(use_b, self.gumbel_argmax(sub, contexts, keys[1][0]),
                                 self.gumbel_argmax(sub, contexts, keys[0][0]))
        out = scores.clone()
        out[rows] = float("-inf")
        out[rows, chosen] = 0.0
        return out

