"""Small seeded networks for the image families (vae, ddpm): build, size up, train.

A network is first built on the ``meta`` device (no memory, no random draws), so its size can be
checked against the machine (:func:`footprint`, then
:func:`~collapselab.models.torch_utils.check_fits`) before any weight exists; :func:`materialise`
then allocates it and initialises every linear layer from a ``torch.Generator``, never from
torch's global generator.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from collapselab.models.torch_utils import set_threads

SCORE_SEED = 0  # the fixed noise with which log_likelihood scores images: same image, same score
BYTES = 4  # float32


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with SiLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.SiLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def on_meta(make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` built on the meta device: shapes only."""
    with torch.device("meta"):
        return make()


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def materialise(net: nn.Module, generator: torch.Generator, device: str) -> nn.Module:
    """``net`` allocated on ``device``, each linear layer initialised as :class:`torch.nn.Linear`
    does (uniform in +-1/sqrt(fan_in)) from ``generator``."""
    net = net.to_empty(device=device)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return net


def footprint(params: int, batch_size: int, activations: int, data: int) -> int:
    """Bytes to train: weights, gradients and Adam's two moments (4 copies of ``params``, 5 with a
    moving average); the ``activations`` kept per item for the backward pass, twice over (values
    and their gradients), for a batch; and the ``data`` floats of the training set."""
    return BYTES * (5 * params + 2 * batch_size * activations + data)


def train(
    loss_fn, x: torch.Tensor, parameters, *, epochs: int, batch_size: int, lr: float, generator: torch.Generator, ema: float = 0.0
) -> np.ndarray:
    """Adam on ``loss_fn(batch, generator)`` over shuffled minibatches of ``x`` for ``epochs``
    epochs; returns the loss of every step (the first is the loss before any update). With
    ``ema`` > 0 the parameters end as the exponential moving average of the iterates (decay
    ``ema``), which smooths out the last steps' noise."""
    params = list(parameters)
    opt = torch.optim.Adam(params, lr=lr)
    average = [p.detach().clone() for p in params] if ema else []
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator, device=x.device)
        for idx in order.split(batch_size):
            loss = loss_fn(x[idx], generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            if ema:
                with torch.no_grad():
                    for a, p in zip(average, params):
                        a.lerp_(p, 1.0 - ema)
    with torch.no_grad():
        for p, a in zip(params, average):
            p.copy_(a)
    return torch.stack(losses).cpu().numpy()


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch's intra-op threads set to ``n`` (0 = one per core this process may use) for the block,
    then put back. Small networks train fastest on one thread: on a busy 2-core machine two
    threads made a VAE step about four times slower."""
    before = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def score_generator(device: str) -> torch.Generator:
    """The generator of the fixed scoring noise (seeded with ``SCORE_SEED``, not from any rng)."""
    return torch.Generator(device=device).manual_seed(SCORE_SEED)
