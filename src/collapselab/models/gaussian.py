"""A d-dimensional Gaussian: the theory model of Shumailov et al. (2024) and of MAD (2023).

``fit`` estimates the mean and covariance by maximum likelihood (``estimator="mle"``, divide by
M) or unbiasedly (``"unbiased"``, divide by M-1). ``sample`` draws from N(mu, lambda * Sigma):
``bias`` is MAD's sampling-bias lambda (1 = unbiased sampling, < 1 favours the mode).
"""

from __future__ import annotations

import numpy as np


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


class GaussianModel:
    def __init__(self, estimator: str = "mle", bias: float = 1.0) -> None:
        self.estimator = estimator
        self.bias = bias

    def fit(self, data: np.ndarray, *, rng: np.random.Generator | None = None) -> "GaussianModel":
        if self.estimator not in ("mle", "unbiased"):
            raise ValueError("estimator must be 'mle' or 'unbiased'")
        x = np.asarray(data, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if len(x) < 2:
            raise ValueError("need at least 2 items to fit a Gaussian")
        self.mean_ = x.mean(axis=0)
        ddof = 0 if self.estimator == "mle" else 1
        self.cov_ = np.atleast_2d(np.cov(x, rowvar=False, ddof=ddof))
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, len(self.mean_)))
        return self.mean_ + np.sqrt(self.bias) * z @ _sqrt_psd(self.cov_).T

    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        x = np.asarray(data, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 and len(self.mean_) == 1 else np.atleast_2d(x)
        vals, vecs = np.linalg.eigh(self.cov_)
        if vals.min() <= 1e6 * np.finfo(np.float64).eps * np.abs(vals).max():
            # (near-)singular, as after collapse: scipy's pseudo-determinant and support mask
            from scipy.stats import multivariate_normal

            return np.atleast_1d(multivariate_normal(self.mean_, self.cov_, allow_singular=True).logpdf(x))
        maha = np.sum(((x - self.mean_) @ vecs) ** 2 / vals, axis=1)
        return -0.5 * (len(vals) * np.log(2 * np.pi) + np.log(vals).sum() + maha)

    # the fitted distribution as a one-component mixture, for the shared metrics
    def mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.ones(1), self.mean_[None], self.cov_[None]
