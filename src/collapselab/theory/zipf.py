"""Zipf data and tail cutting: Dohmatob, Feng, Yang, Charton & Kempe (ICML 2024, "A Tale of
Tails: Model Collapse as a Change of Scaling Laws") and Dohmatob, Feng, Subramonian & Kempe
(ICLR 2025, "Strong Model Collapse").

Setup. Tokens have Zipf(beta) frequencies p_i ∝ i^(-beta) (i = 1..V, beta > 1). The learner
sees T tokens drawn iid from a training distribution; a synthetic generator that cuts the tail
(top-k) produces q = p restricted to the k most frequent types, renormalised.

Memorising learner (Hutter's model, A Tale of Tails): it knows every type it has seen, so its
test error is the real probability of an unseen type. For T iid tokens from q,

    E err(T) = sum_i p_i (1 - q_i)^T,

which on real data (q = p) decays like T^(-(1 - 1/beta)), but with q = top-k(p) tends to the cut
mass sum_{i > k} p_i ~ k^(-(beta - 1)) / (beta - 1): more data stops helping (the plateau).
Training on several iid parts (a_j tokens from q_j) multiplies the unseen probabilities:
P(i unseen) = prod_j (1 - q_ji)^(a_j), and the variance of the error follows from the pairwise
probabilities prod_j (1 - q_ji - q_jl)^(a_j) (exact, no approximation).

Frequency estimator ("Strong Model Collapse", the bias-variance form of their regression result).
p_hat = counts / T with a share pi of the T tokens real (from p) and 1 - pi synthetic (from q):

    E ||p_hat - p||^2 = (1/T) [pi (1 - ||p||^2) + (1 - pi) (1 - ||q||^2)] + (1 - pi)^2 ||q - p||^2,

so with any fixed synthetic share the error stops falling at (1 - pi)^2 ||q - p||^2, however
large T grows: scaling no longer helps. With pi = 1 it keeps falling as 1/T.
"""

from __future__ import annotations

import numpy as np


def zipf_probs(n_types: int, beta: float) -> np.ndarray:
    """p_i ∝ i^(-beta), i = 1..n_types (index 0 is rank 1)."""
    w = np.arange(1, n_types + 1, dtype=np.float64) ** (-float(beta))
    return w / w.sum()


def top_k(p: np.ndarray, k: int) -> np.ndarray:
    """p restricted to its k largest entries, renormalised (ties: lower index first)."""
    keep = np.argsort(-np.asarray(p), kind="stable")[:k]
    q = np.zeros(len(p))
    q[keep] = np.asarray(p)[keep]
    return q / q.sum()


def tail_mass(p: np.ndarray, q: np.ndarray) -> float:
    """sum of p over the types q never produces: the memoriser's plateau."""
    return float(np.sum(np.asarray(p)[np.asarray(q) == 0]))


def _pow(base: np.ndarray, n: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.exp(n * np.log(np.clip(base, 0.0, None)))


def unseen_prob(parts) -> np.ndarray:
    """P(type i absent from the training tokens), parts = [(q_j, a_j)]: a_j iid tokens from q_j."""
    return np.prod([_pow(1.0 - np.asarray(q), a) for q, a in parts], axis=0)


def memoriser_error(p: np.ndarray, parts) -> float:
    """E sum_i p_i [i unseen] for training tokens made of ``parts`` (see :func:`unseen_prob`)."""
    return float(np.asarray(p) @ unseen_prob(parts))


def memoriser_error_var(p: np.ndarray, parts) -> float:
    """Var of the memoriser's error: sum_{i,l} p_i p_l (P(i, l unseen) - P(i unseen) P(l unseen))."""
    p = np.asarray(p)
    u = unseen_prob(parts)
    joint = np.ones((len(p), len(p)))
    for q, a in parts:
        q = np.asarray(q)
        joint *= _pow(1.0 - q[:, None] - q[None, :], a)
    np.fill_diagonal(joint, u)  # a type and itself: unseen with probability u_i
    return float(p @ (joint - np.outer(u, u)) @ p)


def frequency_l2(p: np.ndarray, q: np.ndarray, t: int, real_share: float = 0.0) -> float:
    """E ||p_hat - p||^2 for T tokens, a share ``real_share`` iid from p, the rest iid from q.

    Exact when the real part has round(real_share * T) tokens (the counts are independent parts)."""
    p, q = np.asarray(p), np.asarray(q)
    a = int(round(real_share * t))
    b = t - a
    var = (a * (p * (1 - p)).sum() + b * (q * (1 - q)).sum()) / t**2
    mean = (a * p + b * q) / t
    return float(var + np.sum((mean - p) ** 2))


def frequency_l2_plateau(p: np.ndarray, q: np.ndarray, real_share: float) -> float:
    """lim_{T -> inf} E ||p_hat - p||^2 = (1 - pi)^2 ||q - p||^2."""
    return float((1 - real_share) ** 2 * np.sum((np.asarray(q) - np.asarray(p)) ** 2))
