"""A generation's images as one PNG grid: grey levels, upscaled by whole pixels, 1-px grey lines between.

A plain 8-bit greyscale PNG (mode "L"), so content credentials can be attached to it later.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from collapselab.atomic import atomic_write

MIN_CELL = 28  # small images are enlarged to at least this many pixels a side
SEPARATOR = 128  # grey, visible on black and on white backgrounds


def save_grid(images: np.ndarray, path: str | Path, *, ncols: int | None = None, scale: int | None = None) -> Path:
    """Write ``images`` (n, h, w) in [0, 1] as a grid of ``ncols`` columns (default: about square).

    ``scale``: each pixel becomes a ``scale`` x ``scale`` block (default: the smallest whole factor
    that makes a cell at least :data:`MIN_CELL` pixels high; nearest-neighbour, no smoothing).
    """
    from PIL import Image

    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"save_grid needs images of shape (n, h, w) with n >= 1, got {x.shape}")
    n, h, w = x.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    scale = scale or max(1, math.ceil(MIN_CELL / h))
    cells = np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8).repeat(scale, axis=1).repeat(scale, axis=2)
    cells = np.concatenate([cells, np.full((nrows * ncols - n, h * scale, w * scale), SEPARATOR, np.uint8)])
    cells = np.pad(cells, ((0, 0), (0, 1), (0, 1)), constant_values=SEPARATOR)  # line below and right of each
    grid = cells.reshape(nrows, ncols, h * scale + 1, w * scale + 1).transpose(0, 2, 1, 3)
    grid = np.pad(grid.reshape(nrows * (h * scale + 1), ncols * (w * scale + 1)), ((1, 0), (1, 0)), constant_values=SEPARATOR)
    path = Path(path)
    atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    return path
