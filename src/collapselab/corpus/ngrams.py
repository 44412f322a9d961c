"""Integer keys for n-grams, shared by the n-gram model and the text metrics.

An n-gram of token ids becomes one int64: the exact base-``V`` number when ``V**n`` fits in 63
bits, else a 64-bit multiplicative hash (collisions have probability about ``m**2 / 2**64`` for
``m`` distinct n-grams: negligible at corpus scale). Fit-time and sample-time code must agree on
``V``, so it is always passed explicitly.
"""

from __future__ import annotations

import numpy as np

from collapselab.corpus.sequences import TokenSequences

_MIX = np.uint64(0x9E3779B97F4A7C15)


def exact(vocab_size: int, n: int) -> bool:
    return n == 0 or vocab_size ** n < 2**63


def combine(columns: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """Keys of n-grams given as ``n`` equal-length id arrays, oldest token first."""
    n, m = len(columns), len(columns[0]) if columns else 0
    if exact(vocab_size, n):
        key = np.zeros(m, dtype=np.int64)
        for col in columns:
            key *= vocab_size
            key += col
        return key
    h = np.full(m, 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            h ^= col.astype(np.uint64)
            h *= _MIX
            h ^= h >> np.uint64(29)
    return h.view(np.int64)


def encode(window: np.ndarray, vocab_size: int) -> np.ndarray:
    """Keys of the rows of ``window`` (shape ``(m, n)``, oldest token first)."""
    return combine([window[:, j] for j in range(window.shape[1])], vocab_size)


def rolling(stream: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """Key of the n tokens ending at each position ``i >= n - 1`` of ``stream``
    (entry ``i - n + 1`` of the result)."""
    m = len(stream) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    s = stream.astype(np.int64, copy=False)
    return combine([s[j : j + m] for j in range(n)], vocab_size)


def keys(seqs: TokenSequences, n: int, vocab_size: int) -> np.ndarray:
    """int64 keys of every n-gram inside the items of ``seqs`` (in order of occurrence)."""
    k = rolling(seqs.tokens, n, vocab_size)
    if n == 1 or len(k) == 0:
        return k
    item = seqs.item_index()
    return k[item[: len(k)] == item[n - 1 :]]
