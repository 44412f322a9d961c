"""Distances between Gaussians and Gaussian mixtures, against the reference distribution.

- ``w2``: Wasserstein-2 distance between N(m1, S1) and N(m2, S2):
  ``|m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)``, square-rooted.
- ``mixture_l2``: the L2 distance between two mixture densities, in closed form
  (``int (f - g)^2``, square-rooted), as in the Nature paper's GMM notebook.
- ``mean_error``: Euclidean distance between the mixtures' overall means.
- ``variance_ratio``: trace of the overall covariance over the reference's.
"""

from __future__ import annotations

import math

import numpy as np

Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]  # weights (K,), means (K, d), covs (K, d, d)


def moments(mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
    w, mu, cov = mix
    w = w / w.sum()
    mean = w @ mu
    dev = mu - mean
    total = np.einsum("k,kij->ij", w, cov) + np.einsum("k,ki,kj->ij", w, dev, dev)
    return mean, total


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def w2(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    r2 = _sqrtm_psd(s2)
    cross = _sqrtm_psd(r2 @ s1 @ r2)
    val = float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross))
    return float(np.sqrt(max(val, 0.0)))


def _cross_term(a: Mixture, b: Mixture) -> float:
    """``sum_ij wa_i wb_j N(ma_i; mb_j, ca_i + cb_j)``: the integral of the product of two mixture
    densities, every pair of components at once."""
    wa, ma, ca = a
    wb, mb, cb = b
    cov = ca[:, None] + cb[None, :]  # (Ka, Kb, d, d)
    diff = ma[:, None, :] - mb[None, :, :]  # (Ka, Kb, d)
    sign, logdet = np.linalg.slogdet(cov)
    if np.any(sign <= 0) or np.any(logdet < -700):  # singular sums (collapsed components): the pseudo-inverse
        return _cross_term_singular(a, b)
    maha = np.einsum("abi,abi->ab", diff, np.linalg.solve(cov, diff[..., None])[..., 0])
    d = ma.shape[1]
    dens = np.exp(-0.5 * (maha + logdet + d * np.log(2 * np.pi)))
    return float(wa @ dens @ wb)


def _cross_term_singular(a: Mixture, b: Mixture) -> float:
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


def _normal_metrics(fitted: Mixture, reference: Mixture) -> dict[str, float]:
    """The same four numbers for two 1-D normals, in scalar arithmetic (the Gaussian family's case,
    thousands of times per Monte-Carlo run)."""
    m1, v1 = float(fitted[1][0, 0]), float(fitted[2][0, 0, 0])
    m0, v0 = float(reference[1][0, 0]), float(reference[2][0, 0, 0])

    def cross(ma: float, va: float, mb: float, vb: float) -> float:  # N(ma; mb, va + vb)
        v = va + vb
        return math.exp(-0.5 * (ma - mb) ** 2 / v) / math.sqrt(2 * math.pi * v)

    l2 = cross(m1, v1, m1, v1) + cross(m0, v0, m0, v0) - 2 * cross(m1, v1, m0, v0)
    w2_sq = (m1 - m0) ** 2 + (math.sqrt(max(v1, 0.0)) - math.sqrt(max(v0, 0.0))) ** 2
    return {"mean_error": abs(m1 - m0), "variance_ratio": v1 / v0, "w2": math.sqrt(max(w2_sq, 0.0)),
            "mixture_l2": math.sqrt(max(l2, 0.0))}


def theory_metrics(fitted: Mixture, reference: Mixture) -> dict[str, float]:
    if (len(fitted[0]) == len(reference[0]) == 1 and fitted[1].shape[1] == 1 and reference[1].shape[1] == 1
            and fitted[2][0, 0, 0] > 0 and reference[2][0, 0, 0] > 0):
        return _normal_metrics(fitted, reference)
    m1, s1 = moments(fitted)
    m0, s0 = moments(reference)
    return {
        "mean_error": float(np.linalg.norm(m1 - m0)),
        "variance_ratio": float(np.trace(s1) / np.trace(s0)),
        "w2": w2(m1, s1, m0, s0),
        "mixture_l2": mixture_l2(fitted, reference),
    }
