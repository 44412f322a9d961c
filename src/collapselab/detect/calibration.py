"""Calibration on held-out human text, evaluation, and prevalence correction (Rogan–Gladen).

Thresholds
----------
An item is *flagged* when its score is strictly greater than the threshold.
:func:`threshold_at_fpr` picks, from human scores only, the smallest threshold among the sample's
order statistics that flags at most ``floor(fpr * n)`` of them, so the empirical false-positive
rate on the calibration set is ``<= fpr`` (ties can only lower it); on independent human text it
is ``fpr`` up to sampling error (about ``sqrt(fpr / n)``).

Evaluation
----------
:func:`evaluate` reports AUROC (``sklearn.metrics.roc_auc_score``, synthetic = positive) and the
true-positive rate at 0.1 %, 1 % and 5 % FPR, each with the threshold set on the same human
scores, as the detection literature reports it. TPR at 0.1 % needs >= 1000 human items to mean
anything (below that it is the TPR at FPR 0); ``n_human`` is reported so a reader can tell.

Prevalence (Rogan & Gladen 1978)
--------------------------------
If a share ``q`` of a corpus is flagged by a detector with true-positive rate ``tpr``
(sensitivity) and false-positive rate ``fpr`` (1 - specificity ``spec``), the synthetic share is::

    p = (q + spec - 1) / (tpr + spec - 1) = (q - fpr) / (tpr - fpr)

clipped to [0, 1]. 95 % interval, ``method="delta"``: with ``q``, ``tpr`` and ``fpr`` estimated
from ``n``, ``n_tpr`` and ``n_fpr`` independent items (binomial variances ``x (1 - x) / n``; a
rate whose count is not given is treated as known)::

    Var(p) = [Var(q) + p^2 Var(tpr) + (1 - p)^2 Var(fpr)] / (tpr - fpr)^2
    CI = p -/+ 1.96 sqrt(Var(p)), clipped to [0, 1]

``method="exact"`` (the default): an exact (Clopper–Pearson) interval for each rate that was
estimated (``q`` from ``n`` items, and ``tpr``, ``fpr`` when ``n_tpr``, ``n_fpr`` are given), each at
level ``level ** (1 / m)`` for ``m`` estimated rates, so that all hold at once with probability at
least ``level`` (they are independent); the correction is monotone in each rate (up in ``q``, down in
``tpr`` and ``fpr`` between ``fpr`` and ``tpr``), so its interval is the corners::

    low  = clip((q_lo - fpr_hi) / (tpr_hi - fpr_hi)),   high = clip((q_hi - fpr_lo) / (tpr_lo - fpr_lo))

Conservative (coverage >= ``level``), and right at the edges where the normal approximation is not:
40 documents with none flagged give ``q`` in [0, 8.8 %], not [0, 0].

``method="delta"``: the normal approximation above; ``method="bootstrap"``: parametric bootstrap
with the passed ``rng`` (q, tpr, fpr redrawn as binomial shares, the estimate recomputed, the 2.5 %
and 97.5 % quantiles taken). Both give an interval of width 0 when nothing (or everything) is
flagged, and the delta method when the measured fpr is 0: use them only with many items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


FPRS = (0.001, 0.01, 0.05)


def _clean(scores) -> np.ndarray:
    """Scores as float64; NaN (an item a detector could not score) counts as least synthetic."""
    s = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(s), -np.inf, s)


def auroc(scores_human, scores_synthetic) -> float:
    from sklearn.metrics import roc_auc_score

    h, s = _clean(scores_human), _clean(scores_synthetic)
    y = np.r_[np.zeros(len(h)), np.ones(len(s))]
    x = np.r_[h, s]
    x = np.where(np.isinf(x), np.sign(x) * np.finfo(np.float64).max, x)
    return float(roc_auc_score(y, x))


def threshold_at_fpr(scores_human, fpr: float) -> float:
    """Threshold ``t`` with ``mean(scores_human > t) <= fpr`` (flag = score > t); see the module."""
    h = np.sort(_clean(scores_human))[::-1]
    if len(h) == 0:
        raise ValueError("threshold_at_fpr needs at least one human score")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    k = int(np.floor(fpr * len(h) + 1e-9))  # at most k human items may lie above
    return float(h[min(k, len(h) - 1)])


def rate_above(scores, threshold: float) -> float:
    s = _clean(scores)
    return float(np.mean(s > threshold)) if len(s) else float("nan")


def tpr_at_fpr(scores_human, scores_synthetic, fpr: float) -> float:
    return rate_above(scores_synthetic, threshold_at_fpr(scores_human, fpr))


def _label(fpr: float) -> str:
    return f"tpr@{fpr * 100:g}%"


def evaluate(scores_human, scores_synthetic, fprs=FPRS) -> dict:
    """``{"auroc", "tpr@0.1%", "tpr@1%", "tpr@5%", "n_human", "n_synthetic"}``."""
    out = {"auroc": auroc(scores_human, scores_synthetic)}
    for f in fprs:
        out[_label(f)] = tpr_at_fpr(scores_human, scores_synthetic, f)
    out["n_human"] = int(len(scores_human))
    out["n_synthetic"] = int(len(scores_synthetic))
    return out


def evaluate_split(scores_human, scores_synthetic, fprs=FPRS, *, rng: np.random.Generator) -> dict:
    """:func:`evaluate` with no threshold judged on the items it was set on: the human items are
    split at random (``rng``) into halves A and B; each threshold is set on A, its TPR measured on
    the synthetic items and its realised FPR on B. AUROC (no threshold) uses every item.
    ``{"auroc", "tpr@1%", "fpr@1%", ..., "n_human", "n_synthetic"}``."""
    h = np.asarray(scores_human, dtype=np.float64)
    perm = rng.permutation(len(h))
    a, b = h[perm[: len(h) // 2]], h[perm[len(h) // 2:]]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("evaluate_split needs at least two human scores")
    out = {"auroc": auroc(h, scores_synthetic)}
    for f in fprs:
        t = threshold_at_fpr(a, f)
        out[_label(f)] = rate_above(scores_synthetic, t)
        out["fpr@" + _label(f)[4:]] = rate_above(b, t)
    out["n_human"] = int(len(h))
    out["n_synthetic"] = int(len(scores_synthetic))
    return out


@dataclass(frozen=True)
class Prevalence:
    estimate: float  # corrected synthetic share
    low: float  # 95 % interval
    high: float
    flagged_share: float  # raw q
    method: str


def binomial_interval(share: float, n: int | None, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson interval of a binomial rate observed as ``share`` of ``n`` trials (``n`` None:
    the rate is known, the interval is the point). Exact: 0 successes give [0, 1 - (a/2)^(1/n)]."""
    if n is None:
        return share, share
    from scipy.stats import beta

    if n < 1:
        raise ValueError(f"a rate needs at least one trial, got n={n}")
    k = int(round(share * n))
    a = 1 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def rogan_gladen(
    flagged_share: float,
    tpr: float,
    fpr: float,
    *,
    n: int | None = None,
    n_tpr: int | None = None,
    n_fpr: int | None = None,
    method: str = "exact",
    rng: np.random.Generator | None = None,
    n_boot: int = 4000,
    level: float = 0.95,
) -> Prevalence:
    """Synthetic share corrected for the detector's tpr and fpr, with a CI (see the module)."""
    q, t, f = float(flagged_share), float(tpr), float(fpr)
    if not t > f:
        raise ValueError(f"the detector must have tpr > fpr to correct prevalence (tpr={t}, fpr={f})")

    def point(q, t, f):
        return np.clip((q - f) / (t - f), 0.0, 1.0)

    p = float(point(q, t, f))
    if method == "exact":
        rates = [(q, n), (t, n_tpr), (f, n_fpr)]
        each = level ** (1 / max(1, sum(m is not None for _, m in rates)))
        (q_lo, q_hi), (t_lo, t_hi), (f_lo, f_hi) = (binomial_interval(x, m, each) for x, m in rates)
        lo = float(point(q_lo, t_hi, f_hi)) if t_hi > f_hi else 0.0
        hi = float(point(q_hi, t_lo, f_lo)) if t_lo > f_lo else 1.0
    elif method == "delta":
        var = lambda x, m: 0.0 if m is None else x * (1 - x) / m  # noqa: E731
        from scipy.stats import norm

        zc = float(norm.ppf(0.5 + level / 2))
        p_raw = (q - f) / (t - f)
        sd = np.sqrt(var(q, n) + p_raw**2 * var(t, n_tpr) + (1 - p_raw) ** 2 * var(f, n_fpr)) / (t - f)
        lo, hi = float(np.clip(p_raw - zc * sd, 0, 1)), float(np.clip(p_raw + zc * sd, 0, 1))
    elif method == "bootstrap":
        if rng is None:
            raise ValueError("method='bootstrap' needs rng")
        draw = lambda x, m: x if m is None else rng.binomial(m, x, size=n_boot) / m  # noqa: E731
        qb, tb, fb = draw(q, n), draw(t, n_tpr), draw(f, n_fpr)
        ok = np.broadcast_to(tb > fb, (n_boot,))
        pb = point(np.broadcast_to(qb, (n_boot,))[ok], np.broadcast_to(tb, (n_boot,))[ok], np.broadcast_to(fb, (n_boot,))[ok])
        a = (1 - level) / 2
        lo, hi = (float(v) for v in np.quantile(pb, [a, 1 - a]))
    else:
        raise ValueError(f"method must be 'exact', 'delta' or 'bootstrap', got {method!r}")
    return Prevalence(p, lo, hi, q, method)


class Calibrated:
    """A detector with a threshold for a target false-positive rate, and its measured rates.

    ``fit(human, synthetic=None, human_check=None)``: the threshold comes from ``human`` (held-out
    human text); ``tpr_`` is measured on ``synthetic`` (NaN without it: a threshold needs no
    synthetic text, and TPR means something only on text the detector never learnt from); ``fpr_``
    on ``human_check`` (independent human text) when given, else it is the calibration set's
    empirical rate (``<= fpr``). These are the rates :meth:`prevalence` corrects with, so measure
    them on text like the corpus to be scanned.
    """

    def __init__(self, detector, *, fpr: float = 0.01) -> None:
        self.detector = detector
        self.fpr = fpr

    def fit(self, human, synthetic=None, *, human_check=None, rng=None) -> "Calibrated":
        sh = self.detector.score(human)
        self.threshold_ = threshold_at_fpr(sh, self.fpr)
        self.n_fpr_ = len(sh)
        self.fpr_ = rate_above(sh, self.threshold_)
        if human_check is not None:
            sc = self.detector.score(human_check)
            self.fpr_, self.n_fpr_ = rate_above(sc, self.threshold_), len(sc)
        if synthetic is None:
            self.tpr_, self.n_tpr_ = float("nan"), 0
            return self
        ss = self.detector.score(synthetic)
        self.tpr_, self.n_tpr_ = rate_above(ss, self.threshold_), len(ss)
        return self

    def score(self, texts) -> np.ndarray:
        return self.detector.score(texts)

    def flag(self, texts) -> np.ndarray:
        """Boolean per item: score above the calibrated threshold."""
        return _clean(self.detector.score(texts)) > self.threshold_

    def prevalence(self, texts, *, method: str = "exact", rng=None) -> Prevalence:
        """Estimated synthetic share of ``texts`` with a 95 % CI (Rogan–Gladen)."""
        flags = self.flag(texts)
        return rogan_gladen(float(flags.mean()), self.tpr_, self.fpr_, n=len(flags),
                            n_tpr=self.n_tpr_, n_fpr=self.n_fpr_, method=method, rng=rng)
