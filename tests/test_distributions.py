"""The distances of :mod:`collapselab.metrics.distributions`, against closed forms and quadrature.

Everything here is deterministic (fixed parameters or seeded draws of parameters), so the
tolerances are numerical, not statistical: ~1e-10 relative for closed forms the code should
reproduce to rounding (1e-8 where scipy's sqrtm is involved), and 1e-8 relative against
trapezoidal quadrature: for smooth, fast-decaying integrands on a grid wide enough to hold them,
the trapezoid rule converges geometrically (measured error ~1e-15 at these grid sizes), while any
slip in the closed form (a missing factor, covariances not summed in a cross term) is O(1).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.stats import multivariate_normal, norm

from collapselab.metrics.distributions import mixture_l2, moments, theory_metrics, w2
from collapselab.models import GaussianModel


def mix1d(weights, means, variances):
    """A 1-D mixture in the (weights (K,), means (K, 1), covs (K, 1, 1)) layout."""
    return (np.asarray(weights, float), np.asarray(means, float)[:, None], np.asarray(variances, float)[:, None, None])


def density1d(mix, x):
    w, mu, cov = mix
    return sum(wk * norm.pdf(x, m[0], np.sqrt(c[0, 0])) for wk, m, c in zip(w, mu, cov))


def density2d(mix, pts):
    w, mu, cov = mix
    return sum(wk * multivariate_normal(m, c).pdf(pts) for wk, m, c in zip(w, mu, cov))


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def sqrt_spd(s):
    vals, vecs = np.linalg.eigh(s)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def w2_reference(m1, s1, m2, s2):
    """Independent implementation: |m1-m2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2, via eigh."""
    r1 = sqrt_spd(s1)
    return np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrt_spd(r1 @ s2 @ r1)))


# ----------------------------------------------------------------------------------------------
# moments
# ----------------------------------------------------------------------------------------------


def test_moments_law_of_total_covariance():
    """mean = sum w_k mu_k; cov = sum w_k (Sigma_k + (mu_k - mean)(mu_k - mean)^T); weights normalised."""
    w = np.array([2.0, 6.0])  # unnormalised on purpose: 0.25, 0.75
    mu = np.array([[1.0, -1.0], [-3.0, 2.0]])
    covs = np.array([[[1.0, 0.2], [0.2, 0.5]], [[2.0, -0.7], [-0.7, 1.0]]])
    mean, cov = moments((w, mu, covs))
    p = w / w.sum()
    expected_mean = p[0] * mu[0] + p[1] * mu[1]
    expected_cov = sum(p[k] * (covs[k] + np.outer(mu[k] - expected_mean, mu[k] - expected_mean)) for k in range(2))
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-14)
    np.testing.assert_allclose(cov, expected_cov, rtol=1e-14)


def test_moments_1d_match_quadrature():
    mix = mix1d([0.2, 0.5, 0.3], [-4.0, 0.5, 3.0], [0.5, 1.0, 2.0])
    x = np.linspace(-25, 25, 100_001)
    f = density1d(mix, x)
    m = trapezoid(x * f, x)
    v = trapezoid((x - m) ** 2 * f, x)
    mean, cov = moments(mix)
    assert mean[0] == pytest.approx(m, rel=1e-8, abs=1e-10)
    assert cov[0, 0] == pytest.approx(v, rel=1e-8)


# ----------------------------------------------------------------------------------------------
# w2
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0), (-2.0, 5.0, 1.0, 5.0), (0.0, 1e-3, 0.0, 1.0)])
def test_w2_1d_closed_form(m1, s1, m2, s2):
    """1-D: W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1-m2)^2 + (s1-s2)^2), in both argument orders."""
    expected = np.hypot(m1 - m2, s1 - s2)
    a = (np.array([m1]), np.array([[s1**2]]))
    b = (np.array([m2]), np.array([[s2**2]]))
    assert w2(*a, *b) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert w2(*b, *a) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_w2_commuting_covariances():
    """Diagonal covariances: W2^2 = |m1-m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    m1, m2 = np.array([1.0, 0.0, -2.0]), np.array([0.0, 0.5, 1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sqrt(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert w2(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_w2_general_is_a_symmetric_metric_matching_an_independent_formula():
    rng = np.random.default_rng(0)
    for d in (2, 3, 5):
        g = [(rng.normal(size=d), random_spd(rng, d)) for _ in range(3)]
        (m1, s1), (m2, s2), (m3, s3) = g
        d12 = w2(m1, s1, m2, s2)
        assert d12 == pytest.approx(w2_reference(m1, s1, m2, s2), rel=1e-8)
        assert d12 == pytest.approx(w2(m2, s2, m1, s1), rel=1e-8)
        assert w2(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-6)
        assert d12 <= w2(m1, s1, m3, s3) + w2(m3, s3, m2, s2) + 1e-9
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # invariant under a rotation of both
        assert w2(q @ m1, q @ s1 @ q.T, q @ m2, q @ s2 @ q.T) == pytest.approx(d12, rel=1e-8)
        assert w2(2 * m1, 4 * s1, 2 * m2, 4 * s2) == pytest.approx(2 * d12, rel=1e-8)  # and scales


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # sqrtm of a singular matrix
@pytest.mark.parametrize("d", [1, 3])
def test_w2_to_a_collapsed_point_mass(d):
    """The end state of collapse, Sigma = 0: W2(delta_m, N(0, I_d)) = sqrt(|m|^2 + d)."""
    m = np.full(d, 0.5)
    expected = np.sqrt(np.sum(m**2) + d)
    assert w2(m, np.zeros((d, d)), np.zeros(d), np.eye(d)) == pytest.approx(expected, rel=1e-6)
    assert w2(np.zeros(d), np.eye(d), m, np.zeros((d, d))) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# mixture_l2
# ----------------------------------------------------------------------------------------------


def test_mixture_l2_zero_for_identical_symmetric_positive():
    a = mix1d([0.4, 0.6], [-2.0, 2.0], [1.0, 0.5])
    b = mix1d([0.5, 0.5], [-2.0, 2.5], [1.0, 1.0])
    assert mixture_l2(a, a) == pytest.approx(0.0, abs=1e-7)
    assert mixture_l2(a, b) == pytest.approx(mixture_l2(b, a), rel=1e-12)
    assert mixture_l2(a, b) > 0.01
    # component order does not matter
    a_swapped = (a[0][::-1], a[1][::-1], a[2][::-1])
    assert mixture_l2(a, a_swapped) == pytest.approx(0.0, abs=1e-7)


def test_mixture_l2_two_gaussians_closed_form():
    """int (N(m1,s1^2) - N(m2,s2^2))^2 = 1/(2 sqrt(pi) s1) + 1/(2 sqrt(pi) s2) - 2 phi(m1-m2; 0, s1^2+s2^2)."""
    m1, s1, m2, s2 = 0.3, 0.8, -1.0, 1.5
    expected = np.sqrt(1 / (2 * np.sqrt(np.pi) * s1) + 1 / (2 * np.sqrt(np.pi) * s2) - 2 * norm.pdf(m1 - m2, 0, np.hypot(s1, s2)))
    assert mixture_l2(mix1d([1.0], [m1], [s1**2]), mix1d([1.0], [m2], [s2**2])) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "a, b",
    [
        # the paper's two Gaussians against a drifted fit
        (mix1d([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0]), mix1d([0.45, 0.55], [-1.8, 2.3], [0.7, 1.2])),
        # very different shapes, one narrow component
        (mix1d([0.3, 0.7], [-3.0, 3.0], [0.5, 2.0]), mix1d([0.9, 0.1], [0.0, 1.0], [4.0, 0.05])),
    ],
)
def test_mixture_l2_1d_matches_quadrature(a, b):
    x = np.linspace(-30, 30, 20_001)
    expected = np.sqrt(trapezoid((density1d(a, x) - density1d(b, x)) ** 2, x))
    assert mixture_l2(a, b) == pytest.approx(expected, rel=1e-8)


def test_mixture_l2_2d_matches_quadrature():
    a = (np.array([0.6, 0.4]), np.array([[-1.5, 0.0], [2.0, 1.0]]), np.array([[[1.0, 0.3], [0.3, 0.6]], [[0.8, -0.2], [-0.2, 1.2]]]))
    b = (np.array([0.5, 0.5]), np.array([[-1.0, 0.5], [1.5, 0.5]]), np.array([[[0.7, 0.0], [0.0, 0.7]], [[1.5, 0.5], [0.5, 1.0]]]))
    g = np.linspace(-9, 9, 241)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    diff2 = ((density2d(a, pts) - density2d(b, pts)) ** 2).reshape(xx.shape)
    expected = np.sqrt(trapezoid(trapezoid(diff2, g, axis=1), g))
    assert mixture_l2(a, b) == pytest.approx(expected, rel=1e-8)


# ----------------------------------------------------------------------------------------------
# theory_metrics
# ----------------------------------------------------------------------------------------------


def test_theory_metrics_closed_forms_1d():
    """variance_ratio = tr(Sigma)/tr(Sigma_0) of the moment-matched Gaussians, mean_error = |mean - mean_0|,
    w2 = the Gaussian W2 between the moment-matched Gaussians, mixture_l2 = the L2 of the densities."""
    fitted = mix1d([0.3, 0.7], [-1.0, 2.0], [0.5, 1.5])
    reference = mix1d([1.0], [0.5], [2.0])
    mean = 0.3 * -1.0 + 0.7 * 2.0
    var = 0.3 * (0.5 + 1.0) + 0.7 * (1.5 + 4.0) - mean**2
    tm = theory_metrics(fitted, reference)
    assert set(tm) == {"mean_error", "variance_ratio", "w2", "mixture_l2"}
    assert all(isinstance(v, float) for v in tm.values())
    assert tm["mean_error"] == pytest.approx(abs(mean - 0.5), rel=1e-12)
    assert tm["variance_ratio"] == pytest.approx(var / 2.0, rel=1e-12)
    assert tm["w2"] == pytest.approx(np.hypot(mean - 0.5, np.sqrt(var) - np.sqrt(2.0)), rel=1e-9)
    x = np.linspace(-30, 30, 20_001)
    l2 = np.sqrt(trapezoid((density1d(fitted, x) - density1d(reference, x)) ** 2, x))
    assert tm["mixture_l2"] == pytest.approx(l2, rel=1e-8)


def test_theory_metrics_of_identical_mixtures():
    mix = (np.array([0.5, 0.5]), np.array([[-2.0, 0.0], [2.0, 1.0]]), np.array([np.eye(2), 2 * np.eye(2)]))
    tm = theory_metrics(mix, mix)
    assert tm["mean_error"] == 0.0
    assert tm["variance_ratio"] == pytest.approx(1.0, rel=1e-14)
    assert tm["w2"] == pytest.approx(0.0, abs=1e-6)
    assert tm["mixture_l2"] == pytest.approx(0.0, abs=1e-7)


def test_theory_metrics_on_a_fitted_gaussian_model():
    """GaussianModel.mixture() is a one-component mixture; variance_ratio = tr(cov_)/tr(Sigma_0)."""
    rng = np.random.default_rng(4)
    sigma0 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 0.5]])
    reference = (np.ones(1), np.zeros((1, 3)), sigma0[None])
    model = GaussianModel("mle").fit(rng.multivariate_normal(np.ones(3), 0.5 * sigma0, size=200), rng=rng)
    tm = theory_metrics(model.mixture(), reference)
    assert tm["variance_ratio"] == pytest.approx(np.trace(model.cov_) / np.trace(sigma0), rel=1e-12)
    assert tm["mean_error"] == pytest.approx(np.linalg.norm(model.mean_), rel=1e-12)
    assert tm["w2"] == pytest.approx(w2_reference(model.mean_, model.cov_, np.zeros(3), sigma0), rel=1e-8)
