"""Verdicts on a loop's curves that weigh the seeds' spread: is a curve still rising, or has it settled?

A *curve* is one metric (FID, say) per seed and generation. :func:`trend` looks at the later
generations (by default the run's second half): each seed's curve gets its least-squares slope
there, and the slopes' mean over seeds, with its standard error and Student's t, gives a
confidence interval (95%, two-sided) for the slope per generation. Then:

- ``"bounded"``: the interval's upper end, times the window's span, is under ``tolerance`` (a
  tenth) of the curve's level (its mean over the window): even at the fastest rate the seeds allow,
  the curve moves by less than a tenth of its level over the window;
- ``"still rising"``: otherwise, if the interval's lower end is above 0: the seeds agree the curve
  still climbs, faster than that;
- ``"undetermined"``: neither (too few seeds, or too much noise, to tell).

One seed has no standard error, so its curve is always undetermined.

:func:`paired_difference` compares two quantities measured on the same seeds (a loop's limit and a
real-only model's distance, say) the same way: the mean per-seed difference and its interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

VERDICTS = ("bounded", "still rising", "undetermined")


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its two-sided t confidence interval (``low`` = ``high`` = nan for one seed)."""

    mean: float
    low: float
    high: float
    seeds: int

    def __str__(self) -> str:
        return f"{self.mean:+.2f} (95% CI {self.low:+.2f} to {self.high:+.2f}, {self.seeds} seeds)"


def mean_interval(values, confidence: float = 0.95) -> Interval:
    """Mean of per-seed ``values`` and its t interval (nan ends with fewer than two seeds)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return Interval(float(x.mean()) if n else float("nan"), float("nan"), float("nan"), n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half), n)


@dataclass(frozen=True)
class Trend:
    verdict: str  # one of VERDICTS
    slope: Interval  # per generation, over the window
    level: float  # the curve's mean over the window (seeds and generations)
    first: int  # the window: generations first..last
    last: int

    def describe(self) -> str:
        s = self.slope
        ci = f" (95% CI {s.low:+.2f} to {s.high:+.2f})" if s.seeds > 1 else ""
        return (f"slope over generations {self.first}-{self.last} {s.mean:+.2f} a generation{ci}, "
                f"{s.seeds} seed{'s' * (s.seeds != 1)}, level {self.level:.1f}: {self.verdict}")


def trend(curves, generations, *, start: int | None = None, tolerance: float = 0.1, confidence: float = 0.95) -> Trend:
    """The verdict on ``curves`` (seeds x generations; NaN-free) over generations ``start``..last
    (default: the second half, from ``last // 2``); see the module docstring."""
    y = np.atleast_2d(np.asarray(curves, dtype=float))
    g = np.asarray(generations, dtype=float)
    if y.shape[1] != len(g):
        raise ValueError(f"curves have {y.shape[1]} generations, generations lists {len(g)}")
    last = int(g.max())
    first = last // 2 if start is None else int(start)
    window = g >= first
    if window.sum() < 2:
        raise ValueError(f"a trend needs two generations or more; generations {first}-{last} hold {int(window.sum())}")
    x, yw = g[window], y[:, window]
    slopes = np.polyfit(x, yw.T, 1)[0]  # one least-squares slope per seed
    slope = mean_interval(slopes, confidence)
    level = float(yw.mean())
    if slope.seeds > 1 and slope.high * (x.max() - x.min()) < tolerance * abs(level):
        verdict = "bounded"
    elif slope.seeds > 1 and slope.low > 0:
        verdict = "still rising"
    else:
        verdict = "undetermined"
    return Trend(verdict, slope, level, first, last)


def trend_of(frame, metric: str = "fid", **kw) -> Trend:
    """:func:`trend` of ``metric`` in a metrics frame (columns seed, generation, ``metric``) of one loop."""
    wide = frame.pivot_table(index="seed", columns="generation", values=metric)
    return trend(wide.to_numpy(), wide.columns.to_numpy(), **kw)


def paired_difference(a, b, confidence: float = 0.95) -> Interval:
    """``a - b`` per seed (both indexed alike), its mean and t interval."""
    return mean_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), confidence)
