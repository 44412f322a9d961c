"""Lexical diversity of a token stream: pure, vectorised functions of id arrays.

Definitions (``tokens``: all items' tokens back to back; n-grams never cross items):

- ``vocab_size``: number of distinct types.
- ``ttr``: types / tokens.
- ``mattr``: moving-average type-token ratio over windows of ``window`` tokens (Covington &
  McFall 2010) on the concatenated stream; the plain TTR when the stream is shorter.
- ``distinct_n``: distinct n-grams / n-grams (Li et al. 2016).
- ``entropy``: Shannon entropy of the unigram distribution, in bits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences


def vocab_size(tokens: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(tokens))) if len(tokens) else 0


def ttr(tokens: np.ndarray) -> float:
    return vocab_size(tokens) / len(tokens) if len(tokens) else 0.0


def mattr(tokens: np.ndarray, window: int = 500) -> float:
    n = len(tokens)
    if n == 0:
        return 0.0
    if n <= window:
        return ttr(tokens)
    # previous occurrence of each token's type (-1 if none); uint16 ids sort by radix sort
    ids = tokens.astype(np.uint16) if tokens.max() < 2**16 else tokens
    order = np.argsort(ids, kind="stable")
    prev = np.full(n, -1, dtype=np.int64)
    same = tokens[order[1:]] == tokens[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    # position j adds one distinct type to every window start i with prev[j] < i <= j, i > j - window
    n_windows = n - window + 1
    lo = np.maximum(prev + 1, np.arange(n) - window + 1)
    lo = np.maximum(lo, 0)
    hi = np.minimum(np.arange(n), n_windows - 1)
    # summing over windows, each position counts once per window it is new in
    return float(np.clip(hi - lo + 1, 0, None).sum() / n_windows / window)


def distinct_n(seqs: TokenSequences, n: int, vocab_size_: int) -> float:
    keys = ngrams.keys(seqs, n, vocab_size_)
    return float(len(pd.unique(keys)) / len(keys)) if len(keys) else 0.0


def entropy(tokens: np.ndarray) -> float:
    if len(tokens) == 0:
        return 0.0
    counts = np.bincount(tokens)
    p = counts[counts > 0] / len(tokens)
    return float(-(p * np.log2(p)).sum())
