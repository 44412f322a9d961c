"""Distances between Gaussians and Gaussian mixtures, against the reference distribution.

- ``w2``: Wasserstein-2 distance between N(m1, S1) and N(m2, S2):
  ``|m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)``, square-rooted.
- ``mixture_l2``: the L2 distance between two mixture densities, in closed form
  (``int (f - g)^2``, square-rooted), as in the Nature paper's GMM notebook.
- ``mean_error``: Euclidean distance between the mixtures' overall means.
- ``variance_ratio``: trace of the overall covariance over the reference's.
"""

from __future__ import annotations

import numpy as np

Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]  # weights (K,), means (K, d), covs (K, d, d)


def moments(mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
    w, mu, cov = mix
    w = w / w.sum()
    mean = w @ mu
    dev = mu - mean
    total = np.einsum("k,kij->ij", w, cov) + np.einsum("k,ki,kj->ij", w, dev, dev)
    return mean, total


def w2(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    from scipy.linalg import sqrtm

    r2 = np.real(sqrtm(s2))
    cross = np.real(sqrtm(r2 @ s1 @ r2))
    val = float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross))
    return float(np.sqrt(max(val, 0.0)))


def _cross_term(a: Mixture, b: Mixture) -> float:
    from scipy.stats import multivariate_normal

    wa, ma, ca = a
    wb, mb, cb = b
    total = 0.0
    for i in range(len(wa)):
        for j in range(len(wb)):
            total += wa[i] * wb[j] * multivariate_normal(mb[j], ca[i] + cb[j], allow_singular=True).pdf(ma[i])
    return float(total)


def mixture_l2(a: Mixture, b: Mixture) -> float:
    a = (a[0] / a[0].sum(), a[1], a[2])
    b = (b[0] / b[0].sum(), b[1], b[2])
    val = _cross_term(a, a) + _cross_term(b, b) - 2 * _cross_term(a, b)
    return float(np.sqrt(max(val, 0.0)))


def theory_metrics(fitted: Mixture, reference: Mixture) -> dict[str, float]:
    m1, s1 = moments(fitted)
    m0, s0 = moments(reference)
    return {
        "mean_error": float(np.linalg.norm(m1 - m0)),
        "variance_ratio": float(np.trace(s1) / np.trace(s0)),
        "w2": w2(m1, s1, m0, s0),
        "mixture_l2": mixture_l2(fitted, reference),
    }
