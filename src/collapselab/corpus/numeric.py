"""Data for the theory models: samples from a known distribution, or a user's ``.npy`` array.

``normal``: a d-dimensional standard normal (the Gaussian theory of Shumailov et al. and MAD).
``mixture``: the Nature paper's GMM toy, two 1-D Gaussians (means -2 and 2, unit variance).
The reference distribution (what every generation is compared to) is the true one for the
built-in sources and the maximum-likelihood fit for a user's array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collapselab.errors import UserError


@dataclass
class NumericCorpus:
    name: str
    train: np.ndarray  # generation 0's training set, (n, d)
    pool: np.ndarray  # unseen human items, for fresh data
    holdout: np.ndarray
    # reference distribution as a mixture: weights (K,), means (K, d), covariances (K, d, d)
    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    # the linreg and categorical theory families' truth (corpora 'linear' and 'zipf')
    w_true: np.ndarray | None = None  # the regression's true coefficients
    noise: float | None = None  # its label noise sigma
    probs: np.ndarray | None = None  # the true token distribution


LINEAR_NOISE = 1.0
ZIPF_BETA = 1.5


def _draw(weights, means, covs, n, rng) -> np.ndarray:
    comp = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1]))
    chol = np.linalg.cholesky(covs)
    return means[comp] + np.einsum("nij,nj->ni", chol[comp], z)


def build_numeric_corpus(source: str, *, n_train: int, dim: int, n_pool: int, n_holdout: int, split_seed: int,
                         family: str = "gaussian", n_types: int | None = None) -> NumericCorpus:
    rng = np.random.default_rng(split_seed)
    wanted = {"linreg": "linear", "categorical": "zipf"}.get(family)
    if wanted is not None and source.split(":")[0] != wanted:
        raise UserError(f"--corpus {source}: the {family} family learns from the '{wanted}' corpus"
                        + (" ('zipf' or 'zipf:BETA', e.g. zipf:1.5)" if wanted == "zipf" else "") + ".")
    if wanted is None and source.split(":")[0] in ("linear", "zipf"):
        raise UserError(f"--corpus {source}: that corpus is for --family {'linreg' if source.startswith('linear') else 'categorical'}.")
    sizes = (n_train, n_pool, n_holdout)
    if source == "linear":
        return _linear(dim, sizes, rng)
    if source.split(":")[0] == "zipf":
        return _zipf(source, n_types or 1000, sizes, rng)
    if source == "normal":
        w, mu, cov = np.ones(1), np.zeros((1, dim)), np.eye(dim)[None]
    elif source == "mixture":
        w, mu, cov = np.array([0.5, 0.5]), np.array([[-2.0], [2.0]]), np.ones((2, 1, 1))
    else:
        return _from_file(Path(source), n_train, split_seed)
    total = n_train + n_pool + n_holdout
    x = _draw(w, mu, cov, total, rng)
    return NumericCorpus(source, x[:n_train], x[n_train : n_train + n_pool], x[n_train + n_pool :], w, mu, cov)


def _split(x: np.ndarray, sizes: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, _ = sizes
    return x[:a], x[a:a + b], x[a + b:]


def _linear(dim: int, sizes, rng) -> NumericCorpus:
    """Rows (x, y): x ~ N(0, I_d), y = x . w* + N(0, sigma^2), w* ~ N(0, I_d / d) (Gerstgrasser et al.)."""
    w = rng.standard_normal(dim) / np.sqrt(dim)
    x = rng.standard_normal((sum(sizes), dim))
    rows = np.column_stack([x, x @ w + LINEAR_NOISE * rng.standard_normal(len(x))])
    train, pool, hold = _split(rows, sizes)
    mean, cov = rows.mean(0, keepdims=True), np.atleast_2d(np.cov(rows, rowvar=False))[None]
    return NumericCorpus("linear", train, pool, hold, np.ones(1), mean, cov, w_true=w, noise=LINEAR_NOISE)


def _zipf(source: str, n_types: int, sizes, rng) -> NumericCorpus:
    """Tokens with Zipf(beta) frequencies over ``n_types`` types (Dohmatob et al.); ``zipf:BETA``."""
    from collapselab.models.zipf import ZipfSource

    _, _, beta_text = source.partition(":")
    try:
        beta = float(beta_text) if beta_text else ZIPF_BETA
    except ValueError:
        beta = -1.0
    if not beta > 0:
        raise UserError(f"--corpus {source}: write zipf or zipf:BETA with an exponent BETA > 0, e.g. zipf:1.5.")
    z = ZipfSource(n_types, beta)
    tokens = z.sample(sum(sizes), rng=rng)
    train, pool, hold = _split(tokens, sizes)
    p = z.probs
    mean = np.array([[p @ np.arange(n_types)]])
    var = p @ (np.arange(n_types) - mean[0, 0]) ** 2
    return NumericCorpus(f"zipf:{beta:g}", train, pool, hold, np.ones(1), mean, np.array([[[var]]]), probs=p)


def read_npy(path: Path) -> np.ndarray:
    """A user's ``.npy`` array (never pickled objects), or one clear error naming the file."""
    if not path.is_file():
        raise UserError(f"{path}: no such file. Pass an existing .npy array with --corpus.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e}). Save it with numpy.save.") from None


def _from_file(path: Path, n_train: int, split_seed: int) -> NumericCorpus:
    if path.suffix.lower() != ".npy":
        raise UserError(f"{path}: the gaussian and gmm families read 'normal', 'mixture' or a .npy array of shape (n, d); got {path.suffix or 'no suffix'}.")
    x = read_npy(path)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 3 or not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise UserError(f"{path}: need a finite numeric array of shape (n, d) with n >= 3; got shape {x.shape}, dtype {x.dtype}.")
    x = x.astype(np.float64)[np.random.default_rng(split_seed).permutation(len(x))]
    n_hold = max(1, len(x) // 10)
    rest = x[n_hold:]
    n = min(n_train, len(rest))
    mu = x.mean(axis=0, keepdims=True)
    cov = np.atleast_2d(np.cov(x, rowvar=False, bias=True))[None]
    return NumericCorpus(path.name, rest[:n], rest[n:], x[:n_hold], np.ones(1), mu, cov)
