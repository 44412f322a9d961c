"""A Gaussian mixture on images: on the raw pixels, or on their leading PCA components.

With ``pca_components = k > 0`` an image ``x`` (flattened to d pixels) is ``x = m + W z + r``:
``z`` (k numbers) follows the :class:`~collapselab.models.gmm.GMMModel` fitted on the PCA
scores, and ``r``, in the d - k discarded directions, is Gaussian with PCA's noise variance
(the mean of the discarded eigenvalues, as in probabilistic PCA). ``log_likelihood`` is the exact
log-density of that model in pixel space (grey levels in [0, 1]): the mixture's density of the
scores plus the Gaussian term of the residual (``W`` is orthonormal, so no Jacobian).

``sample`` draws ``z`` from the mixture (each component's covariance scaled by ``bias``) and
returns ``m + W z`` clipped to [0, 1]: the residual is left at its mean, zero, so samples are the
denoised images. With ``pca_components = 0`` the mixture lives on the pixels themselves.

Fitting and scoring run BLAS on one thread: the matrices are small, and on a busy 2-core machine
OpenBLAS's thread pool made a digits fit 30 to 100 times slower (0.1 s against 4 to 14 s).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from collapselab.errors import UserError
from collapselab.models.gmm import GMMModel
from collapselab.models.image_data import check_bias, check_images

MIN_NOISE_VARIANCE = 1e-6  # floor of the residual variance (scikit-learn's reg_covar): a loop's
# later generations may lie exactly in a k-dimensional subspace


class ImageGMMModel:
    def __init__(self, n_components: int = 10, covariance_type: str = "full", pca_components: int = 32, bias: float = 1.0, max_iter: int = 200, tol: float = 1e-3) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.pca_components = pca_components
        self.bias = bias
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, data: np.ndarray, *, rng: np.random.Generator) -> "ImageGMMModel":
        check_bias(self.bias, "gmm")
        x = check_images(data, "gmm: fit", min_items=max(2, self.n_components))
        self.shape_ = x.shape[1:]
        flat = x.reshape(len(x), -1).astype(np.float64)
        k = self.pca_components
        if not 0 <= k <= min(flat.shape):
            raise UserError(
                f"gmm: pca_components={k} must be between 0 (raw pixels) and min(images, pixels) = "
                f"{min(flat.shape)} for {len(flat)} images of {flat.shape[1]} pixels."
            )
        self.pca_ = None
        with threadpool_limits(limits=1):
            if k:
                from sklearn.decomposition import PCA  # imported here: sklearn is heavy

                self.pca_ = PCA(n_components=k, random_state=int(rng.integers(2**31 - 1))).fit(flat)
                self.noise_variance_ = max(float(self.pca_.noise_variance_), MIN_NOISE_VARIANCE)
                flat = self.pca_.transform(flat)
            self.gmm_ = GMMModel(self.n_components, self.covariance_type, self.bias, self.max_iter, self.tol).fit(flat, rng=rng)
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        with threadpool_limits(limits=1):
            flat = self.gmm_.sample(n, rng=rng)
            if self.pca_ is not None:
                flat = self.pca_.inverse_transform(flat)
        return np.clip(flat, 0.0, 1.0).astype(np.float32).reshape(n, *self.shape_)

    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        """Natural log-density of each image in pixel space (see the module docstring)."""
        x = check_images(data, "gmm: log_likelihood", shape=self.shape_)
        flat = x.reshape(len(x), -1).astype(np.float64)
        with threadpool_limits(limits=1):
            if self.pca_ is None:
                return self.gmm_.log_likelihood(flat)
            z = self.pca_.transform(flat)
            residual = flat - self.pca_.inverse_transform(z)
            log_scores = self.gmm_.log_likelihood(z)
        n_discarded = flat.shape[1] - self.pca_components
        var = self.noise_variance_
        residual_term = -0.5 * (n_discarded * np.log(2 * np.pi * var) + (residual**2).sum(axis=1) / var)
        return log_scores + residual_term
