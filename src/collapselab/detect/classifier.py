"""A trained detector: hashed word n-grams (and character n-grams) + logistic regression.

Features per item
-----------------
* Word n-grams of orders ``word_orders`` (default 1-3), taken straight from the token ids (a
  token is a word): each n-gram's integer key (:mod:`collapselab.corpus.ngrams`) is hashed to one
  of ``n_features`` columns with a sign, as in scikit-learn's ``HashingVectorizer``; an item's
  first tokens form n-grams with ``<s>`` pads so sentence openings count. Vectorised, no Python
  loop per token.
* Character n-grams (``char_orders``, default 2-4 within word boundaries), only when a
  Vocabulary is given (``vocab=``): ``HashingVectorizer(analyzer="char_wb")`` over the decoded
  text, which does loop in Python per item (scikit-learn's analyzer).

Counts are ``log1p``-damped and each row l2-normalised; a ``LogisticRegression`` is trained on
human (label 0) vs known synthetic (label 1) items. ``score`` is the decision function (log-odds):
higher = more likely synthetic.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from collapselab.corpus import ngrams
from collapselab.detect.base import as_sequences

_MIX = np.uint64(0x9E3779B97F4A7C15)
_BASE = 2**24 + 1  # fixed key base (ids < 2**24), so features agree between fit and score


def _hash(keys: np.ndarray, salt: int) -> np.ndarray:
    h = keys.astype(np.uint64) ^ np.uint64(salt * 0x632BE59BD9B4E019 & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        h *= _MIX
        h ^= h >> np.uint64(31)
        h *= _MIX
        h ^= h >> np.uint64(29)
    return h


def word_ngram_features(seqs, orders=(1, 2, 3), n_features: int = 2**18) -> sp.csr_matrix:
    """Signed hashed counts of word n-grams per item (a sparse ``len(seqs) x n_features``)."""
    n = len(seqs)
    item = seqs.item_index()
    tok = seqs.tokens.astype(np.int64) + 1  # 0 is the pad
    within = np.arange(len(tok), dtype=np.int64) - seqs.offsets[:-1][item]
    rows, cols, vals = [], [], []
    for k in orders:
        columns = []
        for j in range(k - 1, -1, -1):  # token j positions back, oldest first
            prev = np.zeros(len(tok), dtype=np.int64)
            ok = within >= j
            idx = np.flatnonzero(ok)
            prev[idx] = tok[idx - j]
            columns.append(prev)
        h = _hash(ngrams.combine(columns, _BASE), k)
        cols.append((h % np.uint64(n_features)).astype(np.int64))
        vals.append(np.where((h >> np.uint64(63)) == 1, -1.0, 1.0))
        rows.append(item)
    X = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n_features)
    ) if rows and len(tok) else sp.csr_matrix((n, n_features))
    X.sum_duplicates()
    return X


def _damp_and_normalise(X: sp.csr_matrix) -> sp.csr_matrix:
    X = X.tocsr(copy=True)
    X.data = np.sign(X.data) * np.log1p(np.abs(X.data))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ X


class ClassifierDetector:
    """Hashed n-gram features + logistic regression, trained on human vs synthetic items.

    Parameters
    ----------
    n_features: hashed feature columns (per feature family).
    word_orders: word n-gram orders.
    char_orders: character n-gram range ``(lo, hi)``, used only with ``vocab``; ``None`` = off.
    C: inverse l2 regularisation of the logistic regression.
    max_iter: solver iterations.
    vocab: a Vocabulary: enables character features and scoring a list of str.
    """

    def __init__(
        self,
        *,
        n_features: int = 2**18,
        word_orders=(1, 2, 3),
        char_orders: tuple[int, int] | None = (2, 4),
        C: float = 4.0,
        max_iter: int = 1000,
        vocab=None,
    ) -> None:
        self.n_features = n_features
        self.word_orders = word_orders
        self.char_orders = char_orders
        self.C = C
        self.max_iter = max_iter
        self.vocab = vocab

    def features(self, texts) -> sp.csr_matrix:
        seqs = as_sequences(texts, self.vocab)
        X = _damp_and_normalise(word_ngram_features(seqs, self.word_orders, self.n_features))
        if self.vocab is not None and self.char_orders is not None:
            from sklearn.feature_extraction.text import HashingVectorizer

            hv = HashingVectorizer(analyzer="char_wb", ngram_range=tuple(self.char_orders),
                                   n_features=self.n_features, alternate_sign=True, norm=None)
            C = _damp_and_normalise(hv.transform(self.vocab.decode(seqs)))
            X = sp.hstack([X, C], format="csr")
        return X

    def fit(self, human, synthetic, *, rng: np.random.Generator) -> "ClassifierDetector":
        """Train on ``human`` (label 0) and ``synthetic`` (label 1) items; returns ``self``."""
        from sklearn.linear_model import LogisticRegression

        Xh, Xs = self.features(human), self.features(synthetic)
        X = sp.vstack([Xh, Xs], format="csr")
        y = np.r_[np.zeros(Xh.shape[0]), np.ones(Xs.shape[0])]
        perm = rng.permutation(len(y))  # the solver's visiting order is the only randomness
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="liblinear",
                                         random_state=int(rng.integers(2**31 - 1)))
        self.model_.fit(X[perm], y[perm])
        return self

    def score(self, texts) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("ClassifierDetector is not fitted: call fit(human, synthetic, rng=...)")
        return self.model_.decision_function(self.features(texts)).astype(np.float64)
