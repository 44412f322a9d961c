"""Per-item scores of a text model, from its per-token log-probabilities.

A text family that defines ``token_log_probs(data) -> (logp, item)`` (the natural-log probability
of every scored token and the item it belongs to) gets the rest of the scoring protocol from
:class:`WordScores`: ``log_likelihood`` per item, ``n_scored`` (the item's words and its ``</s>``)
and ``perplexity`` per word, so perplexities of models with different tokenizers compare.
"""

from __future__ import annotations

import numpy as np

from collapselab.corpus.sequences import TokenSequences


class WordScores:
    def log_likelihood(self, data: TokenSequences) -> np.ndarray:
        """``log P(words..., </s>)`` per item (natural log)."""
        logp, item = self.token_log_probs(data)
        return np.bincount(item, weights=logp, minlength=len(data))

    @staticmethod
    def n_scored(data: TokenSequences) -> np.ndarray:
        """Words scored per item: its words and its ``</s>``."""
        return data.lengths + 1

    def perplexity(self, data: TokenSequences) -> float:
        """Per word: ``exp(-sum log_likelihood / sum n_scored)``."""
        return float(np.exp(-self.log_likelihood(data).sum() / self.n_scored(data).sum()))
