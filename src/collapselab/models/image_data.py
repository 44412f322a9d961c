"""What every image family checks before it touches an array: the images and the sampling bias.

Images are a float array ``(n, height, width)`` of grey levels in [0, 1]. Numpy only, so the
image GMM can use it without loading torch.
"""

from __future__ import annotations

import numpy as np

from collapselab.errors import UserError


def check_images(data, what: str, shape: tuple[int, int] | None = None, min_items: int = 1) -> np.ndarray:
    """``data`` as a float32 array (n, h, w) with values in [0, 1], or a UserError that says why not.

    ``shape``: the (h, w) a fitted model expects; ``min_items``: how many images fitting needs.
    """
    x = np.asarray(data)
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise UserError(
            f"{what}: expected images as a numeric array (n, height, width), got an array of shape "
            f"{x.shape} and dtype {x.dtype}. Load images with collapselab.corpus.images (grey levels in [0, 1])."
        )
    if shape is not None and x.shape[1:] != tuple(shape):
        raise UserError(f"{what}: the model was fitted on {shape[0]}x{shape[1]} images, got {x.shape[1]}x{x.shape[2]}.")
    if len(x) < min_items:
        raise UserError(f"{what}: needs at least {min_items} images, got {len(x)}.")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all() or x.min(initial=0.0) < 0.0 or x.max(initial=0.0) > 1.0:
        raise UserError(f"{what}: grey levels must be finite and in [0, 1] (divide 8-bit images by 255).")
    return x


def check_bias(bias: float, what: str) -> None:
    if not 0.0 < bias <= 1.0:
        raise UserError(f"{what}: bias must be in (0, 1] (1 = unbiased sampling), got {bias}.")
