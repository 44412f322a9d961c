"""A categorical distribution over ``n_types`` tokens, fitted by counts: the "statistical
language model" of Seddik et al. (2024, "How Bad is Training on Synthetic Data?") and the
frequency-estimating / memorising learner of Dohmatob et al. (2024, "A Tale of Tails").

An item is one token id (a row of a one-column array). ``fit`` counts tokens:
``probs_ = (counts + pseudo_count) / (M + pseudo_count * n_types)`` (``pseudo_count=0``, the
default, is the maximum-likelihood fit). ``sample`` draws iid tokens from the fitted distribution
*after* the generator's tail cutting:

- ``top_k``: keep only the ``k`` most probable types (ties: the lower token id first);
- ``top_p``: keep the smallest set of most probable types whose mass reaches ``p`` (nucleus);

and renormalise. ``sample_probs_`` is that sampling distribution; ``probs_`` the fitted one.
"""

from __future__ import annotations

import numpy as np


def truncate(probs: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """``probs`` restricted to its top-k and/or top-p types, renormalised (ties: lower index first)."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    keep = np.zeros(len(p), dtype=bool)
    n_keep = int(np.count_nonzero(p))
    if top_k is not None:
        n_keep = min(n_keep, int(top_k))
    if top_p is not None:
        cum = np.cumsum(p[order]) / p.sum()
        n_keep = min(n_keep, int(np.searchsorted(cum, top_p - 1e-12)) + 1)
    keep[order[:n_keep]] = True
    out = np.where(keep, p, 0.0)
    return out / out.sum()


def tokens_of(data) -> np.ndarray:
    """Token ids of items given as an (n,) or (n, 1) array (floats holding integers are fine)."""
    x = np.asarray(data)
    if x.ndim == 2:
        if x.shape[1] != 1:
            raise ValueError("categorical items are single tokens: an (n, 1) array")
        x = x[:, 0]
    t = np.rint(x).astype(np.int64)
    if len(t) and not np.array_equal(t, x):
        raise ValueError("token ids must be integers")
    return t


class CategoricalModel:
    def __init__(self, n_types: int, top_k: int | None = None, top_p: float | None = None, pseudo_count: float = 0.0) -> None:
        self.n_types = n_types
        self.top_k = top_k
        self.top_p = top_p
        self.pseudo_count = pseudo_count

    def fit(self, data, *, rng: np.random.Generator | None = None) -> "CategoricalModel":
        t = tokens_of(data)
        if len(t) == 0:
            raise ValueError("need at least one token to fit a categorical model")
        if t.min() < 0 or t.max() >= self.n_types:
            raise ValueError(f"token ids must lie in [0, {self.n_types})")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must lie in (0, 1]")
        self.counts_ = np.bincount(t, minlength=self.n_types)
        a = float(self.pseudo_count)
        self.probs_ = (self.counts_ + a) / (len(t) + a * self.n_types)
        self.sample_probs_ = truncate(self.probs_, self.top_k, self.top_p)
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.n_types, size=n, p=self.sample_probs_)[:, None].astype(np.int64)

    def log_likelihood(self, data) -> np.ndarray:
        """log of the fitted probability of each token (-inf for a type never seen, when unsmoothed)."""
        with np.errstate(divide="ignore"):
            return np.log(self.probs_[tokens_of(data)])

    def collision(self) -> float:
        """sum_i p_i^2 of the fitted distribution: 1 exactly when it is a Dirac (Seddik's S)."""
        return float(np.sum(self.probs_**2))
