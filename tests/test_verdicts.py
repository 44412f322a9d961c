"""The loop verdicts weigh the seeds: a still-rising curve is never "bounded" (issue 13)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collapselab.loop.policies import parse_policy
from collapselab.metrics.verdicts import mean_interval, paired_difference, trend, trend_of

GENS = np.arange(11)
DDPM = Path(__file__).resolve().parent.parent / "docs" / "data" / "repro_images_ddpm" / "ddpm-digits-loops.parquet"


def noisy(level, slope, sd, seeds, seed=0):
    """Curves level + slope * g + noise, one row per seed."""
    rng = np.random.default_rng(seed)
    return level + slope * GENS + rng.normal(0, sd, (seeds, len(GENS)))


def test_a_rising_curve_like_ddpm_fresh_is_not_bounded():
    # ddpm's fresh loop: FID 55.7 at generation 5, 81.8 at 10, seeds a few points apart
    curves = np.array([55.7 + 5.2 * (GENS - 5) + d for d in (-2.5, 0.4, 2.1)])
    curves[:, :5] = 12 + 9 * GENS[:5]  # the first half plays no part
    t = trend(curves, GENS)
    assert t.verdict == "still rising"
    assert t.slope.low > 0 and (t.first, t.last) == (5, 10)
    assert t.slope.mean == pytest.approx(5.2)


@pytest.mark.skipif(not DDPM.exists(), reason="ddpm's kept metrics are not in this checkout")
def test_ddpm_kept_metrics_are_still_rising():
    m = pd.read_parquet(DDPM)
    for policy in ("replace", "fresh:0.2", "anchor:0.2"):
        assert trend_of(m[m.policy == policy], "fid").verdict == "still rising", policy


def test_a_flat_noisy_curve_is_bounded():
    t = trend(noisy(30, 0.0, 0.5, seeds=5), GENS)
    assert t.verdict == "bounded"
    assert t.slope.low < 0 < t.slope.high
    assert t.level == pytest.approx(30, abs=0.5)


def test_a_falling_curve_is_bounded():
    assert trend(noisy(60, -1.0, 0.5, seeds=4), GENS).verdict == "bounded"


def test_too_few_seeds_or_too_much_noise_is_undetermined():
    assert trend(noisy(30, 0.0, 0.5, seeds=1), GENS).verdict == "undetermined"  # one seed: no standard error
    wild = trend(noisy(30, 0.0, 8.0, seeds=3), GENS)
    assert wild.verdict == "undetermined"
    assert wild.slope.low < 0 < wild.slope.high


def test_a_steady_rise_is_still_rising_not_bounded():
    # seeds climbing at 0.5 to 1.1 a generation on a level about 34: all agree, and faster than the tolerance allows
    t = trend(noisy(30, 0.5, 0.05, seeds=3) + 0.3 * np.arange(3)[:, None] * GENS, GENS)  # seeds climb at 0.5-1.1
    assert t.verdict == "still rising" and t.slope.low > 0
    assert 5 * t.slope.mean > 0.1 * 30  # ... yet drifts further than that at the rate the seeds allow
    # a negligible but certain drift (+0.02 a generation on 30) is bounded: the bound is on how far, not whether
    assert trend(noisy(30, 0.02, 0.01, seeds=3), GENS).verdict == "bounded"


def test_the_window_and_tolerance_are_honoured():
    curves = noisy(30, 0.0, 0.5, seeds=5)
    curves[:, 8:] += 20  # a jump late in the run
    assert trend(curves, GENS, start=0).first == 0
    assert trend(curves, GENS, start=8).verdict != "still rising"  # after the jump: flat again
    assert trend(noisy(30, 0.0, 0.5, seeds=5), GENS, tolerance=1e-6).verdict == "undetermined"
    with pytest.raises(ValueError, match="two generations"):
        trend(curves, GENS, start=10)


def test_trend_of_reads_a_metrics_frame():
    curves = noisy(30, 2.0, 0.3, seeds=3)
    m = pd.DataFrame([{"seed": s, "generation": g, "fid": curves[s, g]} for s in range(3) for g in GENS])
    assert trend_of(m.sample(frac=1, random_state=0), "fid") == trend(curves, GENS)


def test_intervals():
    i = mean_interval([1.0, 2.0, 3.0])
    assert i.mean == 2 and i.low == pytest.approx(2 - 4.302653 / np.sqrt(3)) and i.seeds == 3
    assert np.isnan(mean_interval([1.0]).low)
    d = paired_difference([10, 11, 12], [5, 5.5, 6])
    assert d.mean == pytest.approx(5.5) and d.low > 0


def _grid():
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location("mad_fresh_grid", bench / "mad_fresh_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(gen0, later, sd, seeds=3):
    """A fresh loop's metrics: FID gen0 at generation 0, then flat at ``later``, FID noise ``sd``."""
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"seed": s, "generation": g, "fid": (gen0 if g == 0 else later) + rng.normal(0, sd)}
                         for s in range(seeds) for g in GENS])


def test_admissibility_of_a_grid_cell():
    grid = _grid()
    assert grid.admissibility(_cell(20, 30, 0.5))["verdict"] == "not admissible"  # settles above the real-only model
    assert grid.admissibility(_cell(30, 20, 0.5))["verdict"] == "admissible"
    assert grid.admissibility(_cell(20, 21, 5.0))["verdict"] == "undetermined"
    climbing = _cell(30, 20, 0.1)
    climbing["fid"] += np.where(climbing.generation >= 5, 2.0 * (climbing.generation - 5), 0)  # below gen 0 but climbing
    assert grid.admissibility(climbing)["verdict"] == "undetermined"


def test_grid_threshold_and_exact_sizes():
    grid = _grid()
    assert grid.threshold({10: "admissible", 40: "undetermined", 160: "not admissible", 640: "not admissible"}) == (40, 160)
    assert grid.threshold({10: "not admissible", 40: "admissible"}) == (None, 10)
    assert grid.threshold({10: "admissible", 40: "undetermined"}) == (40, None)
    for n_r, n_s in ((40, 10), (80, 640), (120, 160), (7, 13)):
        c = grid.cell_config(n_r, n_s, 1.0, [0], 10, "digits")
        assert round(parse_policy(c["policies"][0]).fraction * c["samples"]) == n_r and c["train_items"] == n_r
        assert c["resample_data"] is True  # each seed its own digits, unless asked to share one split
    assert grid.cell_config(40, 10, 1.0, [0], 10, "digits", resample=False)["resample_data"] is False
