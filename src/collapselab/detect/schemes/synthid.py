"""``synthid``: the SynthID-Text watermark transformers writes (``SynthIDTextWatermarkingConfig``).

SynthID-Text (Dathathri et al., Nature 2024) tilts sampling by tournament over ``depth`` keyed
binary *g-values* per candidate token; the detector averages the g-values of the text. This module
computes transformers' ``SynthIDTextWatermarkLogitsProcessor`` g-values and masks and the reference
scores of google-deepmind/synthid-text (``detector_mean.py``), vectorised over a whole corpus.

The g-values, exactly as transformers computes them
---------------------------------------------------
All arithmetic is int64 and wraps modulo ``2**64`` (torch's; numpy's int64 arrays wrap the same).

* ``accumulate_hash(h, x_1 .. x_m)``: for each ``x``: ``h = (h + x) * 6364136223846793005 + 1``.
* The n-gram ending at position ``j`` (``ngram_len = n`` tokens ``x_{j-n+1} .. x_j``) has hash
  ``H = accumulate_hash(1, ngram)``; its g-value at depth ``d`` is
  ``table[accumulate_hash(H, key_d) mod S]`` (floor modulo, so in ``[0, S)``).
* ``table = torch.randint(0, 2, (S,), generator=torch.Generator().manual_seed(sampling_table_seed))``
  (``S = sampling_table_size``), computed once with torch and cached per (size, seed).
* Keys are int64 (a key ``>= 2**63`` is taken modulo ``2**64`` as a signed value).

Masks (``compute_context_repetition_mask``, ``compute_eos_token_mask``)
-----------------------------------------------------------------------
* Repetition: the context of n-gram ``j`` is its first ``n - 1`` tokens, hashed as
  ``accumulate_hash(1, context)``. The processor keeps the last ``context_history_size`` (``M``)
  context hashes, initially ``M`` zeros; n-gram ``j`` is masked when its context hash is among them:
  an equal hash within the previous ``M`` n-grams of the item, or a hash of 0 among the first
  ``M`` n-grams (the initial zeros; practically never).
* EOS (when ``eos_token_id`` is set): the first ``eos_token_id`` of the item and everything after it
  are masked (an n-gram is masked when its last token is).
* ``mask = repetition mask * eos mask``; ``n_scored`` is its sum (items shorter than ``n`` score
  nothing).

Scores (``detector_mean.py``)
-----------------------------
With ``N = n_scored`` and ``D`` = the number of keys:

* ``mean_score = sum of unmasked g-values / (D N)``;
* ``weighted_mean_score``: the same with the g-values of depth ``d`` multiplied by
  ``w_d = linspace(10, 1, D)[d] * D / sum(linspace(10, 1, D))``.

``score`` is the chosen ``statistic``; ``z = (mean_score - p1) / sqrt(p1 (1 - p1) / (D N))``, the
mean score's z-score without the watermark; ``p_value``: without the keys each unmasked g-value is a
Bernoulli(``p1``) draw (distinct contexts give unrelated hashes), ``p1`` = the share of ones in the
table, so

* ``statistic="mean"``: the count of ones is Binomial(``D N``, ``p1``) and ``p_value`` is its exact
  upper tail (``null_flag_prob`` the exact flag rate);
* ``statistic="weighted_mean"``: the score is ``sum_d w_d B_d / (D N)`` with independent
  ``B_d ~ Binomial(N, p1)``. Its upper tail is the Lugannani-Rice saddlepoint approximation
  from the exact cumulant generating function ``K(t) = N sum_d log(1 - p1 + p1 e^(t w_d))``,
  continuity-corrected: evaluated half a lattice step below the observed value (the statistic
  ``sum_d w_d B_d`` lives on multiples of ``gcd(c) D / sum(c)``, ``c_d = 10 (D - 1) - 9 d``).
  Against the exact law (an integer-lattice convolution, computed in the tests for small cases)
  its relative error stays under 1% from ``p = 0.5`` down to ``p = 1e-10``.

Items that score nothing: ``n_scored = 0``, ``score = 0.0``, ``z = NaN``, ``p_value = 1.0``.
``skip_first_ngram_calls`` only changes generation (its first ``n - 1`` steps are not tilted);
the reference detector ignores it and so does :meth:`SynthIDScheme.score`.

The Bayesian detector (transformers' ``BayesianDetectorModel``) is not here: it must be trained
per model and key on thousands of watermarked and unwatermarked generations, and its score is not a
p-value.
"""

from __future__ import annotations

import json
import math
from functools import reduce

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes.base import Scheme, SchemeScores, binomial_flag_prob, key_digest
from collapselab.extras import require, require_torch

LCG_MULT = np.int64(6364136223846793005)
_TABLES: dict[tuple[int, int], np.ndarray] = {}


def sampling_table(size: int, seed: int) -> np.ndarray:
    """transformers' sampling table (int8 zeros and ones), drawn with torch once per (size, seed)."""
    if (size, seed) not in _TABLES:
        require_torch("the synthid scheme")
        import torch

        gen = torch.Generator().manual_seed(seed)
        _TABLES[size, seed] = torch.randint(0, 2, (size,), generator=gen).numpy().astype(np.int8)
    return _TABLES[size, seed]


def accumulate_hash(h: np.ndarray, columns) -> np.ndarray:
    """One LCG step per column (int64, wrapping): ``h = (h + x) * mult + 1`` for each ``x``."""
    with np.errstate(over="ignore"):
        for x in columns:
            h = (h + x) * LCG_MULT + np.int64(1)
    return h


def _as_int64(x: int) -> int:
    x %= 2**64
    return x - 2**64 if x >= 2**63 else x


class SynthIDScheme(Scheme):
    """transformers' SynthID-Text watermark; see the module docstring."""

    name = "synthid"

    def __init__(self, keys: list[int], *, vocab_size: int, ngram_len: int = 5, sampling_table_size: int = 2**16,
                 sampling_table_seed: int = 0, context_history_size: int = 1024, skip_first_ngram_calls: bool = False,
                 eos_token_id: int | None = None, statistic: str = "weighted_mean") -> None:
        if not keys:
            raise ValueError("synthid needs at least one key")
        if statistic not in ("mean", "weighted_mean"):
            raise ValueError(f"statistic must be 'mean' or 'weighted_mean', not {statistic!r}")
        if ngram_len < 2 or sampling_table_size < 2 or context_history_size < 1:
            raise ValueError("ngram_len >= 2, sampling_table_size >= 2 and context_history_size >= 1 are required")
        self.keys = [int(k) for k in keys]
        self.vocab_size = int(vocab_size)
        self.ngram_len = int(ngram_len)
        self.sampling_table_size = int(sampling_table_size)
        self.sampling_table_seed = int(sampling_table_seed)
        self.context_history_size = int(context_history_size)
        self.skip_first_ngram_calls = bool(skip_first_ngram_calls)
        self.eos_token_id = eos_token_id
        self.statistic = statistic
        self.depth = len(self.keys)
        w = np.linspace(10, 1, self.depth)
        self.weights = w * (self.depth / w.sum())  # detector_mean.py's normalised weights
        c = 10 * (self.depth - 1) - 9 * np.arange(self.depth)  # weights * (D - 1): integers
        self.lattice_step = reduce(math.gcd, c.tolist()) * self.depth / c.sum() if self.depth > 1 else 1.0

    @property
    def key_id(self) -> str:
        return key_digest(self.name, json.dumps(self.keys, separators=(",", ":")).encode("ascii"))

    def params(self) -> dict:
        return {"scheme": self.name, "vocab_size": self.vocab_size, "ngram_len": self.ngram_len,
                "sampling_table_size": self.sampling_table_size, "sampling_table_seed": self.sampling_table_seed,
                "context_history_size": self.context_history_size,
                "skip_first_ngram_calls": self.skip_first_ngram_calls, "eos_token_id": self.eos_token_id,
                "statistic": self.statistic}

    @property
    def p1(self) -> float:
        """The table's share of ones: P(g = 1) for text written without the keys."""
        return float(sampling_table(self.sampling_table_size, self.sampling_table_seed).mean())

    def logits_processor(self):
        """transformers' own ``SynthIDTextWatermarkLogitsProcessor``, configured identically (CPU)."""
        require(("transformers",), "smollm2", "the synthid logits processor")
        require_torch("the synthid logits processor")
        from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

        return SynthIDTextWatermarkLogitsProcessor(
            ngram_len=self.ngram_len, keys=self.keys, sampling_table_size=self.sampling_table_size,
            sampling_table_seed=self.sampling_table_seed, context_history_size=self.context_history_size,
            device="cpu", skip_first_ngram_calls=self.skip_first_ngram_calls)

    # ------------------------------------------------------------------------------- scoring
    def g_values(self, seqs: TokenSequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item index per n-gram, g-values (n-grams x depth, int8), mask per n-gram (bool)).

        n-grams are in item order, ``len - ngram_len + 1`` per item, as ``compute_g_values``."""
        tokens = seqs.tokens
        if seqs.n_tokens and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        n = self.ngram_len
        starts, lengths = seqs.offsets[:-1], seqs.lengths
        counts = np.maximum(lengths - n + 1, 0)
        item = np.repeat(np.arange(len(seqs)), counts)
        first = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        pos = first + np.arange(len(item))  # each n-gram's first token
        columns = [tokens[pos + i] for i in range(n)]  # the n-grams, one column per position
        context_hash = accumulate_hash(np.ones(len(item), dtype=np.int64), columns[:-1])
        ngram_hash = accumulate_hash(context_hash, columns[-1:])
        keys = np.array([_as_int64(k) for k in self.keys], dtype=np.int64)
        key_hash = accumulate_hash(ngram_hash[:, None], [keys[None, :]])  # (n-grams, depth)
        table = sampling_table(self.sampling_table_size, self.sampling_table_seed)
        size = self.sampling_table_size
        g = table[key_hash & (size - 1) if (size & (size - 1)) == 0 else key_hash % size]  # floor modulo either way
        mask = ~self._repeated(item, context_hash)
        if self.eos_token_id is not None:
            seen = np.concatenate([[0], np.cumsum(tokens == self.eos_token_id)])  # EOS before each position
            mask &= seen[pos + n] == seen[starts[item]]  # none in the item up to the n-gram's last token
        return item, g, mask

    def _repeated(self, item: np.ndarray, context_hash: np.ndarray) -> np.ndarray:
        """The context repetition test: an equal context hash within the previous M n-grams of
        the item, or hash 0 among its first M n-grams (the processor's initial zero history)."""
        # a stable sort by hash keeps equal hashes in position order, hence grouped by item too
        order = np.argsort(context_hash, kind="stable")
        h, it = context_hash[order], item[order]
        again = (h[1:] == h[:-1]) & (it[1:] == it[:-1])  # the same hash earlier in the same item
        repeated = np.zeros(len(item), dtype=bool)
        later, earlier = order[1:][again], order[:-1][again]
        repeated[later] = later - earlier <= self.context_history_size
        zero = np.flatnonzero(context_hash == 0)
        if len(zero):  # the initial history of zeros
            repeated[zero] |= zero - np.searchsorted(item, item[zero]) < self.context_history_size
        return repeated

    def score(self, seqs: TokenSequences) -> SchemeScores:
        item, g, mask = self.g_values(seqs)
        n_items, D = len(seqs), self.depth
        N = np.bincount(item, weights=mask, minlength=n_items).astype(np.int64)
        # ones per item and depth: items are contiguous, so differences of a running sum
        running = np.zeros((int(mask.sum()) + 1, D), dtype=np.int64)
        np.cumsum(g[mask], axis=0, out=running[1:])
        bounds = np.searchsorted(item[mask], np.arange(n_items + 1))
        per_depth = running[bounds[1:]] - running[bounds[:-1]]
        ones = per_depth.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = ones / (D * N)
            wmean = (per_depth * self.weights).sum(axis=1) / (D * N)
        p1 = self.p1
        scored = N > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(scored, (mean - p1) / np.sqrt(p1 * (1 - p1) / (D * N)), np.nan)
        from scipy import stats

        if self.statistic == "mean":
            score = mean
            p = stats.binom.sf(ones - 1, np.maximum(D * N, 1), p1)
        else:
            score = wmean
            p = weighted_tail(wmean * D * N, N, self.weights, p1, step=self.lattice_step)
        return SchemeScores(N, np.where(scored, score, 0.0), z, np.where(scored, np.clip(p, 0.0, 1.0), 1.0))

    def null_flag_prob(self, n_scored: np.ndarray, alpha: float) -> np.ndarray:
        if self.statistic == "mean":
            return binomial_flag_prob(np.asarray(n_scored) * self.depth, self.p1, alpha)
        return super().null_flag_prob(n_scored, alpha)


# ------------------------------------------------------------------- the weighted mean's tail
def weighted_tail(x: np.ndarray, n: np.ndarray, w: np.ndarray, p: float, step: float = 0.0) -> np.ndarray:
    """P(sum_d w_d B_d >= x), ``B_d ~ Binomial(n, p)`` independent: Lugannani-Rice saddlepoint,
    evaluated at ``x - step / 2`` (``step``: the lattice step of the sum, for the continuity correction).

    Vectorised over items (``x``, ``n``); exact at the ends (``x <= 0``: 1; ``x`` at the maximum
    ``n sum w``: ``p**(n D)``). Near the mean (``|w| < 1e-4``) the formula's removable singularity
    is replaced by its limit ``1/2 - K'''(0) / (6 sqrt(2 pi) K''(0)**1.5)``."""
    from scipy import stats

    x, n = np.asarray(x, dtype=np.float64), np.asarray(n, dtype=np.float64)
    out = np.ones(len(x))
    top = n * w.sum()
    tol = 1e-9 * np.maximum(top, 1.0)
    at_top = (n > 0) & (x >= top - tol)
    out[at_top] = p ** (n[at_top] * len(w))
    live = (n > 0) & (x > tol) & ~at_top
    if not live.any():
        return out
    xs, ns = x[live] - step / 2, n[live]

    def cumulants(t):
        e = np.exp(np.clip(t[:, None] * w, -700, 700))
        q = p * e / (1 - p + p * e)  # tilted success probability per depth
        k0 = ns * np.log1p(p * np.expm1(np.clip(t[:, None] * w, -700, 700))).sum(axis=1)
        k1 = ns * (w * q).sum(axis=1)
        k2 = ns * (w**2 * q * (1 - q)).sum(axis=1)
        return k0, k1, k2

    # Newton on K'(t) = x, kept inside a bracket (K' is increasing)
    lo, hi = np.full(len(xs), -1e3), np.full(len(xs), 1e3)
    t = np.zeros(len(xs))
    done = np.zeros(len(xs), dtype=bool)  # an item stops at its own convergence: its p-value never
    for _ in range(200):                  # depends on the other items scored with it
        _, k1, k2 = cumulants(t)
        f = k1 - xs
        lo, hi = np.where(f < 0, t, lo), np.where(f > 0, t, hi)
        step = t - f / np.maximum(k2, 1e-300)
        t_new = np.where((step > lo) & (step < hi), step, (lo + hi) / 2)
        converged = np.abs(t_new - t) <= 1e-13 * np.maximum(1.0, np.abs(t))
        t = np.where(done, t, t_new)
        done |= converged
        if done.all():
            break
    k0, k1, k2 = cumulants(t)
    r = np.sign(t) * np.sqrt(np.maximum(2 * (t * xs - k0), 0.0))
    u = t * np.sqrt(k2)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = stats.norm.sf(r) + stats.norm.pdf(r) * (1 / u - 1 / r)
    # near the mean: the limit, from K'' and K''' at 0
    q0 = p * (1 - p)
    k2_0 = ns * q0 * (w**2).sum()
    k3_0 = ns * q0 * (1 - 2 * p) * (w**3).sum()
    mid = 0.5 - k3_0 / (6 * np.sqrt(2 * np.pi) * k2_0**1.5)
    out[live] = np.where(np.abs(r) < 1e-4, mid, lr)
    return out
