"""Image metrics on known cases, the digits classifier and its cache, the evaluator's row, the grid.

Closed forms are exact up to rounding (tolerances 1e-9); the classifier's bands (accuracy > 0.9,
FID ratios of 10x) sit far from what a working network gives (accuracy ~0.98) and from what a
broken one would (accuracy ~0.1, ratios ~1).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.linalg import sqrtm
from scipy.ndimage import gaussian_filter

from collapselab.corpus.images import build_image_corpus
from collapselab.metrics import images as im
from collapselab.metrics.images import class_entropy, frechet_distance, prdc, rare_class_share, sharpness
from collapselab.report.grid import save_grid


@pytest.fixture(scope="module")
def corpus():
    return build_image_corpus("digits", n_train=1000, n_pool=200, n_holdout=500, split_seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def evaluator(corpus, cache):
    """The evaluator as the loop builds it: trains the default classifier on train + pool."""
    from collapselab.metrics.image_suite import ImageEvaluator

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLLAPSELAB_CACHE", str(cache))
        return ImageEvaluator(corpus)


@pytest.fixture(scope="module")
def classifier(evaluator):
    return evaluator.classifier


def real_images(corpus):
    """What the default classifier trained on."""
    return np.concatenate([corpus.train, corpus.pool]), np.concatenate([corpus.train_labels, corpus.pool_labels])


def blur(images, sigma=1.0):
    return gaussian_filter(images, sigma=(0, sigma, sigma))


class LogLikelihood:
    """A stand-in model: every image scores -3 nats."""

    def log_likelihood(self, data):
        return np.full(len(data), -3.0)


# ----------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fid_closed_form_in_one_dimension():
    a = np.array([[0.0], [2.0]])  # mean 1, unbiased variance 2
    assert frechet_distance(a, a + 3.0) == pytest.approx(9.0, abs=1e-12)
    assert frechet_distance(a, 2.0 * a) == pytest.approx(1.0 + (np.sqrt(2) - np.sqrt(8)) ** 2, abs=1e-12)


def test_fid_matches_the_sqrtm_formula_and_survives_singular_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5)) + 1.0
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a + s_b - 2 * np.real(sqrtm(s_a @ s_b)))
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-9)
    a[:, 0] = b[:, 0] = 0.0  # a dead feature: both covariances singular
    with np.errstate(all="raise"):
        assert np.isfinite(frechet_distance(a, b)) and frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fid_on_pixels_two_halves_of_digits_close_noise_far(corpus):
    x = corpus.train.reshape(len(corpus.train), -1)
    noise = np.random.default_rng(0).random(x.shape)
    assert frechet_distance(x[::2], x[1::2]) * 20 < frechet_distance(x, noise)


# ----------------------------------------------------------------------------------------------
# precision, recall, density, coverage
# ----------------------------------------------------------------------------------------------


def test_prdc_of_a_set_with_itself_is_one():
    x = np.random.default_rng(0).normal(size=(400, 6))
    assert prdc(x, x, k=5) == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}, abs=1e-12)


def test_prdc_far_apart_sets_score_zero_and_a_narrow_fake_loses_recall():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 2))
    far = prdc(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    narrow = prdc(real, 0.2 * rng.normal(size=(500, 2)))  # the centre of the real cloud: faithful, not diverse
    assert narrow["precision"] > 0.95 and narrow["recall"] < 0.4 and narrow["coverage"] < 0.4


def test_prdc_is_the_same_in_small_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(300, 4)), rng.normal(size=(250, 4)) * 1.3
    whole = prdc(real, fake, k=3)
    monkeypatch.setattr(im, "CHUNK_BYTES", 8 * 300 * 7)  # blocks of 7 rows
    assert prdc(real, fake, k=3) == whole


# ----------------------------------------------------------------------------------------------
# class metrics and sharpness
# ----------------------------------------------------------------------------------------------


def test_class_entropy_uniform_one_single_zero_half():
    assert class_entropy(np.arange(100) % 10, 10) == pytest.approx(1.0, abs=1e-12)
    assert class_entropy(np.full(50, 3), 10) == 0.0
    assert class_entropy(np.array([0, 1, 0, 1]), 4) == pytest.approx(0.5, abs=1e-12)  # log 2 / log 4


def test_rare_class_share():
    assert rare_class_share(np.arange(100) % 10, 10) == pytest.approx(0.1)
    assert rare_class_share(np.arange(90) % 9, 10) == 0.0  # class 9 vanished
    assert rare_class_share(np.array([0, 0, 0, 1]), 2) == 0.25


def test_sharpness_known_value_and_blur_lowers_it(corpus):
    checker = (np.indices((10, 10)).sum(axis=0) % 2).astype(np.float64)[None]
    assert sharpness(checker) == pytest.approx(16.0)  # the Laplacian is +-4 on a checkerboard
    assert sharpness(np.full((3, 6, 6), 0.7)) == 0.0
    assert sharpness(blur(corpus.train)) < 0.5 * sharpness(corpus.train)


# ----------------------------------------------------------------------------------------------
# the classifier and its cache
# ----------------------------------------------------------------------------------------------


def test_classifier_accuracy_on_digits_holdout(classifier, corpus):
    assert classifier.accuracy_ > 0.9 and classifier.n_classes_ == 10
    f = classifier.features(corpus.holdout[:7])
    assert f.shape == (7, classifier.feature_dim) and f.dtype == np.float64
    assert classifier.predict(corpus.holdout[:7]).shape == (7,)


def test_classifier_features_separate_digits_from_noise(classifier, corpus):
    real = classifier.features(corpus.holdout)
    halves = frechet_distance(real[::2], real[1::2])
    noise = classifier.features(np.random.default_rng(0).random(corpus.holdout.shape).astype(np.float32))
    assert 10 * halves < frechet_distance(real, noise)


def test_cache_hit_returns_identical_features(classifier, corpus, cache, monkeypatch):
    from collapselab.metrics.image_features import FeatureClassifier

    monkeypatch.setenv("COLLAPSELAB_CACHE", str(cache))
    again = FeatureClassifier().fit(*real_images(corpus))
    assert again.from_cache_ and not classifier.from_cache_
    assert again.cache_path_ == classifier.cache_path_ and again.cache_path_.parent.parent == cache
    assert np.array_equal(again.features(corpus.holdout), classifier.features(corpus.holdout))
    other = FeatureClassifier(steps=5).fit(*real_images(corpus))  # other settings: another entry
    assert not other.from_cache_ and other.cache_path_ != classifier.cache_path_


def test_damaged_cache_file_is_retrained(corpus, tmp_path, monkeypatch):
    from collapselab.metrics.image_features import FeatureClassifier

    monkeypatch.setenv("COLLAPSELAB_CACHE", str(tmp_path))
    first = FeatureClassifier(steps=20).fit(corpus.train[:200], corpus.train_labels[:200])
    first.cache_path_.write_bytes(b"damaged")
    second = FeatureClassifier(steps=20).fit(corpus.train[:200], corpus.train_labels[:200])
    assert not second.from_cache_  # retrained, deterministically: the same network
    assert np.array_equal(first.features(corpus.holdout), second.features(corpus.holdout))


def test_unlabelled_images_learn_kmeans_clusters(corpus, tmp_path, monkeypatch):
    from collapselab.metrics.image_features import FeatureClassifier

    monkeypatch.setenv("COLLAPSELAB_CACHE", str(tmp_path))
    clf = FeatureClassifier(steps=150).fit(corpus.train[:500], None, holdout=corpus.holdout)
    assert clf.n_classes_ == 10 and clf.centers_.shape == (10, 64)
    assert clf.accuracy_ > 0.7  # agreement with the nearest k-means cluster (chance: ~0.1)


# ----------------------------------------------------------------------------------------------
# the evaluator
# ----------------------------------------------------------------------------------------------

ROW_KEYS = {"n_items", "fid", "precision", "recall", "density", "coverage", "class_entropy", "rare_class_share",
            "sharpness", "sharpness_real", "classifier_accuracy", "nll_holdout"}


def test_evaluator_row_real_vs_blurred_vs_one_class(corpus, evaluator, classifier):
    ev = evaluator
    real_row, per_item = ev.evaluate(LogLikelihood(), corpus.train)
    assert set(real_row) == ROW_KEYS and all(isinstance(v, float) for v in real_row.values())
    assert per_item["label"].shape == (1000,)
    assert real_row["n_items"] == 1000.0 and real_row["nll_holdout"] == 3.0
    assert real_row["classifier_accuracy"] == classifier.accuracy_
    assert real_row["precision"] > 0.8 and real_row["recall"] > 0.8 and real_row["class_entropy"] > 0.98
    assert real_row["sharpness"] == pytest.approx(real_row["sharpness_real"], rel=0.1)

    blurred, _ = ev.evaluate(LogLikelihood(), blur(corpus.train).astype(np.float32))
    assert blurred["fid"] > 3 * real_row["fid"] and blurred["sharpness"] < 0.5 * real_row["sharpness"]

    one_class = corpus.train[corpus.train_labels == 3]
    narrow, labels = ev.evaluate(LogLikelihood(), one_class)
    assert narrow["class_entropy"] < 0.2 and narrow["rare_class_share"] == 0.0 and narrow["recall"] < 0.3
    assert np.mean(labels["label"] == 3) > 0.9


def test_evaluator_rejects_images_of_another_size(evaluator):
    with pytest.raises(ValueError, match="cannot be compared"):
        evaluator.evaluate(LogLikelihood(), np.zeros((10, 28, 28), np.float32))


# ----------------------------------------------------------------------------------------------
# the PNG grid
# ----------------------------------------------------------------------------------------------


def test_grid_layout_scale_and_pixels(tmp_path):
    x = np.zeros((10, 8, 8), np.float32)
    x[3] = 1.0  # the fourth image: white; row 0, column 3
    path = save_grid(x, tmp_path / "g" / "grid.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "L"
        a = np.asarray(img)
    # 4 columns, 3 rows of 32x32 cells (8 px x 4), 1-px lines around and between
    assert a.shape == (3 * 33 + 1, 4 * 33 + 1)
    assert (a[1:33, 1 + 3 * 33 : 33 + 3 * 33] == 255).all() and (a[1:33, 1:33] == 0).all()
    assert (a[0] == 128).all() and (a[:, 33] == 128).all()
    assert (a[67:, 67:] == 128).all()  # the two empty cells of the last row
    assert not list(path.parent.glob(".*.tmp"))


def test_grid_explicit_columns_and_scale(tmp_path):
    x = np.random.default_rng(0).random((6, 28, 20))
    with Image.open(save_grid(x, tmp_path / "g.png", ncols=6, scale=2)) as img:
        assert img.size == (6 * 41 + 1, 56 + 2)
