"""Science checks of the categorical next-token family (Seddik et al. 2024, "How Bad is Training
on Synthetic Data?"), run through the real code path.

Chains are built as the engine builds them: generation 0 is a :class:`CategoricalModel` fitted
on the human tokens, sampling M tokens with ``generation_rng(seed, "gen0", 0)``; generation g
gets ``rng = generation_rng(seed, policy.name, g)``, its training set from
``parse_policy(spec).training_set(g, state, rng)``, fits a fresh model and samples M tokens.

:mod:`collapselab.theory.categorical` gives the expectations: the collision probability
S_g = E sum_i p_i^2 = 1 - (1 - 1/M)^g (1 - S_0) when fully synthetic, and the linear recursion
of D_g = E ||p^(g) - r||^2 (with its fixed point) when real tokens are mixed in. Per-chain values
are bounded in [0, 2], so the SE of an R-chain mean taken from the chains is reliable; bands are
Z = 6 SEs, and each test asserts that a named bug's expectation lies outside the band.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.loop.engine import generation_rng
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.models.categorical import CategoricalModel, truncate
from collapselab.theory.categorical import collision_fully_synthetic, mixed_distance, mixed_fixed_point, real_part_var
from collapselab.theory.zipf import zipf_probs

Z = 6.0
V = 10  # vocabulary
P_TRUE = zipf_probs(V, 1.2)
K = 200  # human tokens
HUMAN = np.random.default_rng(3).choice(V, size=K, p=P_TRUE)[:, None]


def chain(human, spec: str, m: int, generations: int, seed: int, pool=None) -> list[CategoricalModel]:
    """The fitted models of generations 0..G of one chain."""
    policy = parse_policy(spec)
    rng0 = generation_rng(seed, "gen0", 0)
    models = [CategoricalModel(V).fit(human, rng=rng0)]
    state = LoopState(human=human, pool=human[:0] if pool is None else pool)
    state.outputs = [models[0].sample(m, rng=rng0)]
    for g in range(1, generations + 1):
        rng = generation_rng(seed, policy.name, g)
        ts = policy.training_set(g, state, rng)
        models.append(CategoricalModel(V).fit(ts.data, rng=rng))
        state.outputs.append(models[-1].sample(m, rng=rng))
    return models


def probs(spec: str, m: int, G: int, R: int, base: int, human=HUMAN, pool_size: int = 0) -> np.ndarray:
    """(R, G+1, V) fitted distributions; with ``pool_size``, each chain has its own human set and
    its own unseen pool, both iid from P_TRUE."""
    out = np.empty((R, G + 1, V))
    for r in range(R):
        h, pool = human, None
        if pool_size:
            rng = np.random.default_rng(base + r)
            h = rng.choice(V, size=K, p=P_TRUE)[:, None]
            pool = rng.choice(V, size=pool_size, p=P_TRUE)[:, None]
        out[r] = [mod.probs_ for mod in chain(h, spec, m, G, base + r, pool)]
    return out


def within(x: np.ndarray, expected: float, what) -> float:
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert abs(x.mean() - expected) <= Z * se, (what, x.mean(), expected, se)
    return se


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


def test_fit_counts_truncates_and_samples():
    m = CategoricalModel(V)
    assert m.fit(HUMAN, rng=np.random.default_rng(0)) is m
    counts = np.bincount(HUMAN[:, 0], minlength=V)
    np.testing.assert_array_equal(m.counts_, counts)
    np.testing.assert_allclose(m.probs_, counts / K)
    np.testing.assert_allclose(m.log_likelihood(HUMAN), np.log(counts / K)[HUMAN[:, 0]])
    np.testing.assert_allclose(CategoricalModel(V, pseudo_count=1).fit(HUMAN).probs_, (counts + 1) / (K + V))
    assert m.collision() == pytest.approx(np.sum((counts / K) ** 2))
    # truncation: top-k keeps the k largest (ties: lower id), top-p the smallest set reaching p
    p = np.array([0.1, 0.3, 0.2, 0.2, 0.15, 0.05])
    np.testing.assert_allclose(truncate(p, top_k=2), [0, 0.6, 0.4, 0, 0, 0])
    np.testing.assert_allclose(truncate(p, top_k=3), np.array([0, 0.3, 0.2, 0.2, 0, 0]) / 0.7)
    np.testing.assert_allclose(truncate(p, top_p=0.7), np.array([0, 0.3, 0.2, 0.2, 0, 0]) / 0.7)
    np.testing.assert_allclose(truncate(p, top_p=0.71), np.array([0, 0.3, 0.2, 0.2, 0.15, 0]) / 0.85)
    np.testing.assert_allclose(truncate(p, top_k=2, top_p=0.99), [0, 0.6, 0.4, 0, 0, 0])
    np.testing.assert_allclose(truncate(p), p)
    # sampling: 200_000 tokens; each type's share within Z binomial SE of the truncated p
    t = CategoricalModel(V, top_k=4).fit(HUMAN)
    n = 200_000
    s = t.sample(n, rng=np.random.default_rng(1))
    assert s.shape == (n, 1) and s.dtype == np.int64
    share = np.bincount(s[:, 0], minlength=V) / n
    q = truncate(counts / K, top_k=4)
    assert np.all(np.abs(share - q) <= Z * np.sqrt(q * (1 - q) / n) + 1e-12)
    assert np.all(share[q == 0] == 0) and (q > 0).sum() == 4
    assert t.counts_[q > 0].min() >= t.counts_[q == 0].max()
    for bad in (np.array([[0], [V]]), np.array([[0.5]]), np.zeros((3, 2))):
        with pytest.raises(ValueError):
            CategoricalModel(V).fit(bad)
    with pytest.raises(ValueError):
        CategoricalModel(V, top_k=0).fit(HUMAN)


def test_same_seed_same_chain():
    a = [m.probs_ for m in chain(HUMAN, "replace", 30, 4, 5)]
    b = [m.probs_ for m in chain(HUMAN, "replace", 30, 4, 5)]
    c = [m.probs_ for m in chain(HUMAN, "replace", 30, 4, 6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


# ----------------------------------------------------------------------------------------------
# fully synthetic: collapse to a Dirac at Seddik's rate
# ----------------------------------------------------------------------------------------------


def test_fully_synthetic_collision_rate():
    """S_g = 1 - (1 - 1/M)^g (1 - S_0) with M = 50 tokens per generation, R = 1000, g <= 40;
    E p^(g) = p^(0) (a martingale). Named bug: the rate taken from the human set's size K = 200
    instead of M (S_10 = 0.26 instead of 0.36 here): outside the band."""
    M, G, R = 50, 40, 1000
    p = probs("replace", M, G, R, base=1_000)
    s0 = np.sum(p[0, 0] ** 2)
    for g in (1, 2, 5, 10, 20, 40):
        S = np.sum(p[:, g] ** 2, axis=1)
        se = within(S, collision_fully_synthetic(g, M, s0), ("S", g))
        if g >= 5:
            assert abs(collision_fully_synthetic(g, K, s0) - collision_fully_synthetic(g, M, s0)) > 2 * Z * se
        mean_se = p[:, g].std(axis=0, ddof=1) / np.sqrt(R)
        assert np.all(np.abs(p[:, g].mean(axis=0) - p[0, 0]) <= Z * mean_se + 1e-12), g


def test_fully_synthetic_is_absorbed_where_it_started():
    """With M = 5 tokens per generation, 1 - S_60 = 0.8^60 (1 - S_0) ~ 1e-6: every chain ends on
    one token, token i with probability p_i^(0) (the martingale). Bands are binomial; the named
    bug 'absorbed at the mode' (probability 1 for the most frequent token) lies far outside."""
    M, G, R = 5, 60, 1000
    p = probs("replace", M, G, R, base=2_000)
    assert np.all(p[:, G].max(axis=1) == 1.0)
    share = np.bincount(p[:, G].argmax(axis=1), minlength=V) / R
    q = p[0, 0]
    band = Z * np.sqrt(q * (1 - q) / R) + 1e-12
    assert np.all(np.abs(share - q) <= band), (share, q)
    mode = q.argmax()
    assert 1.0 - q[mode] > 2 * band[mode]


# ----------------------------------------------------------------------------------------------
# partially synthetic: a fixed point instead of collapse
# ----------------------------------------------------------------------------------------------


def test_anchor_mixing_settles_at_the_fixed_point():
    """anchor:0.2 (10 of the 200 human tokens afresh each generation, without replacement, plus 40
    of the previous output), reference r = the human frequencies = p^(0): D_g = E ||p^(g) - r||^2
    follows D_g = A + B D_{g-1} with v = (1 - Q)(K - a)/(a (K - 1)), and settles at D* = A/(1-B).

    Named bug: the human share ignored (replace): D_40 = S_40 - S_0 is 10x the fixed point."""
    M, a, G, R = 50, 10, 40, 1000
    p = probs("anchor:0.2", M, G, R, base=3_000)
    r = p[0, 0]
    Q = np.sum(r**2)
    d = mixed_distance(G, M, a, Q, real_part_var(Q, a, K))
    for g in (1, 2, 5, 10, 40):
        se = within(np.sum((p[:, g] - r) ** 2, axis=1), d[g], ("D", g))
    dstar = mixed_fixed_point(M, a, Q, real_part_var(Q, a, K))
    assert d[G] == pytest.approx(dstar, rel=1e-3)
    replace = collision_fully_synthetic(G, M, Q) - Q
    assert replace > 5 * dstar and replace - d[G] > 2 * Z * se * (replace / d[G])


def test_fresh_mixing_matches_seddik_alpha_form():
    """fresh:0.2: 10 new iid real tokens each generation (each chain has its own human set of 200
    and its own pool), reference = the true distribution P: D_0 = (1 - P2)/K and the fixed point
    is D* = (1 - P2) / (M (1 - alpha^2) + alpha), alpha = b/M = 0.8 the synthetic share: 2.6x the
    real-only error (1 - P2)/M, which is the named bug (synthetic data that costs nothing)."""
    M, a, G, R = 50, 10, 30, 1000
    alpha = (M - a) / M
    P2 = np.sum(P_TRUE**2)
    dstar = mixed_fixed_point(M, a, P2, real_part_var(P2, a))
    assert dstar == pytest.approx((1 - P2) / (M * (1 - alpha**2) + alpha), rel=1e-12)
    p = probs("fresh:0.2", M, G, R, base=4_000, pool_size=G * a)
    d = mixed_distance(G, M, a, P2, real_part_var(P2, a), d0=(1 - P2) / K)
    for g in (0, 1, 3, 10, 30):
        se = within(np.sum((p[:, g] - P_TRUE) ** 2, axis=1), d[g], ("D", g))
    real_only = (1 - P2) / M
    assert d[G] - real_only > Z * se * (1 + real_only / d[G])
