"""What every text-watermark scheme provides: scores of token-id sequences, and its public name.

A *scheme* (``collapselab``, ``hf-kgw``, ``synthid``, ``gumbel``, ``gumbel-dual``) is built from a
spec (:mod:`collapselab.detect.schemes.spec`: its public parameters) and a key (read from a 0600
key file; never printed, never in a manifest: ``key_id`` names it instead). It scores a corpus of
token-id sequences in one call::

    s = scheme.score(seqs)      # seqs: TokenSequences (one item = one document)
    s.p_value                   # one-sided p-value of "no watermark", per item

Every scheme reports, per item:

* ``n_scored``: how many tokens count as evidence (after the scheme's own context rules:
  context de-duplication, repeated n-grams, masked positions);
* ``score``: the scheme's *reference* statistic, exactly as its reference detector computes it
  (transformers' KGW z-score, SynthID's mean or weighted-mean g-value score, vLLM's Gumbel sum);
* ``z``: a z-score where the scheme has one (NaN otherwise);
* ``p_value``: the probability, under text written without the key, of a statistic at least as
  large; 1.0 where nothing was scored. Flagging ``p_value <= alpha`` flags human text at a rate of
  at most ``alpha`` (:meth:`Scheme.null_flag_prob` gives the exact rate where the statistic is
  discrete);
* ``n_green`` (KGW schemes only; else ``None``): the green count;
* ``n_trials`` (optional; ``n_scored`` when ``None``): the number of independent draws the
  p-value's null distribution counts, where it differs from ``n_scored`` (KGW: a (seed, token)
  decision met twice in an item is one draw, however transformers counts it for its z-score).

Higher ``score`` means more likely watermarked, for every scheme.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from collapselab.corpus.sequences import TokenSequences


@dataclass(frozen=True)
class SchemeScores:
    n_scored: np.ndarray  # int64, per item
    score: np.ndarray  # float64, the reference statistic (higher = more likely watermarked)
    z: np.ndarray  # float64, NaN where the scheme has no z-score
    p_value: np.ndarray  # float64 in [0, 1]; 1.0 where nothing was scored
    n_green: np.ndarray | None = None  # int64, KGW schemes only
    n_trials: np.ndarray | None = None  # int64: the p-value's independent draws; None: n_scored

    @property
    def trials(self) -> np.ndarray:
        return self.n_scored if self.n_trials is None else self.n_trials

    def __len__(self) -> int:
        return len(self.score)


class Scheme(ABC):
    """A keyed text watermark over token ids. Subclasses set ``name`` and implement ``score``.

    ``vocab_size`` is the size of the id space the generator sampled from (the model's logits
    width); ids outside ``[0, vocab_size)`` are a ``ValueError``.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def key_id(self) -> str:
        """A public name for the key (a digest that reveals nothing about it), for manifests."""

    @abstractmethod
    def params(self) -> dict:
        """The public parameters (no key), JSON-ready, as the spec gives them plus defaults."""

    @abstractmethod
    def score(self, seqs: TokenSequences) -> SchemeScores:
        """Score every item of ``seqs`` (see the module docstring)."""

    def null_flag_prob(self, n_scored: np.ndarray, alpha: float) -> np.ndarray:
        """P(``p_value <= alpha``) for an unwatermarked item with ``n_scored`` scored tokens
        (:attr:`SchemeScores.trials`: ``n_trials`` where the scheme gives it).

        ``alpha`` for a continuous statistic (0 where nothing is scored); discrete statistics
        override this with the exact rate (at most ``alpha``)."""
        return np.where(np.asarray(n_scored) > 0, float(alpha), 0.0)


def key_digest(scheme: str, key_material: bytes) -> str:
    """``key_id``: 16 hex digits of SHA-256 over the scheme name and the key's canonical bytes."""
    return hashlib.sha256(b"collapselab scheme key id v1\0" + scheme.encode() + b"\0" + key_material).hexdigest()[:16]


def binomial_flag_prob(n: np.ndarray, p: float, alpha: float) -> np.ndarray:
    """P(``P(Bin(n, p) >= G) <= alpha``) for ``G ~ Bin(n, p)``: the exact rate at which the
    binomial p-value test flags unwatermarked items with ``n`` trials (0 where ``n == 0``).

    The least flagged count is ``k = ppf(1 - alpha) + 1``; the float boundary is checked both ways."""
    from scipy import stats

    n_all = np.asarray(n, dtype=np.int64)
    t, inverse = np.unique(n_all, return_inverse=True)
    k0 = stats.binom.ppf(1 - alpha, t, p).astype(np.int64) + 1
    k = k0 + 1  # ppf's float rounding can be one off: take the least of k0 - 1, k0, k0 + 1 that is flagged
    for cand in (k0, k0 - 1):
        k = np.where(stats.binom.sf(cand - 1, t, p) <= alpha, cand, k)
    rate = np.where(t > 0, stats.binom.sf(k - 1, np.maximum(t, 1), p), 0.0)
    return rate.reshape(-1)[inverse].reshape(n_all.shape)
