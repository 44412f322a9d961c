"""Self-BLEU: how much each item of a set repeats the others (Zhu et al. 2018, Texygen), vectorised.

Every item of a set is a hypothesis and all *other* items of the set are its references; self-BLEU
is the mean over items of their BLEU-4. Higher means less diverse. Definition used here:

- modified precision ``p_k`` of an item (k = 1..4): its k-grams that occur in at least one other
  item of the set, over all its k-grams. A k-gram the item holds c times counts c times when found
  elsewhere (BLEU clips at the largest count in one reference; the two differ only when a k-gram
  repeats inside one sentence more often than in any other);
- no match at an order: 0.1 matches (Chen & Cherry's smoothing 1, NLTK's ``method1``);
- ``BLEU = exp(mean_k log p_k)`` over the orders the item is long enough for; no brevity penalty
  (among hundreds of references an item nearly always finds one of its own length);
- a set given by weights (a bootstrap resample) counts an item's copies in the mean, but a copy of
  an item is not "another" item.

:class:`SelfBLEU` precomputes the per-item n-gram tables of a pool of items once, then scores many
subsets of the pool at once: one row of a weight matrix per subset, no loop over items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from collapselab.corpus import ngrams
from collapselab.corpus.sequences import TokenSequences

MAX_N = 4
EPSILON = 0.1


def item_ngram_counts(seqs: TokenSequences, n: int, vocab_size: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Items x n-gram types: how often each item holds each n-gram (n-grams never cross items), and
    the types' keys (:mod:`collapselab.corpus.ngrams`; for n = 1 the token ids)."""
    rolled = ngrams.rolling(seqs.tokens, n, vocab_size)
    item = seqs.item_index()
    inside = item[: len(rolled)] == item[n - 1:]
    codes, types = pd.factorize(rolled[inside])
    counts = sparse.csr_matrix((np.ones(len(codes)), (item[: len(rolled)][inside], codes)),
                               shape=(len(seqs), len(types)))
    counts.sum_duplicates()
    return counts, np.asarray(types, dtype=np.int64)


def weighted_counts(weights: np.ndarray, counts: sparse.csr_matrix) -> np.ndarray:
    """``weights @ counts`` as a dense array: row p counts the n-grams of subset p."""
    return np.asarray((counts.T @ weights.T).T)


class SelfBLEU:
    """Self-BLEU of subsets of a fixed pool of items (see the module docstring)."""

    def __init__(self, seqs: TokenSequences, vocab_size: int, max_n: int = MAX_N):
        self.orders = []
        for k in range(1, max_n + 1):
            counts, _ = item_ngram_counts(seqs, k, vocab_size)
            coo = counts.tocoo()
            presence = sparse.csr_matrix((np.ones(coo.nnz), (coo.row, coo.col)), shape=counts.shape)
            # each stored (item, type) pair, as a sparse map onto its item
            onto_item = sparse.csr_matrix((coo.data, (np.arange(coo.nnz), coo.row)), shape=(coo.nnz, counts.shape[0]))
            totals = np.asarray(counts.sum(axis=1)).ravel()
            self.orders.append((presence, coo.col, onto_item, totals))

    def score(self, weights: np.ndarray) -> np.ndarray:
        """Self-BLEU of each subset: ``weights`` is (subsets, items), an item's copies per subset."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        present = (weights > 0).astype(np.float64)
        log_p = np.zeros(weights.shape)
        n_orders = np.zeros(weights.shape[1])
        for presence, pair_type, onto_item, totals in self.orders:
            holders = weighted_counts(present, presence)  # distinct items of the subset holding each type
            found = (holders[:, pair_type] >= 2).astype(np.float64)  # the item itself and another one
            matched = np.asarray((onto_item.T @ found.T).T)
            has = totals > 0
            p = np.where(matched > 0, matched, EPSILON) / np.maximum(totals, 1)
            log_p += np.where(has, np.log(p), 0.0)
            n_orders += has
        scored = weights * (n_orders > 0)
        bleu = np.exp(log_p / np.maximum(n_orders, 1))
        return (scored * bleu).sum(axis=1) / np.maximum(scored.sum(axis=1), 1e-300)


def self_bleu(seqs: TokenSequences, vocab_size: int, max_n: int = MAX_N) -> float:
    """Self-BLEU of all items of ``seqs``."""
    return float(SelfBLEU(seqs, vocab_size, max_n).score(np.ones(len(seqs)))[0])
