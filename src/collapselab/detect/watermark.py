"""Watermark detector: the KGW z-score of :class:`collapselab.provenance.watermark.Watermark`.

The score of an item is ``z = (G - gamma T) / sqrt(T gamma (1 - gamma))`` over its ``T`` scored
(context, token) pairs, ``G`` of them green. Items are scored as if preceded by ``h`` copies of
``pad`` (default ``<s>``, id 0: the n-gram sampler's start context), so every token counts. An
item with nothing to score (empty) gets ``z = 0``: no evidence either way. Under human text ``z``
is about N(0, 1) whatever the length, so a threshold from calibration transfers across lengths;
under watermarked text it grows like ``sqrt(T)``.
"""

from __future__ import annotations

import numpy as np

from collapselab.detect.base import as_sequences
from collapselab.models.ngram import BOS


class WatermarkDetector:
    """``score(texts)`` = the watermark's z-score per item (higher = more likely watermarked).

    Parameters
    ----------
    watermark: a :class:`~collapselab.provenance.watermark.Watermark` holding the key.
    pad: start-context id (see the module docstring); ``None`` skips each item's first ``h`` tokens.
    vocab: optional Vocabulary, to score a list of str.
    """

    def __init__(self, watermark, *, pad: int | None = BOS, vocab=None) -> None:
        self.watermark = watermark
        self.pad = pad
        self.vocab = vocab

    def fit(self, human=None, synthetic=None, *, rng=None) -> "WatermarkDetector":
        return self  # nothing to learn: the key decides

    def score(self, texts) -> np.ndarray:
        seqs = as_sequences(texts, self.vocab)
        if len(seqs) == 0:
            return np.zeros(0)
        z = self.watermark.detect(seqs, pad=self.pad).z
        return np.nan_to_num(np.asarray(z, dtype=np.float64), nan=0.0)
