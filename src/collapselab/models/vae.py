"""A variational auto-encoder on images (PyTorch): MLP encoder and decoder, Gaussian decoder.

The decoder gives each pixel a mean in [0, 1] (a sigmoid) and one shared standard deviation
sigma, set to its maximum-likelihood value (the root mean squared error) on every batch while
training and on the whole training set at the end: the "optimal sigma" calibrated decoder of
Rybkin et al. (2021), which learns the balance between reconstruction and the KL term instead of
guessing it. Training minimises the negative ELBO, in nats per image.

``sample`` draws the latent from N(0, bias * I) (``bias`` < 1 is a lower temperature: samples
crowd towards the typical image) and returns the decoder's mean; the decoder noise is not added.

``log_likelihood`` is the ELBO, a lower bound on each image's log-density in pixel space (grey
levels in [0, 1]), averaged over ``N_SCORE_DRAWS`` latent noise draws that are the same for every
image (a fixed seed), so an image always gets the same score whatever it is scored with.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from collapselab.models.image_data import check_bias, check_images
from collapselab.models.nets import footprint, materialise, mlp, n_params, on_meta, score_generator, torch_threads, train
from collapselab.models.torch_utils import check_fits, resolve_device, torch_generator

MIN_LOG_SIGMA = math.log(1e-3)  # the decoder's sigma never goes below 1/1000 of the grey scale
N_SCORE_DRAWS = 16


class VAEModel:
    def __init__(self, latent_dim: int = 16, hidden: int = 256, epochs: int = 100, batch_size: int = 64, lr: float = 3e-3, bias: float = 1.0, device: str = "cpu", threads: int = 1) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.bias = bias
        self.device = device
        self.threads = threads

    def fit(self, data: np.ndarray, *, rng: np.random.Generator) -> "VAEModel":
        check_bias(self.bias, "vae")
        self.device_ = device = resolve_device(self.device)
        x = check_images(data, "vae: fit", min_items=2)
        self.shape_ = x.shape[1:]
        d, h = x.shape[1] * x.shape[2], self.hidden
        enc, dec = [d, h, h, 2 * self.latent_dim], [self.latent_dim, h, h, d]
        encoder, decoder = on_meta(lambda: mlp(enc)), on_meta(lambda: mlp(dec))
        per_item = 2 * (sum(enc) + sum(dec))  # each layer's output and its activation
        check_fits(
            footprint(n_params(encoder) + n_params(decoder), self.batch_size, per_item, x.size),
            f"vae (latent_dim={self.latent_dim}, hidden={h}, batch_size={self.batch_size}, {d} pixels)",
            device,
        )
        gen = torch_generator(rng, device)
        self.encoder_ = materialise(encoder, gen, device)
        self.decoder_ = materialise(decoder, gen, device)

        def loss(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            noise = torch.randn(len(batch), self.latent_dim, generator=g, device=device)
            squared_error, kl = self._errors(batch, noise)
            return _neg_elbo(squared_error, kl, _best_log_sigma(squared_error, d), d).mean()

        xt = torch.from_numpy(x.reshape(len(x), d)).to(device)
        params = [*self.encoder_.parameters(), *self.decoder_.parameters()]
        with torch_threads(self.threads):
            self.loss_history_ = train(loss, xt, params, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, generator=gen)
            with torch.no_grad():
                noise = torch.randn(len(xt), self.latent_dim, generator=gen, device=device)
                self.log_sigma_ = _best_log_sigma(self._errors(xt, noise)[0], d)
        return self

    def _errors(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row of ``x``: the squared error of its reconstruction from the latent
        ``mu + std * noise``, and the KL divergence of its posterior from the prior."""
        mu, log_var = self.encoder_(x).chunk(2, dim=1)
        mean = torch.sigmoid(self.decoder_(mu + torch.exp(0.5 * log_var) * noise))
        kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(1)
        return ((x - mean) ** 2).sum(1), kl

    @torch.no_grad()
    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        device = self.device_
        z = torch.randn(n, self.latent_dim, generator=torch_generator(rng, device), device=device)
        with torch_threads(self.threads):
            images = torch.sigmoid(self.decoder_(math.sqrt(self.bias) * z))
        return images.cpu().numpy().astype(np.float32).reshape(n, *self.shape_)

    @torch.no_grad()
    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        """The ELBO of each image (nats; a lower bound on its log-density), see the module docstring."""
        x = check_images(data, "vae: log_likelihood", shape=self.shape_)
        device = self.device_
        xt = torch.from_numpy(x.reshape(len(x), -1)).to(device)
        draws = torch.randn(N_SCORE_DRAWS, self.latent_dim, generator=score_generator(device), device=device)
        with torch_threads(self.threads):
            total = sum(_neg_elbo(*self._errors(xt, z.expand(len(xt), -1)), self.log_sigma_, xt.shape[1]) for z in draws)
        return -(total / N_SCORE_DRAWS).double().cpu().numpy()


def _best_log_sigma(squared_error: torch.Tensor, d: int) -> torch.Tensor:
    """The decoder's log sigma that maximises the likelihood of these errors (floored)."""
    return (0.5 * torch.log(squared_error.mean() / d)).clamp(min=MIN_LOG_SIGMA)


def _neg_elbo(squared_error: torch.Tensor, kl: torch.Tensor, log_sigma: torch.Tensor, d: int) -> torch.Tensor:
    """Minus the ELBO: the Gaussian decoder's negative log-likelihood over ``d`` pixels, plus KL."""
    return 0.5 * squared_error * torch.exp(-2 * log_sigma) + d * (log_sigma + 0.5 * math.log(2 * math.pi)) + kl
