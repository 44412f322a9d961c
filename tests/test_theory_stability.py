"""Science checks of iterative retraining with real data (Bertrand et al., ICLR 2024) for a 1-D
Gaussian MLE, run through the real code path.

Bertrand et al.'s loop trains each generation on *all* the real data plus lambda times as many
of its own samples. The loop's ``anchor:F`` policy does exactly that when F * M equals the human
set's size K: it draws round(F M) = K human items without replacement (all of them) and takes
the other M - K from generation g-1's output. Chains are built as the engine builds them
(generation 0 = :class:`GaussianModel` ``mle`` fitted on the K human items, sampling M with
``generation_rng(seed, "gen0", 0)``; generation g uses ``generation_rng(seed, policy.name, g)``
for its training set, fit and M samples).

:mod:`collapselab.theory.stability` gives E sigma_t^2 and E (mu_t - xbar)^2 exactly (a linear
recursion), its fixed point and its contraction. The bands are Z = 6 SEs of the R-chain mean,
with the SE taken from the chains; each test asserts a named bug's expectation lies outside.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.loop.engine import generation_rng
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.models import GaussianModel
from collapselab.theory.stability import fixed_point, moments, spectral_radius, transition

Z = 6.0
K, B = 5, 15  # all 5 human items + 15 of the model's own samples: lambda = 3
M = K + B
HUMAN = np.random.default_rng(11).normal(2.0, 1.5, size=(K, 1))
XBAR, S2 = HUMAN.mean(), HUMAN.var()  # generation 0's MLE fit


def chains(spec: str, R: int, G: int, base: int, estimator: str = "mle") -> tuple[np.ndarray, np.ndarray]:
    """(R, G+1) fitted variances sigma_t^2 and squared mean errors (mu_t - xbar)^2."""
    policy = parse_policy(spec)
    var, err = np.empty((R, G + 1)), np.empty((R, G + 1))
    for r in range(R):
        seed = base + r
        gen0 = GaussianModel(estimator).fit(HUMAN, rng=generation_rng(seed, "gen0", 0))
        state = LoopState(human=HUMAN, pool=HUMAN[:0])
        state.outputs = [gen0.sample(M, rng=generation_rng(seed, "gen0", 0))]
        var[r, 0], err[r, 0] = gen0.cov_[0, 0], (gen0.mean_[0] - XBAR) ** 2
        for g in range(1, G + 1):
            rng = generation_rng(seed, policy.name, g)
            ts = policy.training_set(g, state, rng)
            if spec.startswith("anchor"):
                assert (ts.origin == -1).sum() == K and (ts.origin == g - 1).sum() == B
            model = GaussianModel(estimator).fit(ts.data, rng=rng)
            state.outputs.append(model.sample(M, rng=rng))
            var[r, g], err[r, g] = model.cov_[0, 0], (model.mean_[0] - XBAR) ** 2
    return var, err


def within(x: np.ndarray, expected: float, what) -> float:
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert abs(x.mean() - expected) <= Z * se, (what, x.mean(), expected, se)
    return se


def test_recursion_algebra():
    """T's left eigenvector (1, 1) has eigenvalue beta = lambda / (1 + lambda): the expected second
    moment about xbar is conserved at s^2, and the spectral radius is beta (< 1) with real data,
    1 without (fully synthetic: no contraction)."""
    for a, b in ((5, 15), (20, 20), (1, 49), (50, 5)):
        beta = b / (a + b)
        np.testing.assert_allclose(np.ones(2) @ transition(a, b), beta * np.ones(2), rtol=1e-12)
        assert spectral_radius(a, b) == pytest.approx(beta, rel=1e-12)
        x = moments(40, a, b, 2.0)
        np.testing.assert_allclose(x.sum(axis=1), 2.0, rtol=1e-12)
        np.testing.assert_allclose(moments(600, a, b, 2.0)[-1], fixed_point(a, b, 2.0), rtol=1e-9)
    assert spectral_radius(0, 20) == pytest.approx(1.0)
    np.testing.assert_allclose(moments(10, 0, 20, 1.0)[:, 0], (19 / 20) ** np.arange(11), rtol=1e-12)
    # more real data, closer to the data's own fit: V* rises to s^2 as the real share grows
    vstar = [fixed_point(a, 20, 1.0)[0] for a in (1, 5, 20, 100)]
    assert vstar == sorted(vstar) and vstar[-1] < 1.0


def test_mixed_retraining_follows_the_recursion_and_settles():
    """anchor:0.25 with K=5 human items, M=20 (lambda=3), R=1000 chains, 30 generations.

    E sigma_t^2 and E (mu_t - xbar)^2 match the recursion at t = 1, 2, 5, 10, 30 within Z SE; the
    chain average of sigma_t^2 over t = 11..30 matches the fixed point's 0.921 s^2 (the recursion
    is within 0.2% of it from t=11 on), and sigma^2 + (mu - xbar)^2 averages s^2 (the invariant).

    Named bugs, each outside the band plus its own: the human share ignored (replace: 0.215 s^2 at
    t=30), an unbiased (ddof=1) refit (fixed point 1.13 s^2), and the infinite-sample claim that
    the loop sits at the data's fit (s^2): the finite-sample fixed point is 8% below it."""
    R, G = 1000, 30
    var, err = chains("anchor:0.25", R, G, base=700_000)
    x = moments(G, K, B, S2)
    for t in (1, 2, 5, 10, 30):
        se = within(var[:, t], x[t, 0], ("var", t))
        within(err[:, t], x[t, 1], ("err", t))
    assert abs(moments(G, 0, M, S2)[G, 0] - x[G, 0]) > 2 * Z * se  # replace
    vstar = fixed_point(K, B, S2)
    np.testing.assert_allclose(x[11:], np.tile(vstar, (G - 10, 1)), rtol=2e-3)
    late = var[:, 11:].mean(axis=1)
    se_late = within(late, x[11:, 0].mean(), "stationary var")
    unbiased = moments(G, K, B, S2, unbiased=True, v0=S2 * K / (K - 1))[G, 0]
    for wrong in (S2, unbiased):
        assert abs(wrong - vstar[0]) > Z * se_late * (1 + wrong / vstar[0]), wrong
    within((var + err)[:, 11:].mean(axis=1), S2, "invariant")


def test_fully_synthetic_collapses():
    """replace (no real data): E sigma_t^2 = s^2 ((M-1)/M)^t -> 0 and E (mu_t - xbar)^2 =
    s^2 (1 - ((M-1)/M)^t): the variance collapses while the mean wanders. Checked to t=10, where
    the product of chi-squares is still mildly skewed (log-sd ~1); at t=10: 0.60 s^2, outside
    its band from the mixed loop's 0.92 s^2 (the named bug: real data that does not reach the
    fit); the median falls faster than the mean."""
    R, G = 1000, 10
    var, err = chains("replace", R, G, base=800_000)
    x = moments(G, 0, M, S2)
    for t in (1, 5, 10):
        se = within(var[:, t], x[t, 0], ("var", t))
        within(err[:, t], x[t, 1], ("err", t))
    assert abs(moments(G, K, B, S2)[G, 0] - x[G, 0]) > 2 * Z * se
    assert np.median(var[:, G]) < x[G, 0] < np.median(var[:, 1])
