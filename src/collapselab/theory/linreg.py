"""Linear regression refitted on its own labels: Gerstgrasser et al. (2024, "Is Model Collapse
Inevitable?", Theorems 1-2) and Dey & Donoho (2024, "Universality of the pi^2/6 pathway").

Setup. Inputs X (n x d, full rank), true labels y = X w* + eps with eps ~ N(0, sigma^2 I).
Generation 0 fits OLS on (X, y). Every later generation labels the same X with the previous
fit plus fresh N(0, sigma^2) noise and refits by OLS:

- ``replace``: on the last synthetic set only;
- ``accumulate``: on the real set and every synthetic set so far (all with the same X).

With A = (X'X)^{-1} and u_j = A X' eps_j ~ N(0, sigma^2 A) independent, the error e_g = w_g - w*
after g refits is e_g = sum_{j=0..g} u_j (replace) and, because the pooled OLS on k+1 copies of
X averages the label sets, e_g = e_{g-1} + u_g / (g + 1) (accumulate), i.e.
e_g = sum_{j=0..g} u_j / (j + 1). So ||e_g||^2 is a Gaussian quadratic form with

    E ||e_g||^2   = m_g sigma^2 tr(A),      Var ||e_g||^2 = 2 m_g^2 sigma^4 tr(A^2),

m_g = g + 1 (replace: linear growth) or m_g = sum_{k=1..g+1} 1/k^2 < pi^2/6 (accumulate).
For a Gaussian design (rows of X iid N(0, I_d)), E tr(A) = d / (n - d - 1) (inverse Wishart),
the real-data-only risk of Dey & Donoho; fresh Gaussian inputs each generation under ``replace``
give the same (g + 1) d / (n - d - 1).

When the noise level is re-estimated each generation from the residuals (RSS / (n - d)), the
replace expectation is unchanged (the estimate is unbiased and independent of the fit); the
MLE RSS / n shrinks it by c = (n - d) / n per generation: m_g = sum_{j=0..g} c^j.
"""

from __future__ import annotations

import numpy as np

PI2_6 = np.pi**2 / 6


def gaussian_design_risk(n: int, d: int, sigma2: float = 1.0) -> float:
    """E ||w_hat - w*||^2 of OLS on n rows of an N(0, I_d) design: sigma^2 d / (n - d - 1)."""
    if n - d - 1 <= 0:
        raise ValueError("needs n > d + 1")
    return sigma2 * d / (n - d - 1)


def multiplier(policy: str, g: int, shrink: float = 1.0) -> float:
    """m_g: the risk after g refits over the real-data-only risk.

    ``replace``: sum_{j=0..g} shrink^j (g + 1 when the label noise keeps its level);
    ``accumulate``: sum_{k=1..g+1} 1 / k^2, which increases to pi^2 / 6."""
    if policy == "replace":
        return float(np.sum(shrink ** np.arange(g + 1)))
    if policy == "accumulate":
        return float(np.sum(1.0 / np.arange(1, g + 2) ** 2))
    raise ValueError("policy must be 'replace' or 'accumulate'")


def risk_moments(X: np.ndarray, sigma2: float, policy: str, g: int) -> tuple[float, float]:
    """Mean and variance of ||w_g - w*||^2 after g refits on the fixed design X (known noise)."""
    A = np.linalg.inv(X.T @ X)
    m = multiplier(policy, g)
    return m * sigma2 * float(np.trace(A)), 2 * m**2 * sigma2**2 * float(np.sum(A * A))
