"""Detectors (collapselab.detect): separation on real text, calibration, prevalence correction.

The real-data set-up is ``collapselab.detect.evaluation.setup``: human State of the Union
sentences vs samples of a 3-gram model trained on other SOTU sentences (fixed seed). Bands sit
well inside the measured values (docs/detect.md) so they do not flake.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect import (
    BinocularsDetector,
    Calibrated,
    ClassifierDetector,
    PerplexityDetector,
    WatermarkDetector,
    as_sequences,
    chunk,
    evaluate,
    rogan_gladen,
    threshold_at_fpr,
)


@pytest.fixture(scope="module")
def sotu():
    from collapselab.detect.evaluation import setup

    return setup(seed=0, n=5000)


def _auroc(det, d, size, synthetic="test_s"):
    return evaluate(det.score(chunk(d["test_h"], size)), det.score(chunk(d[synthetic], size)))


# ------------------------------------------------------------------ detectors on real text
def test_watermark_detector_separates(sotu):
    det = WatermarkDetector(sotu["watermark"])
    sent = _auroc(det, sotu, 1, "test_w")
    chunks = _auroc(det, sotu, 10, "test_w")  # ~300 tokens per chunk
    assert sent["auroc"] > 0.95  # measured 0.978
    assert chunks["auroc"] > 0.99 and chunks["tpr@1%"] > 0.95  # measured 1.0 / 1.0
    # human text is ~N(0, 1) under the key
    z = det.score(sotu["test_h"])
    assert abs(z.mean()) < 0.1 and 0.85 < z.std() < 1.15


def test_perplexity_detector_beats_chance_on_chunks(sotu):
    c = lambda s: chunk(s, 10)  # noqa: E731
    det = PerplexityDetector(sotu["ref3"]).fit(c(sotu["train_h"]), c(sotu["train_s"]))
    assert det.direction_ == 1.0  # n-gram samples are *higher* perplexity under a human reference here
    assert _auroc(det, sotu, 10)["auroc"] > 0.55  # measured 0.608 (sentence level: chance, 0.49)


@pytest.mark.parametrize("performer", ["ref2", "ref3_b"])
def test_binoculars_detector_beats_chance(sotu, performer):
    det = BinocularsDetector(sotu["ref3"], sotu[performer]).fit(sotu["train_h"], sotu["train_s"])
    assert _auroc(det, sotu, 1)["auroc"] > 0.53  # measured 0.557 / 0.558
    c = lambda s: chunk(s, 10)  # noqa: E731
    det = BinocularsDetector(sotu["ref3"], sotu[performer]).fit(c(sotu["train_h"]), c(sotu["train_s"]))
    assert _auroc(det, sotu, 10)["auroc"] > 0.6  # measured 0.666 / 0.651


def test_binoculars_difference_mode_and_fixed_direction(sotu):
    h = sotu["test_h"].take(np.arange(50))
    ratio = BinocularsDetector(sotu["ref3"], sotu["ref2"], direction=-1)
    diff = BinocularsDetector(sotu["ref3"], sotu["ref2"], mode="difference", direction=1)
    assert np.allclose(ratio.score(h), -ratio.raw_score(h))
    from collapselab.detect.likelihood import log_perplexity

    assert np.allclose(diff.score(h), log_perplexity(sotu["ref3"], h) - log_perplexity(sotu["ref2"], h))
    with pytest.raises(RuntimeError):
        BinocularsDetector(sotu["ref3"], sotu["ref2"]).score(h)


def test_classifier_detector_beats_chance_and_is_deterministic(sotu):
    det = ClassifierDetector().fit(sotu["train_h"], sotu["train_s"], rng=np.random.default_rng(0))
    assert _auroc(det, sotu, 1)["auroc"] > 0.58  # measured 0.623
    again = ClassifierDetector().fit(sotu["train_h"], sotu["train_s"], rng=np.random.default_rng(0))
    h = sotu["test_h"].take(np.arange(200))
    assert np.array_equal(det.score(h), again.score(h))
    # scoring an item does not depend on its batch
    assert np.allclose(det.score(h.take(np.arange(5, 10))), det.score(h)[5:10])
    with pytest.raises(RuntimeError):
        ClassifierDetector().score(h)


def test_strings_with_a_vocabulary(sotu):
    vocab = sotu["corpus"].vocab
    h = sotu["test_h"].take(np.arange(20))
    det = WatermarkDetector(sotu["watermark"], vocab=vocab)
    texts = vocab.decode(h)
    assert np.allclose(det.score(texts), det.score(vocab.encode([t.split() for t in texts])))
    with pytest.raises(TypeError):
        as_sequences(texts)


def test_chunk_regroups_items():
    s = TokenSequences.from_lists([[1], [2, 3], [], [4, 5, 6], [7]])
    assert chunk(s, 1) == s
    assert chunk(s, 2).to_lists() == [[1, 2, 3], [4, 5, 6], [7]]
    assert chunk(s, 10).to_lists() == [[1, 2, 3, 4, 5, 6, 7]]


# ------------------------------------------------------------------ calibration and evaluation
def test_threshold_at_fpr_controls_the_false_positive_rate():
    rng = np.random.default_rng(3)
    for n, fpr in [(1000, 0.01), (5000, 0.001), (2000, 0.05), (777, 0.013)]:
        cal = rng.normal(size=n)
        t = threshold_at_fpr(cal, fpr)
        assert np.mean(cal > t) <= fpr  # on the calibration set: never above target
        fresh = rng.normal(size=400_000)
        assert abs(np.mean(fresh > t) - fpr) < 4 * np.sqrt(fpr / n) + 1e-3  # ≈ target elsewhere
    ties = np.zeros(100)
    assert np.mean(ties > threshold_at_fpr(ties, 0.05)) == 0.0


def test_watermark_threshold_transfers_to_independent_human_text(sotu):
    det = WatermarkDetector(sotu["watermark"])
    cal = Calibrated(det, fpr=0.05).fit(sotu["train_h"], sotu["test_w"], human_check=sotu["test_h"])
    assert cal.fpr_ < 0.075 and cal.tpr_ > 0.8  # 5000 held-out sentences; measured tpr 0.88


def test_evaluate_on_separated_scores():
    r = evaluate(np.arange(1000.0), np.arange(1000.0) + 5000)
    assert r["auroc"] == 1.0 and r["tpr@0.1%"] == r["tpr@1%"] == r["tpr@5%"] == 1.0
    r = evaluate(np.zeros(100), np.zeros(100))
    assert r["auroc"] == 0.5 and r["tpr@5%"] == 0.0
    assert set(r) == {"auroc", "tpr@0.1%", "tpr@1%", "tpr@5%", "n_human", "n_synthetic"}


# ------------------------------------------------------------------ prevalence (Rogan-Gladen)
SIMS = 400  # simulated surveys per method: the coverage band below is derived from it


@pytest.mark.parametrize("method", ["exact", "delta", "bootstrap"])
def test_rogan_gladen_recovers_a_known_prevalence(method):
    rng = np.random.default_rng(7)
    p, tpr, fpr, n, n_cal = 0.3, 0.8, 0.05, 20_000, 5_000
    covered = 0
    for _ in range(SIMS):
        tpr_hat = rng.binomial(n_cal, tpr) / n_cal
        fpr_hat = rng.binomial(n_cal, fpr) / n_cal
        k = rng.binomial(n, p)
        flagged = rng.binomial(k, tpr) + rng.binomial(n - k, fpr)
        est = rogan_gladen(flagged / n, tpr_hat, fpr_hat, n=n, n_tpr=n_cal, n_fpr=n_cal,
                           method=method, rng=rng, n_boot=1000)
        assert abs(est.estimate - p) < 0.03
        covered += est.low <= p <= est.high
    # nominal 95 %: the share covered is within 4 binomial standard errors of it (about 90.6-99.4 %);
    # the exact method is conservative by construction, so only its lower side is bounded
    se = np.sqrt(0.95 * 0.05 / SIMS)
    assert covered / SIMS >= 0.95 - 4 * se
    if method != "exact":
        assert covered / SIMS <= 0.95 + 4 * se
    assert abs(rogan_gladen(0.05, 0.8, 0.05).estimate) < 1e-12  # only false positives: zero
    with pytest.raises(ValueError):
        rogan_gladen(0.5, 0.1, 0.2)


@pytest.mark.parametrize("k", [0, 1, 17, 39, 40])
def test_exact_interval_at_the_edges_and_between(k):
    """At 0 and at n flagged the interval is not a point; everywhere it is scipy's Clopper-Pearson."""
    from scipy.stats import binomtest

    from collapselab.detect.calibration import binomial_interval

    n = 40
    lo, hi = binomial_interval(k / n, n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    assert lo <= k / n <= hi and hi - lo > 0.05
    est = rogan_gladen(k / n, 1.0, 0.0, n=n)  # a perfect detector: the correction is the identity
    assert (est.low, est.high) == pytest.approx((lo, hi), abs=1e-12)
    if k == 0:  # none of 40 flagged: up to 1 - 0.025^(1/40) = 8.8 %, not "0.00%-0.00%"
        assert est.low == 0 and est.high == pytest.approx(1 - 0.025 ** (1 / 40), rel=1e-9)
    if k == n:
        assert est.high == 1 and est.low == pytest.approx(0.025 ** (1 / 40), rel=1e-9)


def test_exact_correction_takes_the_corners_of_the_rates_and_clips():
    from collapselab.detect.calibration import binomial_interval

    level = 0.95 ** (1 / 3)  # three estimated rates, independent: all hold at once with 95 %
    q, t, f = (binomial_interval(x, m, level) for x, m in ((0.3, 2000), (0.8, 500), (0.05, 500)))
    est = rogan_gladen(0.3, 0.8, 0.05, n=2000, n_tpr=500, n_fpr=500)
    assert est.low == pytest.approx((q[0] - f[1]) / (t[1] - f[1]), rel=1e-12)
    assert est.high == pytest.approx((q[1] - f[0]) / (t[0] - f[0]), rel=1e-12)
    assert est.low < est.estimate < est.high
    clipped = rogan_gladen(0.02, 0.8, 0.05, n=100)  # fewer flagged than the false-positive rate
    assert clipped.estimate == 0.0 and clipped.low == 0.0 and 0 < clipped.high < 1


def test_calibrated_prevalence_on_a_real_mixture(sotu):
    det = WatermarkDetector(sotu["watermark"])
    human, marked = sotu["test_h"], sotu["test_w"]
    cal = Calibrated(det, fpr=0.01).fit(sotu["train_h"], marked.take(np.arange(2500)))
    # 30 % watermarked sentences among 5000, none of them seen at calibration
    rng = np.random.default_rng(1)
    mix = TokenSequences.concat([human.take(rng.choice(len(human), 3500, replace=False)),
                                 marked.take(np.arange(2500, 4000))])
    est = cal.prevalence(mix)
    assert est.low <= 0.3 <= est.high and abs(est.estimate - 0.3) < 0.04
    assert est.flagged_share < 0.3  # the raw share is biased low: tpr < 1
    b1 = cal.prevalence(mix, method="bootstrap", rng=np.random.default_rng(0))
    b2 = cal.prevalence(mix, method="bootstrap", rng=np.random.default_rng(0))
    assert b1 == b2  # deterministic under the rng
