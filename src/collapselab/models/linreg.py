"""Linear regression as a generative family: the model of Gerstgrasser et al. (2024), "Is Model
Collapse Inevitable?", and of Dey & Donoho (2024), "Universality of the pi^2/6 pathway".

An item is one row ``(x_1, ..., x_d, y)``. ``fit`` runs ordinary least squares of ``y`` on ``x``
(no intercept, as in the papers: y = x . w* + noise) and keeps the label-noise level: the
constructor's ``noise`` (the papers' known sigma) or, when ``noise=None``, the residual variance
``RSS / (n - d)`` (``estimator="unbiased"``) or ``RSS / n`` (``"mle"``). ``sample`` labels
inputs with the fitted line plus fresh N(0, noise^2) noise. The inputs are

- ``design="fixed"`` (the papers' setting): the inputs of the first ``n`` training rows, in order
  (cycled if ``n`` is larger). Under the loop's ``replace`` and ``accumulate`` policies these are
  the human inputs X every generation, so each generation relabels the same design;
- ``design="gaussian"``: fresh iid N(0, I_d) inputs (Dey & Donoho's Gaussian design).

The test error of a fit is ``||w_hat - w*||^2`` (the excess risk for isotropic test inputs):
:func:`collapselab.theory.linreg` gives its expectation along a chain.
"""

from __future__ import annotations

import numpy as np


class LinearRegressionModel:
    def __init__(self, noise: float | None = None, design: str = "fixed", estimator: str = "unbiased") -> None:
        self.noise = noise
        self.design = design
        self.estimator = estimator

    def fit(self, data: np.ndarray, *, rng: np.random.Generator | None = None) -> "LinearRegressionModel":
        if self.design not in ("fixed", "gaussian"):
            raise ValueError("design must be 'fixed' or 'gaussian'")
        if self.estimator not in ("unbiased", "mle"):
            raise ValueError("estimator must be 'unbiased' or 'mle'")
        rows = np.asarray(data, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] < 2:
            raise ValueError("linreg items are rows (x_1, ..., x_d, y): need a 2-D array with d >= 1")
        x, y = rows[:, :-1], rows[:, -1]
        n, d = x.shape
        if n <= d:
            raise ValueError(f"need more items than features to fit OLS (got {n} items, {d} features)")
        self.coef_ = np.linalg.lstsq(x, y, rcond=None)[0]
        rss = float(np.sum((y - x @ self.coef_) ** 2))
        self.residual_var_ = rss / (n - d if self.estimator == "unbiased" else n)
        self.noise_ = float(self.noise) if self.noise is not None else float(np.sqrt(self.residual_var_))
        self.design_ = x.copy()
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        d = len(self.coef_)
        if self.design == "fixed":
            x = self.design_[np.arange(n) % len(self.design_)]
        else:
            x = rng.standard_normal((n, d))
        y = x @ self.coef_ + self.noise_ * rng.standard_normal(n)
        return np.column_stack([x, y])

    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        """log p(y | x) per row under the fitted line and noise level (the inputs are not modelled)."""
        rows = np.atleast_2d(np.asarray(data, dtype=np.float64))
        r = rows[:, -1] - rows[:, :-1] @ self.coef_
        var = self.noise_**2
        return -0.5 * (np.log(2 * np.pi * var) + r**2 / var)

    def risk(self, true_coef: np.ndarray) -> float:
        """Excess test risk ``||w_hat - w*||^2`` for isotropic test inputs."""
        return float(np.sum((self.coef_ - np.asarray(true_coef)) ** 2))
