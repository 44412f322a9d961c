"""A small denoising diffusion model on images (Ho et al. 2020), PyTorch.

Images are scaled to [-1, 1] and noised in ``timesteps`` steps (a cosine schedule, Nichol &
Dhariwal 2021, or the linear one of Ho et al. stretched to this many steps). The denoiser is a
residual MLP over the flattened image, with a sinusoidal embedding of the step added inside every
block. It predicts the "velocity" v = sqrt(abar) * noise - sqrt(1 - abar) * image (Salimans & Ho
2022), and training minimises its mean squared error: the clean image is then
sqrt(abar) * noisy - sqrt(1 - abar) * v, so the identity part of denoising needs no path through
the network's hidden width (predicting the noise itself, the MLP could not pass a 784-pixel image
through 256 hidden units and sampled pure noise on Fashion-MNIST). The weights kept are an
exponential moving average of the iterates (decay ``ema``), as is usual for diffusion models: it
removes much of the speckle that the last optimiser steps leave in samples.

``sample`` runs the ancestral sampler: at each step the predicted clean image is clipped to
[-1, 1], the posterior mean taken and noise added; the last step adds none. All the noise it
draws, the starting image included, has ``bias`` times the model's variance (``bias`` < 1 is a
lower temperature, like truncation: samples crowd towards the modes; scaling only the per-step
noise hardly narrows the samples, since most of their diversity comes from the starting noise).

``log_likelihood`` is the variational bound of Ho et al. (the unbiased model, ``bias`` = 1) in
nats per image in pixel space (grey levels in [0, 1]): the prior term in closed form, every one
of the ``timesteps`` KL terms, and a Gaussian decoder with variance beta_1 at the last step. Each
term is evaluated at one noisy image drawn with a noise vector that is fixed per step (a fixed
seed) and the same for every image: a one-sample Monte-Carlo estimate of the bound, deterministic,
and independent of which other images are scored alongside.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch import nn

from collapselab.errors import UserError
from collapselab.models.image_data import check_bias, check_images
from collapselab.models.nets import footprint, materialise, mlp, n_params, on_meta, score_generator, torch_threads, train
from collapselab.models.torch_utils import check_fits, resolve_device, torch_generator

EMBED = 32  # width of the step embedding


class DDPMModel:
    def __init__(self, timesteps: int = 100, schedule: str = "cosine", hidden: int = 256, layers: int = 3, epochs: int = 1000, batch_size: int = 128, lr: float = 2e-3, ema: float = 0.995, bias: float = 1.0, device: str = "cpu", threads: int = 1) -> None:
        self.timesteps = timesteps
        self.schedule = schedule
        self.hidden = hidden
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.ema = ema
        self.bias = bias
        self.device = device
        self.threads = threads

    def fit(self, data: np.ndarray, *, rng: np.random.Generator) -> "DDPMModel":
        check_bias(self.bias, "ddpm")
        if self.schedule not in ("cosine", "linear"):
            raise UserError(f"ddpm: schedule must be 'cosine' or 'linear', got {self.schedule!r}.")
        self.device_ = device = resolve_device(self.device)
        x = check_images(data, "ddpm: fit", min_items=2)
        self.shape_ = x.shape[1:]
        d = x.shape[1] * x.shape[2]
        denoiser = on_meta(lambda: Denoiser(d, self.hidden, self.layers))
        per_item = d + EMBED + (5 * self.layers + 2) * self.hidden  # layer outputs and activations
        check_fits(
            footprint(n_params(denoiser), self.batch_size, per_item, x.size),
            f"ddpm (hidden={self.hidden}, layers={self.layers}, batch_size={self.batch_size}, {d} pixels)",
            device,
        )
        self.alpha_bar_ = _alpha_bar(self.schedule, self.timesteps).to(device)
        gen = torch_generator(rng, device)
        self.denoiser_ = materialise(denoiser, gen, device)

        def loss(y0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            t = torch.randint(1, self.timesteps + 1, (len(y0),), generator=g, device=device)
            noise = torch.randn(y0.shape, generator=g, device=device)
            a = self.alpha_bar_[t][:, None]
            velocity = a.sqrt() * noise - (1 - a).sqrt() * y0
            return ((self.denoiser_(self._noised(y0, t, noise), t) - velocity) ** 2).mean()

        y0 = torch.from_numpy(2 * x.reshape(len(x), d) - 1).to(device)
        with torch_threads(self.threads):
            self.loss_history_ = train(loss, y0, self.denoiser_.parameters(), epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, generator=gen, ema=self.ema)
        return self

    # --- the forward (noising) process and the reverse step --------------------------------------

    def _noised(self, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar_[t][:, None]
        return a.sqrt() * y0 + (1 - a).sqrt() * noise

    def _clean_estimate(self, yt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean image the denoiser sees in ``yt`` at step ``t``, clipped to [-1, 1]."""
        a = self.alpha_bar_[t][:, None]
        return (a.sqrt() * yt - (1 - a).sqrt() * self.denoiser_(yt, t)).clamp(-1, 1)

    def _posterior(self, y0: torch.Tensor, yt: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """Mean and variance of q(y_{t-1} | y_t, y_0) (Ho et al. eq. 6-7), for t >= 2."""
        a_t, a_prev = self.alpha_bar_[t], self.alpha_bar_[t - 1]
        beta = 1 - a_t / a_prev
        mean = (a_prev.sqrt() * beta * y0 + (a_t / a_prev).sqrt() * (1 - a_prev) * yt) / (1 - a_t)
        return mean, float(beta * (1 - a_prev) / (1 - a_t))

    # --- the protocol ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        device = self.device_
        gen = torch_generator(rng, device)
        d = self.shape_[0] * self.shape_[1]
        scale = math.sqrt(self.bias)
        y = scale * torch.randn(n, d, generator=gen, device=device)
        with torch_threads(self.threads):
            for t in range(self.timesteps, 0, -1):
                y0 = self._clean_estimate(y, torch.full((n,), t, device=device))
                if t == 1:
                    y = y0
                    break
                mean, var = self._posterior(y0, y, t)
                y = mean + scale * math.sqrt(var) * torch.randn(n, d, generator=gen, device=device)
        images = ((y + 1) / 2).clamp(0, 1)
        return images.cpu().numpy().astype(np.float32).reshape(n, *self.shape_)

    @torch.no_grad()
    def log_likelihood(self, data: np.ndarray) -> np.ndarray:
        """The variational bound of each image (nats), see the module docstring."""
        x = check_images(data, "ddpm: log_likelihood", shape=self.shape_)
        device = self.device_
        n, d = len(x), x.shape[1] * x.shape[2]
        y0 = torch.from_numpy(2 * x.reshape(n, d) - 1).to(device).double()
        noises = torch.randn(self.timesteps, d, generator=score_generator(device), device=device)
        a_last = self.alpha_bar_[self.timesteps].double()
        # prior: KL(q(y_T | y_0) || N(0, I))
        bound = 0.5 * (a_last * y0**2 + (1 - a_last) - 1 - torch.log(1 - a_last)).sum(1)
        with torch_threads(self.threads):
            for t in range(1, self.timesteps + 1):
                steps = torch.full((n,), t, device=device)
                yt = self._noised(y0.float(), steps, noises[t - 1].expand(n, d))
                clean = self._clean_estimate(yt, steps).double()
                if t == 1:  # decoder N(y_0; clean, beta_1)
                    beta_1 = float(1 - self.alpha_bar_[1])
                    bound += 0.5 * ((y0 - clean) ** 2).sum(1) / beta_1 + 0.5 * d * math.log(2 * math.pi * beta_1)
                else:  # KL between the true and the model's posterior, same variance
                    true_mean, var = self._posterior(y0, yt.double(), t)
                    model_mean, _ = self._posterior(clean, yt.double(), t)
                    bound += 0.5 * ((true_mean - model_mean) ** 2).sum(1) / var
        # from [-1, 1] back to [0, 1]: the density gains a factor 2 per pixel
        return (-bound + d * math.log(2.0)).cpu().numpy()


class Denoiser(nn.Module):
    """The velocity v of a noisy image: a residual MLP, the step's embedding added in every block."""

    def __init__(self, d: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d, hidden)
        self.steps = nn.ModuleList(nn.Linear(EMBED, hidden) for _ in range(layers))
        self.blocks = nn.ModuleList(mlp([hidden, hidden, hidden]) for _ in range(layers))
        self.out = nn.Linear(hidden, d)

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        half = EMBED // 2
        angles = t[:, None].float() * torch.exp(-math.log(1000.0) * torch.arange(half, device=y.device) / half)
        embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
        h = self.inp(y)
        for step, block in zip(self.steps, self.blocks):
            h = h + block(nn.functional.silu(h + step(embedding)))
        return self.out(nn.functional.silu(h))


def _alpha_bar(schedule: str, timesteps: int) -> torch.Tensor:
    """alpha_bar_t for t = 0..T (alpha_bar_0 = 1): the share of the signal's variance left at step t."""
    if schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        scale = 1000 / timesteps
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).float()
