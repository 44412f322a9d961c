"""``collapselab``: our own keyed green-list watermark (:mod:`collapselab.provenance.watermark`)
as a scheme, over the word ids of a run's :class:`~collapselab.corpus.tokenize.Vocabulary`.

Scores are exactly :meth:`Watermark.detect` with ``<s>`` padding (every token scored, repeated
(context, token) pairs once): ``score`` is the z-score with 0 where nothing was scored, ``z`` the
z-score (NaN there), ``p_value`` the exact binomial tail and ``n_green`` the green count.
"""

from __future__ import annotations

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes.base import Scheme, SchemeScores, binomial_flag_prob


class CollapselabScheme(Scheme):
    name = "collapselab"

    def __init__(self, key: bytes, *, gamma: float = 0.25, context_width: int = 1, vocab_size: int | None = None) -> None:
        from collapselab.provenance.watermark import Watermark

        self.watermark = Watermark(key, gamma=gamma, context_width=context_width)
        self.gamma, self.context_width, self.vocab_size = gamma, context_width, vocab_size

    @property
    def key_id(self) -> str:
        return self.watermark.key_id

    def params(self) -> dict:
        return {"scheme": self.name, "gamma": self.gamma, "context_width": self.context_width}

    def score(self, seqs: TokenSequences) -> SchemeScores:
        from collapselab.models.ngram import BOS

        if self.vocab_size is not None and seqs.n_tokens and (seqs.tokens.min() < 0 or seqs.tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        d = self.watermark.detect(seqs, pad=BOS)
        z = np.asarray(d.z, dtype=np.float64)
        return SchemeScores(np.asarray(d.n_scored, dtype=np.int64), np.nan_to_num(z, nan=0.0), z,
                            np.asarray(d.p_value, dtype=np.float64), np.asarray(d.n_green, dtype=np.int64))

    def null_flag_prob(self, n_scored: np.ndarray, alpha: float) -> np.ndarray:
        return binomial_flag_prob(n_scored, self.gamma, alpha)
