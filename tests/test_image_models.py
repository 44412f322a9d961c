"""The image families (gmm on PCA features, vae, ddpm) on scikit-learn's digits, in tiny configs.

Each family must: return (n, 8, 8) float32 images in [0, 1]; give the same numbers for the same
seed, bit for bit; lower its training loss; sample less diversely with ``bias`` < 1; score real
digits above uniform noise; and turn bad input into one UserError before any training.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from collapselab.errors import UserError
from collapselab.models.ddpm import DDPMModel
from collapselab.models.image_gmm import ImageGMMModel
from collapselab.models.vae import VAEModel

TINY = {
    "gmm": (ImageGMMModel, dict(n_components=4, pca_components=12)),
    "vae": (VAEModel, dict(latent_dim=4, hidden=32, epochs=8, batch_size=32, lr=3e-3)),
    "ddpm": (DDPMModel, dict(timesteps=20, hidden=64, layers=1, epochs=16, batch_size=32, lr=3e-3, ema=0.9)),
}
NEURAL = ["vae", "ddpm"]


def tiny(family: str, **changes):
    """An unfitted tiny model of ``family``, with ``changes`` to its hyper-parameters."""
    cls, params = TINY[family]
    return cls(**{**params, **changes})


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """400 training digits and 200 held-out ones, grey levels in [0, 1]."""
    from sklearn.datasets import load_digits

    x = (load_digits().images / 16).astype(np.float32)
    return x[:400], x[400:600]


@pytest.fixture(scope="module")
def fitted(digits) -> dict:
    """One fitted tiny model per family (seed 0), shared by the tests that only read it."""
    return {family: tiny(family).fit(digits[0], rng=np.random.default_rng(0)) for family in TINY}


@pytest.mark.parametrize("family", TINY)
def test_samples_are_images_in_the_unit_range(fitted, digits, family):
    model = fitted[family]
    x = model.sample(50, rng=np.random.default_rng(1))
    assert x.shape == (50, 8, 8) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    ll = model.log_likelihood(digits[1][:9])
    assert ll.shape == (9,) and np.isfinite(ll).all()


@pytest.mark.parametrize("family", TINY)
def test_same_seed_same_numbers(fitted, digits, family):
    twin = tiny(family).fit(digits[0], rng=np.random.default_rng(0))
    a = fitted[family].sample(20, rng=np.random.default_rng(5))
    assert np.array_equal(a, twin.sample(20, rng=np.random.default_rng(5)))
    assert np.array_equal(fitted[family].log_likelihood(digits[1]), twin.log_likelihood(digits[1]))
    assert not np.array_equal(a, twin.sample(20, rng=np.random.default_rng(6)))


@pytest.mark.parametrize("family", NEURAL)
def test_fitting_never_draws_from_torch_global_generator(digits, family):
    state = torch.random.get_rng_state()
    tiny(family, epochs=1).fit(digits[0][:64], rng=np.random.default_rng(0)).sample(4, rng=np.random.default_rng(0))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("family", NEURAL)
def test_training_lowers_the_loss(fitted, family):
    model = fitted[family]
    loss = model.loss_history_
    assert len(loss) == model.epochs * 13  # epochs of ceil(400 / 32) steps
    # VAE: 36 nats at step 0, 7.5 at the end; DDPM (velocity MSE): 0.90 at step 0, 0.50 at the end
    assert loss[-10:].mean() < loss[0] - 0.25 * abs(loss[0])


@pytest.mark.parametrize("family", TINY)
def test_bias_below_one_narrows_the_samples(fitted, digits, family):
    biased = tiny(family, bias=0.1).fit(digits[0], rng=np.random.default_rng(0))
    spread = {
        bias: model.sample(400, rng=np.random.default_rng(2)).reshape(400, -1).var(axis=0).sum()
        for bias, model in ((1.0, fitted[family]), (0.1, biased))
    }
    # total pixel variance at bias 0.1 / at 1: gmm 0.51, vae 0.12, ddpm 0.16
    assert spread[0.1] < 0.75 * spread[1.0]


@pytest.mark.parametrize("family", TINY)
def test_real_digits_score_above_noise(fitted, digits, family):
    noise = np.random.default_rng(3).random((200, 8, 8)).astype(np.float32)
    real = fitted[family].log_likelihood(digits[1])
    assert np.median(real) > fitted[family].log_likelihood(noise).max()


@pytest.mark.parametrize("family", NEURAL)
def test_an_image_scores_the_same_alone_or_in_a_batch(fitted, digits, family):
    batch = fitted[family].log_likelihood(digits[1][:10])
    alone = fitted[family].log_likelihood(digits[1][3:4])
    np.testing.assert_allclose(alone[0], batch[3], rtol=1e-5)


def test_gmm_density_is_the_exact_pixel_space_gaussian(digits):
    """One component: the model is N(m + W'mu, W' S W + s2 (I - W'W)) over all 64 pixels."""
    model = ImageGMMModel(n_components=1, pca_components=10).fit(digits[0], rng=np.random.default_rng(0))
    w, s2 = model.pca_.components_, model.noise_variance_
    _, mu, cov = model.gmm_.mixture()
    full = w.T @ cov[0] @ w + s2 * (np.eye(64) - w.T @ w)
    expected = multivariate_normal(model.pca_.mean_ + mu[0] @ w, full).logpdf(digits[1].reshape(-1, 64))
    np.testing.assert_allclose(model.log_likelihood(digits[1]), expected, rtol=1e-6)


def test_gmm_on_raw_pixels(digits):
    model = ImageGMMModel(n_components=2, pca_components=0).fit(digits[0], rng=np.random.default_rng(0))
    assert model.pca_ is None and model.sample(3, rng=np.random.default_rng(0)).shape == (3, 8, 8)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", TINY)
def test_wrong_shape_or_range_is_a_user_error(fitted, digits, family):
    x = digits[0]
    with pytest.raises(UserError, match=r"\(n, height, width\)"):
        tiny(family).fit(x.reshape(len(x), 64), rng=np.random.default_rng(0))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        tiny(family).fit(x * 16, rng=np.random.default_rng(0))
    with pytest.raises(UserError, match="fitted on 8x8"):
        fitted[family].log_likelihood(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(UserError, match="bias"):
        tiny(family, bias=0.0).fit(x, rng=np.random.default_rng(0))


def test_too_many_pca_components_is_a_user_error(digits):
    with pytest.raises(UserError, match="pca_components=65"):
        ImageGMMModel(pca_components=65).fit(digits[0], rng=np.random.default_rng(0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("family", NEURAL)
def test_cuda_without_a_gpu_is_a_user_error(digits, family):
    with pytest.raises(UserError, match="no CUDA GPU"):
        tiny(family, device="cuda").fit(digits[0], rng=np.random.default_rng(0))


@pytest.mark.parametrize("family", NEURAL)
def test_a_model_too_big_for_the_machine_is_refused_before_training(digits, family):
    huge = {"vae": VAEModel(hidden=1_000_000), "ddpm": DDPMModel(hidden=1_000_000)}[family]
    with pytest.raises(UserError, match=r"needs about [\d.]+ GiB") as err:
        huge.fit(digits[0], rng=np.random.default_rng(0))
    assert "hidden=1000000" in str(err.value)
    assert not hasattr(huge, "loss_history_")
