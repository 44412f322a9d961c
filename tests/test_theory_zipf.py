"""Science checks of Zipf tail cutting (Dohmatob et al., "A Tale of Tails", ICML 2024, and
"Strong Model Collapse", ICLR 2025), run through the real code path.

The human data are iid Zipf(beta) tokens (:class:`ZipfSource`). Generation 0 is a
:class:`CategoricalModel` with ``top_k`` fitted on a large human sample: a generator that cuts
the tail, whose sampling distribution q (``sample_probs_``) every chain of a test shares.
Generation 1 is built as the engine builds it (``generation_rng(seed, policy.name, 1)``,
``parse_policy(spec).training_set``, ``fit``) from M tokens of generation 0, alone (``replace``)
or with a share of fresh human tokens (``fresh:F``, each chain with its own unseen pool).

:mod:`collapselab.theory.zipf` gives the learner's expected test error against the true Zipf p:
the memoriser's missing mass sum_i p_i P(i unseen) with its exact variance (so the bands are Z = 6
exact SEs), and the frequency estimator's E ||p_hat - p||^2 (SE from the chains). Each test
asserts that a named bug's expectation lies outside the band plus its own.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import zeta

from collapselab.loop.engine import generation_rng
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.models.categorical import CategoricalModel
from collapselab.models.zipf import ZipfSource, l2_error, missing_mass
from collapselab.theory.zipf import (frequency_l2, frequency_l2_plateau, memoriser_error, memoriser_error_var,
                                     tail_mass, top_k, zipf_probs)

Z = 6.0
V, BETA, K_TOP = 1000, 1.5, 30
SOURCE = ZipfSource(V, BETA)
P = SOURCE.probs
GEN0 = CategoricalModel(V, top_k=K_TOP).fit(SOURCE.sample(200_000, rng=np.random.default_rng(1)))
Q = GEN0.sample_probs_  # the generator's tail-cut distribution


def generation1(spec: str, m: int, seed: int, pool=None) -> CategoricalModel:
    """Generation 1 of one chain from GEN0's m tokens (and the chain's human pool)."""
    policy = parse_policy(spec)
    state = LoopState(human=np.zeros((0, 1), dtype=np.int64), pool=np.zeros((0, 1), dtype=np.int64) if pool is None else pool)
    state.outputs = [GEN0.sample(m, rng=generation_rng(seed, "gen0", 0))]
    rng = generation_rng(seed, policy.name, 1)
    ts = policy.training_set(1, state, rng)
    assert len(ts.origin) == m
    return CategoricalModel(V).fit(ts.data, rng=rng)


def errors(spec: str, m: int, R: int, base: int, real: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per chain: the memoriser's missing mass and the frequency estimator's squared L2 error."""
    mm, l2 = np.empty(R), np.empty(R)
    for r in range(R):
        pool = SOURCE.sample(real, rng=np.random.default_rng(base + r)) if real else None
        model = generation1(spec, m, base + r, pool)
        mm[r], l2[r] = missing_mass(model, P), l2_error(model, P)
    return mm, l2


def test_zipf_source_and_the_generator_cut():
    np.testing.assert_allclose(P, np.arange(1, V + 1) ** -BETA / np.sum(np.arange(1, V + 1) ** -BETA))
    s = SOURCE.sample(100_000, rng=np.random.default_rng(2))
    share = np.bincount(s[:, 0], minlength=V) / 100_000
    assert np.all(np.abs(share - P) <= Z * np.sqrt(P * (1 - P) / 100_000))
    # the generator keeps the 30 most frequent types of its training data, renormalised
    assert (Q > 0).sum() == K_TOP and GEN0.counts_[Q > 0].min() >= GEN0.counts_[Q == 0].max()
    np.testing.assert_allclose(Q[Q > 0], GEN0.probs_[Q > 0] / GEN0.probs_[Q > 0].sum())
    # with 200_000 tokens its kept types are the true top 30 (ranks 1..30)
    np.testing.assert_array_equal(np.flatnonzero(Q), np.arange(K_TOP))
    m = CategoricalModel(V).fit(s[:500])
    assert missing_mass(m, P) == pytest.approx(P[np.bincount(s[:500, 0], minlength=V) == 0].sum())
    assert l2_error(m, P) == pytest.approx(np.sum((m.probs_ - P) ** 2))


def test_scaling_laws_of_the_closed_form():
    """The asymptotics the closed forms must carry (A Tale of Tails): on real data the memoriser's
    error falls as T^-(1 - 1/beta) (slope -1/3 for beta = 1.5, read between T = 1e4 and 1e5 with
    a vocabulary of 10^7 so that it does not bind); the tail-cut plateau is the cut mass
    sum_{i>k} p_i ~ k^(1 - beta) / ((beta - 1) zeta(beta)); and the cut error never goes below it."""
    p = zipf_probs(10**7, BETA)
    e1, e2 = memoriser_error(p, [(p, 10**4)]), memoriser_error(p, [(p, 10**5)])
    assert np.log10(e2 / e1) == pytest.approx(-(1 - 1 / BETA), rel=0.03)
    k = 1000
    assert tail_mass(p, top_k(p, k)) == pytest.approx(k ** (1 - BETA) / ((BETA - 1) * zeta(BETA)), rel=0.02)
    q = top_k(P, K_TOP)
    cut = [memoriser_error(P, [(q, t)]) for t in (10, 100, 1000, 10**4, 10**5)]
    assert all(x >= tail_mass(P, q) for x in cut) and cut == sorted(cut, reverse=True)
    assert cut[-1] == pytest.approx(tail_mass(P, q), rel=1e-9)


@pytest.mark.parametrize("m", [100, 1000, 5000])
def test_memoriser_on_tail_cut_data_plateaus(m):
    """Memoriser trained on M tokens of the top-30 generator (replace): E error =
    sum_i p_i (1 - q_i)^M, with its exact variance; R = 300 chains. The error falls to the cut
    mass sum_{i>30} p_i = 0.117 and stays there, while real data would keep lowering it.

    Named bug: a generator that did not cut the tail (q = generation 0's full fit): at M = 1000
    and 5000 its expected error (0.071, 0.032) lies outside the band plus its own."""
    R = 300
    mm, _ = errors("replace", m, R, base=10_000 + m)
    mean, var = memoriser_error(P, [(Q, m)]), memoriser_error_var(P, [(Q, m)])
    band = Z * np.sqrt(var / R)
    assert abs(mm.mean() - mean) <= band, (m, mm.mean(), mean, band)
    if m >= 1000:
        assert mean - tail_mass(P, Q) < 0.01  # on the plateau
        full = [(GEN0.probs_, m)]
        wrong, wrong_var = memoriser_error(P, full), memoriser_error_var(P, full)
        assert mean - wrong > band + Z * np.sqrt(wrong_var / R)


def test_memoriser_with_real_share_keeps_learning():
    """fresh:0.1 at M = 5000: 500 fresh human tokens and 4500 from the generator. P(i unseen) =
    (1 - p_i)^500 (1 - q_i)^4500, exact mean and variance: 0.087, below the cut mass (0.117) that
    the named bug 'real tokens taken from the generator too' (replace) would give."""
    m, R = 5000, 300
    mm, _ = errors("fresh:0.1", m, R, base=20_000, real=500)
    parts = [(P, 500), (Q, 4500)]
    mean, var = memoriser_error(P, parts), memoriser_error_var(P, parts)
    band = Z * np.sqrt(var / R)
    assert abs(mm.mean() - mean) <= band, (mm.mean(), mean, band)
    wrong, wrong_var = memoriser_error(P, [(Q, m)]), memoriser_error_var(P, [(Q, m)])
    assert wrong - mean > band + Z * np.sqrt(wrong_var / R)


def test_frequency_estimator_strong_collapse():
    """Strong model collapse: 10% synthetic tokens (fresh:0.9). E ||p_hat - p||^2 =
    [0.9 (1 - |p|^2) + 0.1 (1 - |q|^2)] / M + ||0.9 p + 0.1 q - p||^2 matches the chains at
    M = 1000, 10_000, 50_000 (R = 200, SE from the chains), and the closed form stops falling at
    0.01 ||q - p||^2 however large M grows. Named bug: synthetic tokens as good as real (the
    real-only (1 - |p|^2)/M): outside the band at M = 50_000."""
    R, share = 200, 0.9
    for m in (1000, 10_000, 50_000):
        a = int(round(share * m))
        _, l2 = errors("fresh:0.9", m, R, base=30_000 + m, real=a)
        expected = frequency_l2(P, Q, m, share)
        se = l2.std(ddof=1) / np.sqrt(R)
        assert abs(l2.mean() - expected) <= Z * se, (m, l2.mean(), expected, se)
    real_only = frequency_l2(P, P, m, 1.0)
    assert expected - real_only > Z * se * (1 + real_only / expected)
    plateau = frequency_l2_plateau(P, Q, share)
    assert frequency_l2(P, Q, 10**9, share) == pytest.approx(plateau, rel=1e-3)
    assert frequency_l2(P, P, 10**9, 1.0) < 1e-3 * plateau  # real data alone keeps improving
