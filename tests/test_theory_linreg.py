"""Science checks of the linear-regression family (Gerstgrasser et al. 2024; Dey & Donoho 2024),
run through the real code path.

Chains are built as :meth:`collapselab.loop.engine.Runner.chain` builds them: generation 0 is
a :class:`LinearRegressionModel` fitted on the human rows (x, y) and samples ``n`` rows with
``generation_rng(seed, "gen0", 0)``; generation g = 1..G gets ``rng = generation_rng(seed,
policy.name, g)``, its training set from ``parse_policy(spec).training_set(g, state, rng)``
(``replace``: generation g-1's rows; ``accumulate``: the human rows and every earlier output),
fits a fresh model with ``fit(data, rng=rng)`` and samples ``n`` rows with ``sample(n, rng=rng)``.

The risk after g refits is ||w_g - w*||^2; :mod:`collapselab.theory.linreg` derives its mean and,
for a fixed design with known noise, its variance (a Gaussian quadratic form), so the bands are
Z = 6 exact standard errors of the R-chain mean; elsewhere the SE comes from the chains.
Each test asserts that a named bug's expectation lies outside the band (plus the bug's own).
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.loop.engine import generation_rng
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.models.linreg import LinearRegressionModel
from collapselab.theory.linreg import PI2_6, gaussian_design_risk, multiplier, risk_moments

Z = 6.0
N, D, SIGMA = 20, 5, 1.0  # rows per generation, features, label noise
W_TRUE = np.array([1.0, -2.0, 0.5, 0.0, 3.0])


def human_rows(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real data: y = X w* + N(0, sigma^2) noise."""
    return np.column_stack([X, X @ W_TRUE + SIGMA * rng.standard_normal(len(X))])


def chain(human: np.ndarray, new_model, spec: str, generations: int, seed: int) -> list[float]:
    """Risks ||w_g - w*||^2 for g = 0..G of one chain, exactly as the engine runs it."""
    policy = parse_policy(spec)
    rng0 = generation_rng(seed, "gen0", 0)
    gen0 = new_model().fit(human, rng=rng0)
    state = LoopState(human=human, pool=human[:0])
    state.outputs = [gen0.sample(len(human), rng=rng0)]
    risks = [gen0.risk(W_TRUE)]
    for g in range(1, generations + 1):
        rng = generation_rng(seed, policy.name, g)
        ts = policy.training_set(g, state, rng)
        model = new_model().fit(ts.data, rng=rng)
        state.outputs.append(model.sample(len(human), rng=rng))
        risks.append(model.risk(W_TRUE))
    return risks


def chains(spec: str, new_model, R: int, G: int, base: int, X: np.ndarray | None = None) -> np.ndarray:
    """(R, G+1) risks; a fixed design X shared by all chains, or each chain's own Gaussian X."""
    out = np.empty((R, G + 1))
    for r in range(R):
        rng = np.random.default_rng(base + r)
        Xr = X if X is not None else rng.standard_normal((N, D))
        out[r] = chain(human_rows(Xr, rng), new_model, spec, G, base + r)
    return out


FIXED_X = np.random.default_rng(2024).standard_normal((N, D))


# ----------------------------------------------------------------------------------------------
# the model itself
# ----------------------------------------------------------------------------------------------


def test_fit_is_ols_and_sample_relabels_the_design():
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    rows = human_rows(FIXED_X, rng)
    m = LinearRegressionModel(noise=None)
    assert m.fit(rows, rng=rng) is m
    coef = np.linalg.solve(FIXED_X.T @ FIXED_X, FIXED_X.T @ rows[:, -1])
    np.testing.assert_allclose(m.coef_, coef, rtol=1e-10)
    rss = np.sum((rows[:, -1] - FIXED_X @ coef) ** 2)
    assert m.residual_var_ == pytest.approx(rss / (N - D), rel=1e-10)
    assert LinearRegressionModel(estimator="mle").fit(rows).residual_var_ == pytest.approx(rss / N, rel=1e-10)
    s = m.sample(2 * N + 3, rng=np.random.default_rng(2))
    assert s.shape == (2 * N + 3, D + 1)
    np.testing.assert_array_equal(s[:, :-1], FIXED_X[np.arange(2 * N + 3) % N])  # the same design, cycled
    ll = m.log_likelihood(rows)
    np.testing.assert_allclose(ll, norm.logpdf(rows[:, -1], FIXED_X @ coef, np.sqrt(rss / (N - D))), rtol=1e-12)
    g = LinearRegressionModel(noise=0.5, design="gaussian").fit(rows)
    assert g.noise_ == 0.5 and not np.array_equal(g.sample(N, rng=np.random.default_rng(3))[:, :-1], FIXED_X)
    for bad in (dict(design="uniform"), dict(estimator="bayes")):
        with pytest.raises(ValueError):
            LinearRegressionModel(**bad).fit(rows)
    with pytest.raises(ValueError):
        LinearRegressionModel().fit(rows[:D])  # n <= d


def test_sample_noise_has_the_fitted_level():
    """y - x.w_hat ~ N(0, noise^2): the variance of 200_000 residuals is within Z SE
    (sd of a sample variance: noise^2 sqrt(2/N)); noise on the std twice (noise^4) is far out."""
    m = LinearRegressionModel(noise=0.7).fit(human_rows(FIXED_X, np.random.default_rng(4)))
    n = 200_000
    s = m.sample(n, rng=np.random.default_rng(5))
    r = s[:, -1] - s[:, :-1] @ m.coef_
    se = 0.49 * np.sqrt(2 / n)
    assert abs(r.var() - 0.49) <= Z * se and abs(r.mean()) <= Z * 0.7 / np.sqrt(n)
    assert abs(0.7**4 - 0.49) > 2 * Z * se


def test_same_seed_same_chain():
    new = lambda: LinearRegressionModel(noise=SIGMA)  # noqa: E731
    human = human_rows(FIXED_X, np.random.default_rng(6))
    assert chain(human, new, "replace", 3, 7) == chain(human, new, "replace", 3, 7)
    assert chain(human, new, "replace", 3, 7) != chain(human, new, "replace", 3, 8)


# ----------------------------------------------------------------------------------------------
# Gerstgrasser et al.: replace grows linearly, accumulate stays under pi^2/6
# ----------------------------------------------------------------------------------------------

R_FIX, G_FIX = 800, 10
CHECKS = (0, 1, 2, 5, 10)


@pytest.mark.parametrize("spec", ["replace", "accumulate"])
def test_fixed_design_risk_matches_closed_form(spec):
    """Fixed design X, known noise sigma: E ||w_g - w*||^2 = m_g sigma^2 tr((X'X)^-1) with
    m_g = g + 1 (replace) or sum_{k<=g+1} 1/k^2 (accumulate); Var = 2 m_g^2 sigma^4 tr(A^2).

    n=20, d=5, R=800: the band is +-13% of the mean. Named bugs: synthetic labels without noise
    (the risk stays at the real-only level, m = 1) and the other policy's m_g: each lies outside
    the band plus its own. Accumulate's m_g never reaches pi^2/6 (Gerstgrasser's bound)."""
    new = lambda: LinearRegressionModel(noise=SIGMA)  # noqa: E731
    risks = chains(spec, new, R_FIX, G_FIX, base=100_000 if spec == "replace" else 200_000, X=FIXED_X)
    other = "accumulate" if spec == "replace" else "replace"
    for g in CHECKS:
        mean, var = risk_moments(FIXED_X, SIGMA**2, spec, g)
        band = Z * np.sqrt(var / R_FIX)
        assert abs(risks[:, g].mean() - mean) <= band, (g, risks[:, g].mean(), mean, band)
        if g >= 2:
            for wrong_m in (1.0, multiplier(other, g)):
                wrong_mean, wrong_var = risk_moments(FIXED_X, SIGMA**2, spec, 0)
                wrong_mean, wrong_var = wrong_m * wrong_mean, wrong_m**2 * wrong_var
                assert abs(wrong_mean - mean) > band + Z * np.sqrt(wrong_var / R_FIX), (g, wrong_m)
    assert all(multiplier("accumulate", g) < PI2_6 for g in range(200))
    assert multiplier("accumulate", 10_000) == pytest.approx(PI2_6, rel=1e-3)
    if spec == "replace":  # linear growth: each generation adds one real-only risk
        base = risk_moments(FIXED_X, SIGMA**2, "replace", 0)[0]
        slope = np.polyfit(np.arange(G_FIX + 1), risks.mean(axis=0), 1)[0]
        assert slope == pytest.approx(base, rel=0.15)


def test_gaussian_design_risk_is_d_over_n_minus_d_minus_1():
    """Dey & Donoho: OLS on n rows of an N(0, I_d) design has E risk = sigma^2 d / (n - d - 1);
    with fresh Gaussian inputs each generation (design="gaussian") replace adds it each time:
    (g + 1) sigma^2 d / (n - d - 1). Each chain has its own human design; SE from the chains.

    n=20, d=5, R=1500: 0.357 per fit. The known-covariance intuition sigma^2 d / n (0.25) is a
    named bug: outside the band plus its own (taken as large) at every generation."""
    n, R, G = 20, 1500, 4
    rng_x = np.random.default_rng(7)
    risks = np.empty((R, G + 1))
    new = lambda: LinearRegressionModel(noise=SIGMA, design="gaussian")  # noqa: E731
    for r in range(R):
        X = rng_x.standard_normal((n, D))
        risks[r] = chain(human_rows(X, np.random.default_rng(300_000 + r)), new, "replace", G, 300_000 + r)
    per_fit = gaussian_design_risk(n, D, SIGMA**2)
    for g in range(G + 1):
        se = risks[:, g].std(ddof=1) / np.sqrt(R)
        assert abs(risks[:, g].mean() - (g + 1) * per_fit) <= Z * se, (g, risks[:, g].mean(), (g + 1) * per_fit, se)
        assert abs((g + 1) * (SIGMA**2 * D / n - per_fit)) > 2 * Z * se


@pytest.mark.parametrize("estimator", ["unbiased", "mle"])
def test_estimated_noise_replace(estimator):
    """Noise re-estimated from the residuals each generation (noise=None), replace, fixed X.

    Unbiased RSS/(n-d): the estimate is independent of the fit and unbiased, so E risk is the
    known-noise (g + 1) sigma^2 tr(A). MLE RSS/n shrinks the noise by c = (n-d)/n = 0.75 a
    generation: m_g = sum_{j<=g} c^j (3.8 at g=10 instead of 11). SE from the chains; each
    estimator's expectation lies outside the other's band (the ddof bug)."""
    R, G = 600, 10
    new = lambda: LinearRegressionModel(noise=None, estimator=estimator)  # noqa: E731
    risks = chains("replace", new, R, G, base=400_000 if estimator == "unbiased" else 500_000, X=FIXED_X)
    base = risk_moments(FIXED_X, SIGMA**2, "replace", 0)[0]
    c = (N - D) / N
    shrink = 1.0 if estimator == "unbiased" else c
    for g in (1, 3, 10):
        se = risks[:, g].std(ddof=1) / np.sqrt(R)
        expected = multiplier("replace", g, shrink) * base
        assert abs(risks[:, g].mean() - expected) <= Z * se, (g, risks[:, g].mean(), expected, se)
        wrong = multiplier("replace", g, c if estimator == "unbiased" else 1.0) * base
        if g == 10:
            assert abs(wrong - expected) > 2 * Z * se * max(1.0, wrong / expected)
