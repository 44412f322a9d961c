"""The detector interface, and the small helpers every detector shares.

A detector maps texts to one score per item, **higher = more likely synthetic**::

    scores = detector.score(texts)          # np.ndarray of float64, len(texts)

``texts`` is a :class:`~collapselab.corpus.sequences.TokenSequences` (one item = one document or
sentence). A list of ``str`` is accepted too when the detector knows a
:class:`~collapselab.corpus.tokenize.Vocabulary` (``vocab=``): each string is tokenised and
encoded as one item. Detectors that learn something (a direction, a classifier) have ``fit``
returning ``self``; the rest are ready once constructed.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from collapselab.corpus.sequences import TokenSequences


@runtime_checkable
class Detector(Protocol):
    def score(self, texts) -> np.ndarray:  # higher = more likely synthetic
        ...


def as_sequences(texts, vocab=None) -> TokenSequences:
    """``texts`` as :class:`TokenSequences`: passed through, or a list of str encoded with ``vocab``."""
    if isinstance(texts, TokenSequences):
        return texts
    if vocab is None:
        raise TypeError("texts must be TokenSequences, or a list of str together with a Vocabulary (vocab=)")
    from collapselab.corpus.tokenize import tokenize

    if isinstance(texts, str):
        texts = [texts]
    return vocab.encode([tokenize(t) for t in texts])


def chunk(seqs: TokenSequences, size: int) -> TokenSequences:
    """Consecutive items joined ``size`` at a time into one item each (the last may be shorter).

    Sentences are short; detectors gain power on longer units, so evaluations also score chunks
    of ~10 sentences. Tokens are only regrouped (no copy of their order): ``chunk(s, 1) == s``.
    """
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    n = len(seqs)
    bounds = np.append(np.arange(0, n, size, dtype=np.int64), n)
    return TokenSequences(seqs.tokens, seqs.offsets[bounds])


def orientation(scores_human: np.ndarray, scores_synthetic: np.ndarray) -> float:
    """+1 if ``scores_synthetic`` tend to be higher than ``scores_human`` (AUROC >= 0.5), else -1."""
    from collapselab.detect.calibration import auroc

    return 1.0 if auroc(scores_human, scores_synthetic) >= 0.5 else -1.0


def mean_per_item(values: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """Mean of per-token ``values`` per item (NaN for an item with no token)."""
    s = np.bincount(item, weights=values, minlength=n_items)
    n = np.bincount(item, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


__all__: Sequence[str] = ["Detector", "as_sequences", "chunk", "orientation", "mean_per_item"]
