"""Stability of iterative retraining with real data: Bertrand, Bose, Duplessis, Jiralerspong &
Gidel (ICLR 2024, "On the Stability of Iterative Retraining of Generative Models on their own
Data"), worked out exactly for a 1-D Gaussian fitted by maximum likelihood.

Setup (their ``mix``: all the real data plus lambda times as many generated samples). Every
generation fits N(mu, sigma^2) by MLE (ddof = 0) to the same a real items (mean xbar, MLE
variance s^2) plus b = lambda a samples of the previous fit; M = a + b; alpha = a/M,
beta = b/M = lambda / (1 + lambda).

Exact moments. With ybar, s_y^2 the synthetic part's mean and MLE variance,
mu' = alpha xbar + beta ybar and sigma'^2 = alpha s^2 + beta s_y^2 + alpha beta (ybar - xbar)^2.
Given the fit (mu, sigma^2): ybar ~ N(mu, sigma^2 / b), E s_y^2 = sigma^2 (b - 1)/b. So with
V_t = E sigma_t^2 and E_t = E (mu_t - xbar)^2:

    V_{t+1} = alpha s^2 + c V_t + alpha beta E_t,     c = (b - 1)/M + a/M^2,
    E_{t+1} = (b / M^2) V_t + beta^2 E_t,

a linear recursion x_{t+1} = T x_t + (alpha s^2, 0) from x_0 = (s^2, 0) (generation 0 fits the
real data alone). E sigma_t^2 + E (mu_t - xbar)^2 = s^2 for every t: the expected second
moment about xbar is conserved (W' = alpha s^2 + beta W), so (1, 1) is a left eigenvector of T
with eigenvalue beta, and the spectral radius is beta < 1 when a >= 1. The loop is then stable
and converges to the fixed point x* = (I - T)^{-1} (alpha s^2, 0), slightly below s^2 (the
MLE's shrinkage leaks in through the synthetic share). With a = 0 (fully synthetic) V_t = s^2 ((M - 1)/M)^t -> 0:
collapse. In the infinite-sample limit the mean error contracts by beta = lambda / (1 + lambda)
per generation, Bertrand et al.'s contraction for an exact MLE.
"""

from __future__ import annotations

import numpy as np


def transition(a: int, b: int) -> np.ndarray:
    """T, acting on (E sigma_t^2, E (mu_t - xbar)^2)."""
    m = a + b
    alpha, beta = a / m, b / m
    c = (b - 1) / m + a / m**2
    return np.array([[c, alpha * beta], [b / m**2, beta**2]])


def moments(generations: int, a: int, b: int, s2: float, unbiased: bool = False, v0: float | None = None) -> np.ndarray:
    """(G+1, 2): E sigma_t^2 and E (mu_t - xbar)^2 for t = 0..G, from (v0, 0) (default v0 = s^2,
    generation 0's MLE fit of the real data). ``unbiased=True``: a fit that divides by M - 1
    instead (the named bug the tests rule out)."""
    m = a + b
    T, const = transition(a, b), np.array([a / m * s2, 0.0])
    if unbiased:  # sigma'^2 scaled by M/(M-1): only the variance row changes
        T = T * np.array([[m / (m - 1)], [1.0]])
        const = const * np.array([m / (m - 1), 1.0])
    x = np.empty((generations + 1, 2))
    x[0] = (s2 if v0 is None else v0, 0.0)
    for t in range(1, generations + 1):
        x[t] = T @ x[t - 1] + const
    return x


def fixed_point(a: int, b: int, s2: float) -> np.ndarray:
    """x* = (I - T)^{-1} (alpha s^2, 0): the stationary (E sigma^2, E (mu - xbar)^2)."""
    m = a + b
    return np.linalg.solve(np.eye(2) - transition(a, b), np.array([a / m * s2, 0.0]))


def spectral_radius(a: int, b: int) -> float:
    """Largest |eigenvalue| of T: < 1 (stable) iff some real data is kept (a >= 1)."""
    return float(np.max(np.abs(np.linalg.eigvals(transition(a, b)))))
