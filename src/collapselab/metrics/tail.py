"""What the human data had that a generation no longer produces, and what it invents.

- ``tail_retention``: of the human training set's *rare words* (types seen at least once and at
  most ``rare_max_count`` times, default 10), the share that the generation produces at least once.
- ``novel_ngram_rate``: of the generation's n-grams (every occurrence, n = 4 by default), the share
  that never occur in the human data: text the human corpus cannot vouch for, a proxy for
  hallucination.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences

RARE_MAX_COUNT = 10


def rare_words(human_tokens: np.ndarray, max_count: int = RARE_MAX_COUNT, exclude: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    counts = np.bincount(human_tokens)
    rare = np.flatnonzero((counts >= 1) & (counts <= max_count))
    return np.setdiff1d(rare, np.asarray(exclude))


def tail_retention(tokens: np.ndarray, rare: np.ndarray) -> float:
    if len(rare) == 0:
        return 1.0
    return float(np.isin(rare, tokens).mean())


def novel_ngram_rate(seqs: TokenSequences, human_keys: pd.Index, n: int, vocab_size: int) -> float:
    """``human_keys``: a :class:`pandas.Index` of the distinct human n-gram keys (a hash set)."""
    keys = ngrams.keys(seqs, n, vocab_size)
    if len(keys) == 0:
        return 0.0
    return float((human_keys.get_indexer(keys) < 0).mean())
