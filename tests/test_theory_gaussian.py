"""Science checks of the theory families (Gaussian, GMM) run through the real code path.

Every chain below is built exactly as :meth:`collapselab.loop.engine.Runner.chain` builds one
under the ``replace`` policy: generation 0's model is fitted on fixed "human" data and samples
``M`` items with ``generation_rng(seed, "gen0", 0)``; generation ``g = 1..G`` gets
``rng = generation_rng(seed, "replace", g)``, takes its training set from
``parse_policy("replace").training_set(g, state, rng)`` (= all of generation g-1's M samples),
fits a fresh model with ``fit(data, rng=rng)`` and draws ``M`` new samples with
``sample(M, rng=rng)``. Chains differ only by ``seed``.

Notation: ``Sigma_0`` (``sigma_0^2`` in 1-D) is generation 0's fitted covariance, which every
chain of a test shares; ``Sigma_n`` is generation n's, i.e. after n refits on synthetic data.

How the bands are built (why the tests cannot flake, yet catch the bugs they target):

* Seeds are fixed, so every run is bit-for-bit reproducible; the bands make the tests robust to
  *any* seed / numpy version, not just the chosen ones.
* A Monte-Carlo mean over R chains is compared with its exact expectation inside
  ``Z = 6`` standard errors. The SE is derived in closed form where we can (1-D), otherwise taken
  from the data. Parameters (M, n, R) are chosen so the per-chain quantity is only mildly skewed
  (log-sd <= ~1.1, so the skewness of the R-mean is <= ~0.25) and a 6-SE excursion has
  probability well below 1e-6.
* Each test asserts, in the test itself, that the expectation a named bug would produce (the
  other estimator's ddof, the bias applied to the std instead of the variance, the bias ignored)
  lies further from the truth than the truth's band plus the bug's own Z-SE band, so a buggy
  run cannot land inside the band either.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from collapselab.loop.engine import generation_rng
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.metrics.distributions import theory_metrics
from collapselab.models import GaussianModel, GMMModel

Z = 6.0  # band half-width, in standard errors


@pytest.fixture(autouse=True)
def _one_thread():
    """Two-core machine: oversubscribed OpenMP (sklearn's k-means init) can make a GMM fit 20x
    slower under load. One thread changes no number, only the wall time."""
    with threadpool_limits(limits=1):
        yield


# ----------------------------------------------------------------------------------------------
# helpers: the engine's replace loop, minus the run folder and the evaluator
# ----------------------------------------------------------------------------------------------


def replace_chain(samples0, new_model, n_out: int, generations: int, seed: int, visit) -> None:
    """Generations 1..G of one replace chain, exactly as the engine runs them.

    ``samples0`` is what generation 0 produced; ``visit(g, model)`` sees each fitted model.
    """
    policy = parse_policy("replace")
    empty = np.empty((0, np.shape(samples0)[1]))
    state = LoopState(human=empty, pool=empty)
    state.outputs = [samples0]
    for g in range(1, generations + 1):
        rng = generation_rng(seed, policy.name, g)
        ts = policy.training_set(g, state, rng)
        assert len(ts.data) == n_out and (ts.origin == g - 1).all()
        model = new_model().fit(ts.data, rng=rng)
        state.outputs.append(model.sample(n_out, rng=rng))
        visit(g, model)


def gaussian_chains(gen0: GaussianModel, estimator: str, bias: float, M: int, G: int, seeds) -> tuple[np.ndarray, np.ndarray]:
    """means (R, G+1, d) and covariances (R, G+1, d, d) of R replace chains; index 0 = gen0."""
    d = gen0.mean_.shape[0]
    R = len(seeds)
    means = np.empty((R, G + 1, d))
    covs = np.empty((R, G + 1, d, d))
    means[:, 0], covs[:, 0] = gen0.mean_, gen0.cov_
    for r, seed in enumerate(seeds):
        samples0 = gen0.sample(M, rng=generation_rng(seed, "gen0", 0))

        def visit(g, model, r=r):
            means[r, g], covs[r, g] = model.mean_, model.cov_

        replace_chain(samples0, lambda: GaussianModel(estimator=estimator, bias=bias), M, G, seed, visit)
    return means, covs


def gen0_gaussian(mean, cov, M: int, estimator: str, bias: float, seed: int) -> GaussianModel:
    """Generation 0: fitted on M fixed 'human' items drawn from N(mean, cov)."""
    human = np.random.default_rng(seed).multivariate_normal(np.atleast_1d(mean), np.atleast_2d(cov), size=M)
    return GaussianModel(estimator=estimator, bias=bias).fit(human, rng=generation_rng(seed, "gen0", 0))


def ratio_moments(e1: float, e2: float, n: int) -> tuple[float, float]:
    """Mean and variance of a product of n iid factors with E[Y] = e1, E[Y^2] = e2."""
    return e1**n, e2**n - e1 ** (2 * n)


# ----------------------------------------------------------------------------------------------
# one step: fit and sample, exactly
# ----------------------------------------------------------------------------------------------


def test_fit_is_mle_or_unbiased_and_returns_self():
    """``mle`` divides by M (ddof=0), ``unbiased`` by M-1 (ddof=1); 1-D input is one column."""
    rng = np.random.default_rng(1)
    x1 = rng.normal(1.0, 3.0, size=25)
    x3 = rng.multivariate_normal([0, 1, 2], [[2, 0.5, 0.1], [0.5, 1, -0.3], [0.1, -0.3, 0.5]], size=25)
    for est, ddof in (("mle", 0), ("unbiased", 1)):
        m = GaussianModel(estimator=est)
        assert m.fit(x1) is m
        assert m.mean_.shape == (1,) and m.cov_.shape == (1, 1)
        np.testing.assert_allclose(m.mean_, [x1.mean()], rtol=1e-13)
        np.testing.assert_allclose(m.cov_, [[np.var(x1, ddof=ddof)]], rtol=1e-12)
        m3 = GaussianModel(estimator=est).fit(x3, rng=rng)
        np.testing.assert_allclose(m3.mean_, x3.mean(axis=0), rtol=1e-13)
        dev = x3 - x3.mean(axis=0)
        np.testing.assert_allclose(m3.cov_, dev.T @ dev / (len(x3) - ddof), rtol=1e-12)
    with pytest.raises(ValueError):
        GaussianModel(estimator="bayes").fit(x1)
    with pytest.raises(ValueError):
        GaussianModel().fit(x1[:1])


def test_log_likelihood_one_value_per_item_1d():
    """The protocol: log_likelihood gives one value per item. ``fit`` takes a 1-D array as M items
    of a 1-D Gaussian, so ``log_likelihood`` must too (as GMMModel's does)."""
    from scipy.stats import norm

    x = np.random.default_rng(2).normal(1.0, 2.0, size=30)
    m = GaussianModel("mle").fit(x)
    expected = norm.logpdf(x, m.mean_[0], np.sqrt(m.cov_[0, 0]))
    np.testing.assert_allclose(m.log_likelihood(x[:, None]), expected, rtol=1e-12)  # (n, 1) works
    np.testing.assert_allclose(m.log_likelihood(x), expected, rtol=1e-12)  # (n,) must too


@pytest.mark.parametrize("bias", [1.0, 0.5, 0.2])
def test_sample_draws_from_n_mu_lambda_sigma(bias):
    """``sample`` draws from N(mu, lambda*Sigma): the *covariance* is scaled by lambda.

    With N = 200_000 draws, the sample covariance entry S_ij has SE
    sqrt((C_ii C_jj + C_ij^2) / N) around C = lambda*Sigma (Wishart), and the sample mean has
    SE sqrt(C_ii / N). A bias applied to the std (covariance * lambda^2) sits >= 40 SE away.
    """
    sigma = np.array([[2.0, 0.6, -0.4], [0.6, 1.0, 0.2], [-0.4, 0.2, 0.5]])
    model = gen0_gaussian([1.0, -2.0, 0.5], sigma, 500, "mle", bias, seed=11)
    N = 200_000
    x = model.sample(N, rng=np.random.default_rng(12))
    assert x.shape == (N, 3)
    C = bias * model.cov_
    se_cov = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / N)
    S = np.cov(x, rowvar=False)
    assert np.all(np.abs(S - C) <= Z * se_cov), (S, C)
    assert np.all(np.abs(x.mean(axis=0) - model.mean_) <= Z * np.sqrt(np.diag(C) / N))
    if bias < 1.0:  # a bias on the std would give lambda^2 * Sigma: far outside the band
        assert np.all(np.abs(bias**2 * np.diag(model.cov_) - np.diag(C)) > 2 * Z * np.diag(se_cov))


# ----------------------------------------------------------------------------------------------
# chained refits: Shumailov's 1-D Gaussian
# ----------------------------------------------------------------------------------------------

M1, G1, R1 = 20, 10, 1500  # 1-D chains: M items per generation, G generations, R chains
MU0, SIGMA0 = 3.0, 2.0  # the 'human' distribution of the 1-D tests


def _chains_1d(estimator: str, bias: float, base_seed: int, M=M1, G=G1, R=R1):
    """gen0, the means mu_n (R, G+1) and the ratios sigma_n^2 / sigma_0^2 (R, G+1)."""
    gen0 = gen0_gaussian(MU0, SIGMA0**2, M, estimator, bias, seed=base_seed)
    means, covs = gaussian_chains(gen0, estimator, bias, M, G, range(base_seed, base_seed + R))
    return gen0, means[:, :, 0], covs[:, :, 0, 0] / gen0.cov_[0, 0]


def _check_mean_is_martingale(gen0, mu, n, var_mu_over_s0sq, R):
    """E[mu_n] = mu_0 within Z SE, Var(mu_n) = sigma_0^2 * var_mu_over_s0sq."""
    band = Z * np.sqrt(gen0.cov_[0, 0] * var_mu_over_s0sq / R)
    assert abs(mu[:, n].mean() - gen0.mean_[0]) <= band, (n, mu[:, n].mean(), gen0.mean_[0], band)


def test_mle_replace_variance_decays_as_c_pow_n():
    """MLE refit, M items per generation: E[sigma_n^2] = sigma_0^2 ((M-1)/M)^n (Shumailov SI).

    Derivation. Generation n fits M iid draws of N(mu_{n-1}, sigma_{n-1}^2); the MLE variance is
    sigma_{n-1}^2 * Y_n with Y_n = chi2_{M-1} / M, independent of the past. Hence
    sigma_n^2 / sigma_0^2 = Y_1 ... Y_n, with E[Y] = c = (M-1)/M and
    E[Y^2] = (M-1)(M+1)/M^2: mean c^n, variance E[Y^2]^n - c^(2n), SE of the R-chain mean
    sqrt(var / R). The mean is a martingale: E[mu_n] = mu_0 and
    Var(mu_n) = sum_{k<n} E[sigma_k^2] / M = sigma_0^2 (1 - c^n).

    M=20, R=1500, n=10: c^n = 0.599, SE = 0.020, band +-0.12. A fit with ddof=1 keeps the mean
    at 1 (its own band +-0.20): 0.40 away, more than both bands together (asserted below).
    """
    gen0, mu, ratio = _chains_1d("mle", 1.0, base_seed=10_000)
    M, R = M1, R1
    c, e2 = (M - 1) / M, (M - 1) * (M + 1) / M**2
    for n in (1, 2, 5, 10):
        mean, var = ratio_moments(c, e2, n)
        band = Z * np.sqrt(var / R)
        assert abs(ratio[:, n].mean() - mean) <= band, (n, ratio[:, n].mean(), mean, band)
        _check_mean_is_martingale(gen0, mu, n, 1 - c**n, R)
    # the unbiased estimator (ddof=1) would keep the mean at 1, with its own band
    _, var_u = ratio_moments(1.0, (M + 1) / (M - 1), G1)
    _, var_m = ratio_moments(c, e2, G1)
    assert 1.0 - c**G1 > Z * np.sqrt(var_u / R) + Z * np.sqrt(var_m / R)


def test_unbiased_replace_mean_stays_while_median_falls():
    """Unbiased refit: E[sigma_n^2] = sigma_0^2 for every n, yet the typical chain collapses.

    Derivation. sigma_n^2 / sigma_0^2 = Y_1 ... Y_n with Y = chi2_{M-1} / (M-1) iid: E[Y] = 1,
    E[Y^2] = (M+1)/(M-1), so the mean is 1 and the variance ((M+1)/(M-1))^n - 1. But
    E[log Y] = psi((M-1)/2) + log(2/(M-1)) < 0, so log sigma_n^2 drifts down: the median falls
    and P(sigma_n^2 < sigma_0^2 / 2) grows with n (sigma_n^2 -> 0 a.s.).

    Reference distribution of the product: 400_000 independent draws of Y_1..Y_n with numpy's
    chi-square (no model code). Bands are binomial: the share of chains below the reference
    median is 1/2 +- Z sqrt(1/4 (1/R + 1/N_ref)); the share below 1/2 is
    p_n +- Z sqrt(p_n (1-p_n) (1/R + 1/N_ref)).

    M=20, R=1500, n=10: mean band +-0.20; the MLE would give 0.599 (asserted outside both bands);
    with the MLE the share below the reference median would be ~0.69, outside 0.5 +- 0.078.
    """
    gen0, mu, ratio = _chains_1d("unbiased", 1.0, base_seed=20_000)
    M, R, G = M1, R1, G1
    e2 = (M + 1) / (M - 1)
    for n in (1, 2, 5, 10):
        _, var = ratio_moments(1.0, e2, n)
        assert abs(ratio[:, n].mean() - 1.0) <= Z * np.sqrt(var / R), (n, ratio[:, n].mean())
        _check_mean_is_martingale(gen0, mu, n, n / M, R)
    c = (M - 1) / M  # the MLE's mean c^G lies outside both bands
    _, var_u = ratio_moments(1.0, e2, G)
    _, var_m = ratio_moments(c, (M - 1) * (M + 1) / M**2, G)
    assert 1.0 - c**G > Z * np.sqrt(var_u / R) + Z * np.sqrt(var_m / R)

    # reference: the product of n independent chi2_{M-1}/(M-1), simulated directly
    n_ref = 400_000
    ref = np.cumprod(np.random.default_rng(7).chisquare(M - 1, size=(n_ref, G)) / (M - 1), axis=1)
    checks = (1, 3, 10)
    ref_median = {n: np.median(ref[:, n - 1]) for n in checks}
    ref_share = {n: (ref[:, n - 1] < 0.5).mean() for n in checks}
    assert ref_median[1] > ref_median[3] > ref_median[10]  # the median falls (math)
    assert ref_share[1] < ref_share[3] < ref_share[10]  # the collapsed share grows (math)
    band_half = Z * np.sqrt(0.25 * (1 / R + 1 / n_ref))
    for n in checks:
        below_median = (ratio[:, n] < ref_median[n]).mean()
        assert abs(below_median - 0.5) <= band_half, (n, below_median, ref_median[n])
        p = ref_share[n]
        share = (ratio[:, n] < 0.5).mean()
        assert abs(share - p) <= Z * np.sqrt(p * (1 - p) * (1 / R + 1 / n_ref)), (n, share, p)
    # and the same, read off the chains alone
    med = {n: np.median(ratio[:, n]) for n in checks}
    assert med[1] > med[3] > med[10] and med[10] < 0.75
    share1, share10 = (ratio[:, 1] < 0.5).mean(), (ratio[:, 10] < 0.5).mean()
    assert share10 - share1 > Z * np.sqrt((share1 * (1 - share1) + share10 * (1 - share10)) / R)
    # the MLE (ratio * c^n) would put far more than half the chains below the reference median
    assert abs((ref[:, G - 1] * c**G < ref_median[G]).mean() - 0.5) > 2 * band_half


def test_sampling_bias_variance_decays_as_lambda_pow_n():
    """MAD's sampling bias: sample from N(mu, lambda Sigma), refit unbiasedly: E[Sigma_n] = lambda^n Sigma_0.

    Derivation (1-D). Generation n-1 samples M items from N(mu_{n-1}, lambda sigma_{n-1}^2);
    the unbiased fit gives sigma_n^2 = lambda sigma_{n-1}^2 * chi2_{M-1}/(M-1), so
    sigma_n^2 / sigma_0^2 is a product of n iid factors with E[Y] = lambda and
    E[Y^2] = lambda^2 (M+1)/(M-1). E[mu_n] = mu_0, Var(mu_n) = sigma_0^2 sum_{k<n} lambda^(k+1)/M.

    lambda=0.8, M=20, R=1000, n=6: lambda^n = 0.262, band +-0.045. A bias applied to the std
    (lambda^2 on the variance) gives lambda^12 = 0.069; a bias ignored gives 1: both far outside.
    """
    lam, M, G, R = 0.8, M1, 6, 1000
    gen0, mu, ratio = _chains_1d("unbiased", lam, base_seed=30_000, M=M, G=G, R=R)
    e2 = lam**2 * (M + 1) / (M - 1)
    for n in range(1, G + 1):
        mean, var = ratio_moments(lam, e2, n)
        band = Z * np.sqrt(var / R)
        assert abs(ratio[:, n].mean() - mean) <= band, (n, ratio[:, n].mean(), mean, band)
        _check_mean_is_martingale(gen0, mu, n, sum(lam ** (k + 1) for k in range(n)) / M, R)
    mean, var = ratio_moments(lam, e2, G)
    band = Z * np.sqrt(var / R)
    for wrong, e2_wrong in ((lam**2, lam**4 * (M + 1) / (M - 1)), (1.0, (M + 1) / (M - 1))):
        m_w, v_w = ratio_moments(wrong, e2_wrong, G)
        assert abs(m_w - mean) > band + Z * np.sqrt(v_w / R)


SIGMA3 = np.array([[2.0, 0.8, -0.5], [0.8, 1.0, 0.3], [-0.5, 0.3, 1.5]])


@pytest.mark.parametrize(
    "estimator, bias, factor, M, G, R, base_seed",
    [
        ("mle", 1.0, 19 / 20, 20, 10, 1000, 40_000),  # E[Sigma_n] = ((M-1)/M)^n Sigma_0
        ("unbiased", 0.7, 0.7, 30, 5, 500, 50_000),  # E[Sigma_n] = lambda^n Sigma_0
    ],
)
def test_covariance_decay_3d(estimator, bias, factor, M, G, R, base_seed):
    """d=3: E[Sigma_n | Sigma_{n-1}] = factor * Sigma_{n-1} entrywise, so E[Sigma_n] = factor^n Sigma_0.

    For the MLE, E[S] = (M-1)/M * C for the ddof=0 sample covariance of M draws of N(m, C)
    (Wishart); with the unbiased fit and sampling bias lambda, E[S] = lambda C. E[mu_n] = mu_0.
    Every entry of the R-chain mean of Sigma_n, and of the trace ratio tr(Sigma_n)/tr(Sigma_0)
    (= theory_metrics' variance_ratio), must lie within Z SE (SE from the chains) of the
    expectation. The alternative (the other estimator's factor: ratio 1 instead of 0.599 for the
    MLE; a bias on the std, 0.7^2, for the biased case) lies beyond 2.5 bands, which covers its
    own band too (its SD is at most 1.4x ours).
    """
    gen0 = gen0_gaussian([1.0, -1.0, 0.0], SIGMA3, M, estimator, bias, seed=base_seed)
    means, covs = gaussian_chains(gen0, estimator, bias, M, G, range(base_seed, base_seed + R))
    S0 = gen0.cov_
    tr = np.trace(covs, axis1=2, axis2=3) / np.trace(S0)
    for n in (1, G):
        expected = factor**n * S0
        se = covs[:, n].std(axis=0, ddof=1) / np.sqrt(R)
        assert np.all(np.abs(covs[:, n].mean(axis=0) - expected) <= Z * se), (n, covs[:, n].mean(axis=0), expected)
        se_tr = tr[:, n].std(ddof=1) / np.sqrt(R)
        assert abs(tr[:, n].mean() - factor**n) <= Z * se_tr, (n, tr[:, n].mean(), factor**n)
        se_mu = means[:, n].std(axis=0, ddof=1) / np.sqrt(R)
        assert np.all(np.abs(means[:, n].mean(axis=0) - gen0.mean_) <= Z * se_mu)
    wrong = 1.0 if estimator == "mle" else factor**2
    assert abs(wrong**G - factor**G) > 2.5 * Z * tr[:, G].std(ddof=1) / np.sqrt(R)
    # the metric reads the same trace ratio off the fitted model
    model = GaussianModel(estimator=estimator, bias=bias).fit(gen0.sample(M, rng=np.random.default_rng(1)))
    tm = theory_metrics(model.mixture(), gen0.mixture())
    assert tm["variance_ratio"] == pytest.approx(np.trace(model.cov_) / np.trace(S0), rel=1e-12)


def test_w2_to_generation0_grows_as_shumailov_si():
    """Shumailov SI: with the MLE and M items per generation, W2 to the start distribution grows.

    Exact expectation (1-D, reference = generation 0, N(mu_0, sigma_0^2)):
    W2_n^2 = (mu_n - mu_0)^2 + (sigma_n - sigma_0)^2, with
    E[(mu_n - mu_0)^2] = sum_{k<n} E[sigma_k^2]/M = sigma_0^2 (1 - c^n), c = (M-1)/M,
    E[sigma_n^2] = sigma_0^2 c^n and E[sigma_n] = sigma_0 a^n, a = E sqrt(chi2_{M-1}/M)
    = sqrt(2/M) Gamma(M/2) / Gamma((M-1)/2). Altogether E[W2_n^2] = 2 sigma_0^2 (1 - a^n)
    ~= 1.5 sigma_0^2 n / M (a ~= 1 - 3/(4M)), the SI's "0.165 for M=100, 11 generations";
    the exact value there is 0.159.

    Each fitted model is scored with theory_metrics(model.mixture(), gen0.mixture()); per chain,
    its w2 / variance_ratio / mean_error must equal the closed forms to rounding, and the
    R-chain mean of w2^2 must lie within Z SE (from the chains) of 2 sigma_0^2 (1 - a^n).
    """
    M, G, R, base = 100, 11, 400, 60_000
    gen0 = gen0_gaussian(0.0, 1.0, M, "mle", 1.0, seed=base)
    s0, m0 = np.sqrt(gen0.cov_[0, 0]), gen0.mean_[0]
    checks = (1, 4, 11)
    w2sq = {n: [] for n in checks}
    for seed in range(base, base + R):

        def visit(g, model):
            if g in checks:
                tm = theory_metrics(model.mixture(), gen0.mixture())
                s, m = np.sqrt(model.cov_[0, 0]), model.mean_[0]
                assert tm["w2"] == pytest.approx(np.hypot(m - m0, s - s0), rel=1e-9, abs=1e-12)
                assert tm["variance_ratio"] == pytest.approx(s**2 / s0**2, rel=1e-12)
                assert tm["mean_error"] == pytest.approx(abs(m - m0), rel=1e-12, abs=1e-15)
                w2sq[g].append(tm["w2"] ** 2)

        replace_chain(gen0.sample(M, rng=generation_rng(seed, "gen0", 0)), lambda: GaussianModel("mle"), M, G, seed, visit)
    a = np.exp(0.5 * np.log(2 / M) + gammaln(M / 2) - gammaln((M - 1) / 2))
    assert 2 * (1 - a**11) == pytest.approx(1.5 * 11 / 100, rel=0.05)  # the SI's first-order figure
    se = {}
    for n in checks:
        x = np.asarray(w2sq[n])
        se[n] = x.std(ddof=1) / np.sqrt(R)
        expected = 2 * gen0.cov_[0, 0] * (1 - a**n)
        assert abs(x.mean() - expected) <= Z * se[n], (n, x.mean(), expected, se[n])
    # it grows: generation 11 is far above generation 1
    assert np.mean(w2sq[11]) - np.mean(w2sq[1]) > Z * np.hypot(se[1], se[11])


# ----------------------------------------------------------------------------------------------
# the Gaussian mixture family (the Nature paper's GMM toy)
# ----------------------------------------------------------------------------------------------


def mixture_data(rng, n: int, weights, means, variances) -> np.ndarray:
    """n items of a 1-D Gaussian mixture, as an (n, 1) array."""
    counts = rng.multinomial(n, weights)
    x = np.concatenate([rng.normal(m, np.sqrt(v), size=k) for m, v, k in zip(means, variances, counts)])
    return rng.permutation(x)[:, None]


PAPER = dict(weights=[0.5, 0.5], means=[-2.0, 2.0], variances=[1.0, 1.0])  # Shumailov's GMM toy
UNEQUAL = dict(weights=[0.3, 0.7], means=[-3.0, 3.0], variances=[0.5, 2.0])


@pytest.mark.parametrize("case, n, seeds", [(PAPER, 1000, (0, 1, 2)), (UNEQUAL, 20_000, (3,))])
def test_gmm_recovers_two_gaussians(case, n, seeds):
    """GMMModel(n_components=2) recovers weights, means and variances of two 1-D Gaussians.

    Tolerance: 8 complete-data SEs (mean sqrt(v/(n w)), variance v sqrt(2/(n w)), weight
    sqrt(w(1-w)/n)). The overlap of the paper's components (4 sd apart) inflates the real SEs by
    at most ~1.3x (measured over 300 refits: 0.053 / 0.080 for means / variances at n=1000), so
    the band is >= 6 real SEs. The unequal case uses n=20_000 so that a fit that reported
    standard deviations or precisions instead of variances (0.71 / 1.41 or 2 / 0.5) is far out.
    """
    w, mu, v = (np.asarray(case[k]) for k in ("weights", "means", "variances"))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        x = mixture_data(rng, n, w, mu, v)
        model = GMMModel(n_components=2)
        assert model.fit(x, rng=rng) is model
        fw, fm, fc = model.mixture()
        order = np.argsort(fm[:, 0])
        fw, fm, fv = fw[order], fm[order, 0], fc[order, 0, 0]
        assert fc.shape == (2, 1, 1)
        assert np.all(np.abs(fm - mu) <= 8 * np.sqrt(v / (n * w))), (seed, fm)
        assert np.all(np.abs(fv - v) <= 8 * v * np.sqrt(2 / (n * w))), (seed, fv)
        assert np.all(np.abs(fw - w) <= 8 * np.sqrt(w * (1 - w) / n)), (seed, fw)
        assert fw.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("bias", [1.0, 0.5])
@pytest.mark.parametrize("d", [1, 2])
def test_gmm_sampling_bias_scales_component_covariances(bias, d):
    """GMM sampling with bias lambda draws component k from N(mu_k, lambda Sigma_k), w.p. w_k.

    The components are 30 apart on the first axis (>= 7.5 sd), so each sample's component is
    read off its sign. With N = 200_000 draws, per component: the share is w_k +- Z binomial SE,
    the mean mu_k +- Z sqrt(C_ii / n_k), the covariance C = lambda Sigma_k +- Z Wishart SE
    sqrt((C_ii C_jj + C_ij^2) / n_k). A bias applied to the std (lambda^2 Sigma_k) is far out.
    """
    covs = [np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[4.0, -1.0], [-1.0, 2.0]])]
    rng = np.random.default_rng(99)
    counts = rng.multinomial(4000, [0.4, 0.6])
    human = np.concatenate([rng.multivariate_normal([m, 0.0][:d], c[:d, :d], size=k) for m, c, k in zip((-15.0, 15.0), covs, counts)])
    model = GMMModel(n_components=2, bias=bias).fit(human, rng=rng)
    w, mu, fitted = model.mixture()
    N = 200_000
    x = model.sample(N, rng=np.random.default_rng(100))
    assert x.shape == (N, d)
    for k in range(2):
        side = (x[:, 0] > 0) == (mu[k, 0] > 0)
        xk = x[side]
        nk = len(xk)
        assert abs(nk / N - w[k]) <= Z * np.sqrt(w[k] * (1 - w[k]) / N)
        C = bias * fitted[k]
        se_cov = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / nk)
        S = np.atleast_2d(np.cov(xk, rowvar=False))
        assert np.all(np.abs(S - C) <= Z * se_cov), (k, S, C)
        assert np.all(np.abs(xk.mean(axis=0) - mu[k]) <= Z * np.sqrt(np.diag(C) / nk))
        if bias < 1.0:
            assert np.all(np.abs(bias**2 * np.diag(fitted[k]) - np.diag(C)) > 2 * Z * np.diag(se_cov))


def _gmm_chains(seeds, generations: int, checkpoints) -> dict:
    """theory_metrics against the truth at the checkpoints of replace chains of the paper's GMM."""
    truth = (np.array(PAPER["weights"]), np.array(PAPER["means"])[:, None], np.array(PAPER["variances"])[:, None, None])
    out = {g: [] for g in checkpoints}
    for seed in seeds:
        human = mixture_data(np.random.default_rng(seed), 1000, **PAPER)  # its own human sample
        rng0 = generation_rng(seed, "gen0", 0)
        gen0 = GMMModel(n_components=2).fit(human, rng=rng0)

        def visit(g, model):
            if g in out:
                out[g].append(theory_metrics(model.mixture(), truth))

        replace_chain(gen0.sample(1000, rng=rng0), lambda: GMMModel(n_components=2), 1000, generations, seed, visit)
    return {g: {k: np.array([m[k] for m in rows]) for k in rows[0]} for g, rows in out.items()}


def test_gmm_replace_chain_drifts_from_the_truth():
    """Shumailov's GMM toy (1000 samples per generation, replace): the fit drifts away.

    Each refit adds an independent O(1/sqrt(1000)) error to the parameters and nothing pulls them
    back, so the displacement from the truth is a random walk: its size, and the mixture L2
    distance with it, grows ~ sqrt(number of fits), i.e. ~ sqrt(51 / 2) ~ 5x from generation 1
    to 50. Each seed draws its own human sample, so the human sample's error is averaged too.
    Measured over 4 x 8 seeds: generation 1 ~0.028 (sd 0.008), generation 50 ~0.15 (sd 0.05,
    range 0.06-0.28), ratio 5.2-6.4. We ask for 2x on the means over 12 seeds: 0.056 sits > 6 SE
    of the 12-seed mean (0.015) below 0.15, and a chain that did not drift would give ~1x.
    """
    res = _gmm_chains(range(12), 50, (1, 50))
    l2_1, l2_50 = res[1]["mixture_l2"].mean(), res[50]["mixture_l2"].mean()
    assert l2_50 > 2.0 * l2_1, (l2_1, l2_50)


@pytest.mark.slow
def test_gmm_replace_chain_drifts_further_over_200_generations():
    """The same, longer and wider: 24 seeds x 200 generations. sqrt-growth predicts the mean L2
    to rise at every checkpoint (1, 10, 50, 200) and ~2x from 50 to 200; we ask 1.3x. The W2
    between the moment-matched Gaussians grows too (measured ~9x from 1 to 200; we ask 2x)."""
    res = _gmm_chains(range(100, 124), 200, (1, 10, 50, 200))
    l2 = [res[g]["mixture_l2"].mean() for g in (1, 10, 50, 200)]
    assert l2[0] < l2[1] < l2[2] < l2[3], l2
    assert l2[3] > 1.3 * l2[2], l2
    assert res[200]["w2"].mean() > 2 * res[1]["w2"].mean()


# ----------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------


def test_gaussian_same_seed_bit_identical():
    x = np.random.default_rng(5).normal(size=(50, 2))
    a = GaussianModel(estimator="unbiased", bias=0.7)
    b = GaussianModel(estimator="unbiased", bias=0.7)
    assert a.fit(x, rng=np.random.default_rng(1)) is a
    assert b.fit(x) is b  # fitting a Gaussian draws nothing
    assert np.array_equal(a.mean_, b.mean_) and np.array_equal(a.cov_, b.cov_)
    s1 = a.sample(100, rng=np.random.default_rng(42))
    s2 = b.sample(100, rng=np.random.default_rng(42))
    assert np.array_equal(s1, s2)
    assert not np.array_equal(s1, a.sample(100, rng=np.random.default_rng(43)))


def test_gmm_same_seed_bit_identical():
    x = mixture_data(np.random.default_rng(6), 1000, **PAPER)
    a, b = GMMModel(n_components=2), GMMModel(n_components=2)
    assert a.fit(x, rng=np.random.default_rng(8)) is a
    assert b.fit(x, rng=np.random.default_rng(8)) is b
    for pa, pb in zip(a.mixture(), b.mixture()):
        assert np.array_equal(pa, pb)
    s1 = a.sample(500, rng=np.random.default_rng(9))
    assert np.array_equal(s1, b.sample(500, rng=np.random.default_rng(9)))
    assert not np.array_equal(s1, a.sample(500, rng=np.random.default_rng(10)))


@pytest.mark.parametrize("family", ["gaussian", "gmm"])
def test_replace_chain_is_reproducible(family):
    """The same (seed, generation) streams give the same chain, bit for bit; another seed does not."""
    if family == "gaussian":
        human = np.random.default_rng(3).normal(size=(40, 2))
        new = lambda: GaussianModel(estimator="mle", bias=0.9)  # noqa: E731
    else:
        human = mixture_data(np.random.default_rng(3), 500, **PAPER)
        new = lambda: GMMModel(n_components=2)  # noqa: E731

    def run(seed):
        rng0 = generation_rng(seed, "gen0", 0)
        gen0 = new().fit(human, rng=rng0)
        models = []
        replace_chain(gen0.sample(len(human), rng=rng0), new, len(human), 4, seed, lambda g, m: models.append(m))
        return np.concatenate([np.concatenate([p.ravel() for p in m.mixture()]) for m in models])

    assert np.array_equal(run(11), run(11))
    assert not np.array_equal(run(11), run(12))


def test_generation_rng_streams():
    draw = lambda *key: generation_rng(*key).standard_normal(8)  # noqa: E731
    assert np.array_equal(draw(1, "replace", 3), draw(1, "replace", 3))
    for other in [(2, "replace", 3), (1, "accumulate", 3), (1, "replace", 4), (1, "gen0", 0)]:
        assert not np.array_equal(draw(1, "replace", 3), draw(*other))
