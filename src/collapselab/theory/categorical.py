"""A categorical (next-token) model refitted by counts: Seddik et al. (2024, "How Bad is Training
on Synthetic Data? A Statistical Analysis of Language Model Collapse").

Setup. p^(g) is a distribution over a vocabulary; generation g + 1 counts M tokens drawn iid
from p^(g) (fully synthetic) or mixes them with real tokens, and p^(g+1) = counts / M.

Fully synthetic. With S_g = E sum_i (p_i^(g))^2 (the collision probability, = 1 exactly for a
Dirac): E[sum_i p'_i^2 | p] = sum_i (p_i (1 - p_i) / M + p_i^2) = 1/M + (1 - 1/M) sum_i p_i^2, so

    S_g = 1 - (1 - 1/M)^g (1 - S_0)                                 (the formula of the notes)

-> 1: the chain is absorbed in a Dirac; since E p^(g) = p^(0) (a martingale) it ends on token i
with probability p_i^(0). Equivalently D_g = E ||p^(g) - p^(0)||^2 = S_g - S_0.

Partially synthetic. Generation g trains on a real tokens and b = M - a tokens of p^(g-1). Let
r be the reference distribution, E the real part's empirical distribution, with E[E] = r and
v = E ||E - r||^2, and Q = ||r||^2. If E p^(g-1) = r then, the parts being independent,

    D_g = E ||p^(g) - r||^2 = (a/M)^2 v + (b/M)^2 [(1 - Q - D_{g-1}) / b + D_{g-1}]
        = A + B D_{g-1},   A = (a/M)^2 v + b (1 - Q) / M^2,   B = b (b - 1) / M^2,

a linear recursion with fixed point D* = A / (1 - B), finite for every a >= 1. Two real parts:

- iid real tokens from r (a fresh sample each generation): v = (1 - Q) / a, and
  D* = (1 - Q) / (M (1 - alpha^2) + alpha) with alpha = b / M the synthetic share (Seddik's
  alpha): 1/(1 - alpha^2) times the real-only error (1 - Q) / M for large M;
- a drawn without replacement from a fixed human set of K tokens whose empirical distribution is
  r (the loop's ``anchor`` policy): v = (1 - Q) (K - a) / (a (K - 1)).
"""

from __future__ import annotations

import numpy as np


def collision_fully_synthetic(g, m: int, s0: float):
    """S_g = 1 - (1 - 1/M)^g (1 - S_0) (vectorised over g)."""
    return 1.0 - (1.0 - 1.0 / m) ** np.asarray(g) * (1.0 - s0)


def real_part_var(q_norm2: float, a: int, human_size: int | None = None) -> float:
    """E ||E - r||^2 of the empirical distribution E of a real tokens: iid from r
    (``human_size=None``), or drawn without replacement from a set of K tokens with frequencies r."""
    if a == 0:
        return 0.0
    v = (1.0 - q_norm2) / a
    if human_size is not None:
        v *= (human_size - a) / (human_size - 1)
    return v


def mixed_distance(generations: int, m: int, a: int, q_norm2: float, real_var: float, d0: float = 0.0) -> np.ndarray:
    """D_0..D_G, D_g = E ||p^(g) - r||^2, with a real tokens out of M per generation."""
    b = m - a
    A = (a / m) ** 2 * real_var + b * (1.0 - q_norm2) / m**2
    B = b * (b - 1) / m**2
    d = np.empty(generations + 1)
    d[0] = d0
    for g in range(1, generations + 1):
        d[g] = A + B * d[g - 1]
    return d


def mixed_fixed_point(m: int, a: int, q_norm2: float, real_var: float) -> float:
    """D* = A / (1 - B): the limit of :func:`mixed_distance` (1 - Q when a = 0: a Dirac)."""
    b = m - a
    A = (a / m) ** 2 * real_var + b * (1.0 - q_norm2) / m**2
    B = b * (b - 1) / m**2
    return A / (1.0 - B) if a else 1.0 - q_norm2
