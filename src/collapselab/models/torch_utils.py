"""What every PyTorch family shares: seeded generators, the device, and a check before training.

Imported only by the neural families, so the CLI and the classical families never load torch.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from collapselab.errors import UserError


def torch_generator(rng: np.random.Generator, device: str = "cpu") -> torch.Generator:
    """A torch generator seeded from the numpy ``rng`` passed in (one draw from it)."""
    return torch.Generator(device=device).manual_seed(int(rng.integers(2**63 - 1)))


def resolve_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; 'cuda' on a machine without a GPU is a user error."""
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is visible on this machine. Use --device cpu.")
        return device
    raise UserError(f"--device {device}: unknown device. Use 'cpu' or 'cuda'.")


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable), or a large number if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 50


def check_fits(n_bytes: int, what: str, device: str = "cpu") -> None:
    """Refuse, before training, a model whose estimated footprint exceeds the memory at hand."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        limit, where = free, "free GPU memory"
    else:
        limit, where = available_memory(), "available memory"
    if n_bytes > 0.8 * limit:
        raise UserError(
            f"{what}: needs about {n_bytes / 2**30:.1f} GiB to train, but this machine has "
            f"{limit / 2**30:.1f} GiB of {where}. Make the model or the batch smaller."
        )


def set_threads(n: int | None = None) -> None:
    """Torch's intra-op threads: ``n``, or one per core this process may use."""
    torch.set_num_threads(n or len(os.sched_getaffinity(0)))
