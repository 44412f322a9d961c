"""Image metrics as pure functions of arrays (features, labels, grey-level images).

- ``frechet_distance``: FID's formula on any two feature sets, the squared Wasserstein-2
  distance between Gaussians fitted to them: ``|m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)``.
  Both square roots are taken by symmetric eigendecomposition with eigenvalues clipped at 0: the
  covariances are symmetric positive semi-definite and often singular (dead ReLU units, blank
  border pixels), where ``scipy.linalg.sqrtm`` warns, loses accuracy and leaves imaginary parts.
- ``prdc``: precision, recall, density and coverage of Naeem et al. (2020), "Reliable fidelity and
  diversity metrics for generative models", with k-nearest-neighbour balls (Euclidean).
- ``class_entropy`` and ``rare_class_share``: how evenly the generated images spread over classes.
- ``sharpness``: the variance of the Laplacian, the standard blur measure.
"""

from __future__ import annotations

import numpy as np

CHUNK_BYTES = 64 * 2**20  # the largest block of pairwise distances held at once


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(s)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two (n, d) feature sets (means and unbiased covariances; needs n >= 2 each)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    r_b = _psd_sqrt(s_b)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r_b @ s_a @ r_b), 0.0, None)).sum()
    mean_term = np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2)
    return float(max(mean_term + np.trace(s_a) + np.trace(s_b) - 2.0 * cross, 0.0))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T), 0.0)


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, CHUNK_BYTES // (8 * max(n_cols, 1)))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def knn_radii_sq(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each row of ``x`` to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"k-nearest-neighbour balls need more than k={k} points, got {len(x)}")
    out = np.empty(len(x))
    for rows in _row_blocks(len(x), len(x)):
        out[rows] = np.partition(_sq_dists(x[rows], x), k, axis=1)[:, k]  # index 0 is the point itself
    return out


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage of ``fake`` against ``real`` (both (n, d) features).

    precision: share of fakes inside some real k-NN ball; recall: share of reals inside some fake
    k-NN ball; density: the mean number of real balls that hold a fake, over k (about 1 for a
    set against itself); coverage: share of real balls that hold at least one fake. A set compared
    with itself scores 1 on all four (when no two points coincide). Distances come in blocks of
    :data:`CHUNK_BYTES`, so 10,000 x 10,000 fits in memory.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake = knn_radii_sq(real, k), knn_radii_sq(fake, k)
    in_real_balls = np.empty(len(fake))  # per fake: how many real balls hold it
    in_fake_ball = np.zeros(len(real), bool)  # per real: inside some fake ball
    nearest_fake = np.full(len(real), np.inf)
    for rows in _row_blocks(len(fake), len(real)):
        d = _sq_dists(fake[rows], real)  # (fakes in block, reals)
        in_real_balls[rows] = (d < r_real[None, :]).sum(axis=1)
        in_fake_ball |= (d < r_fake[rows, None]).any(axis=0)
        nearest_fake = np.minimum(nearest_fake, d.min(axis=0))
    return {
        "precision": float((in_real_balls > 0).mean()),
        "recall": float(in_fake_ball.mean()),
        "density": float(in_real_balls.mean() / k),
        "coverage": float((nearest_fake < r_real).mean()),
    }


def class_entropy(labels: np.ndarray, n_classes: int) -> float:
    """Entropy of the class distribution (natural log) over ``log(n_classes)``: 1 = uniform, 0 = one class."""
    if n_classes < 2:
        raise ValueError(f"class entropy needs n_classes >= 2, got {n_classes}")
    p = np.bincount(np.asarray(labels, np.int64), minlength=n_classes) / max(len(labels), 1)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(n_classes))


def rare_class_share(labels: np.ndarray, n_classes: int) -> float:
    """Share of the images in the least-generated class: 1/n_classes when balanced, 0 when a class vanished."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes)
    return float(counts.min() / max(counts.sum(), 1))


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Per image (n, h, w): the variance of the 4-neighbour Laplacian over the interior pixels."""
    x = np.asarray(images, np.float64)
    lap = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4.0 * x[:, 1:-1, 1:-1]
    return lap.var(axis=(1, 2))


def sharpness(images: np.ndarray) -> float:
    """Mean over images of the variance of the Laplacian: blurred images score lower."""
    return float(laplacian_variance(images).mean())
