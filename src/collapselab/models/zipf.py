"""Zipf-distributed tokens and the test errors of a learner trained on them: the data model of
Dohmatob, Feng, Yang, Charton & Kempe (2024, "A Tale of Tails", ICML) and of Dohmatob et al.
(2025, "Strong Model Collapse", ICLR).

Token ``i`` (0-based: rank ``i + 1``) has probability ``p_i ∝ (i + 1)^(-beta)`` over ``n_types``
types. The learner is a :class:`~collapselab.models.categorical.CategoricalModel`; a generator
that cuts the tail is one with ``top_k`` / ``top_p``. Two test errors, both against the *true*
Zipf distribution:

- :func:`missing_mass`: the memorising learner's error (Hutter's model, used in A Tale of Tails):
  the probability that a test token is a type the learner never saw;
- :func:`l2_error`: the frequency estimator's squared error ``||p_hat - p||^2``.
"""

from __future__ import annotations

import numpy as np

from collapselab.theory.zipf import zipf_probs


class ZipfSource:
    """The human data: iid tokens with Zipf(beta) frequencies over ``n_types`` types."""

    def __init__(self, n_types: int, beta: float) -> None:
        self.n_types = n_types
        self.beta = beta
        self.probs = zipf_probs(n_types, beta)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.n_types, size=n, p=self.probs)[:, None].astype(np.int64)


def missing_mass(model, probs: np.ndarray) -> float:
    """sum_i p_i [type i unseen in the model's training data]: the memoriser's test error."""
    return float(np.sum(np.asarray(probs)[model.counts_ == 0]))


def l2_error(model, probs: np.ndarray) -> float:
    """||p_hat - p||^2 between the fitted frequencies and the true distribution."""
    return float(np.sum((model.probs_ - np.asarray(probs)) ** 2))
