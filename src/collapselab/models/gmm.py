"""A Gaussian mixture (scikit-learn), the Nature paper's second toy model.

Fitting uses :class:`sklearn.mixture.GaussianMixture` with a ``random_state`` drawn from the rng
passed in; sampling is done here from the fitted parameters with that rng (so it honours the
sampling bias ``bias``: each component's covariance is scaled by lambda).
"""

from __future__ import annotations

import numpy as np

from collapselab.models.gaussian import _sqrt_psd


class GMMModel:
    def __init__(self, n_components: int = 2, covariance_type: str = "full", bias: float = 1.0, max_iter: int = 2000, tol: float = 1e-5) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.bias = bias
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, data: np.ndarray, *, rng: np.random.Generator) -> "GMMModel":
        x = np.asarray(data, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        from sklearn.mixture import GaussianMixture  # imported here: sklearn costs ~100 MB per process

        seed = int(rng.integers(2**31 - 1))
        self.gmm_ = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=seed,
        ).fit(x)
        return self

    def mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = self.gmm_
        d = g.means_.shape[1]
        cov = g.covariances_
        if g.covariance_type == "full":
            covs = cov
        elif g.covariance_type == "tied":
            covs = np.repeat(cov[None], g.n_components, axis=0)
        elif g.covariance_type == "diag":
            covs = np.stack([np.diag(c) for c in cov])
        else:  # spherical
            covs = np.stack([np.eye(d) * c for c in cov])
        return g.weights_, g.means_, covs

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        w, mu, covs = self.mixture()
        comp = rng.choice(len(w), size=n, p=w / w.sum())
        z = rng.standard_normal((n, mu.shape[1]))
        roots = np.stack([_sqrt_psd(c) for c in covs])
        return mu[comp] + np.sqrt(self.bias) * np.einsum("nij,nj->ni", roots[comp], z)

    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        x = np.asarray(data, dtype=np.float64)
        return self.gmm_.score_samples(x[:, None] if x.ndim == 1 else x)
