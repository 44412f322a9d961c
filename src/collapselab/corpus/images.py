"""Real images for the visual-collapse loop: a float32 array ``(n, height, width)`` of grey levels in [0, 1].

Sources:

- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, 10 classes; always present).
- ``fashion-mnist``: the 70,000 28x28 images (train + t10k, 10 classes) that the Debian package
  ``dataset-fashion-mnist`` installs as IDX files under :data:`FASHION_MNIST_DIR`.
- a folder of ``.png`` files (any mode, converted to grey; all of one size; unlabelled).
- a ``.npy`` array of shape ``(n, h, w)`` or ``(n, h, w, 1)``, grey levels in [0, 1] or [0, 255]
  (uint8 arrays and arrays whose maximum exceeds 1 are divided by 255; unlabelled).

The split is a permutation drawn from ``split_seed``: the holdout first, then the training set,
then the reserve pool (unseen images for the ``fresh`` policy). When the three requests exceed the
images there are, the holdout yields first, down to a tenth of the data; the pool gets what is left
(``api`` says when a policy needs more); a training set that does not fit is a :class:`UserError`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collapselab.corpus.numeric import read_npy
from collapselab.errors import UserError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
BUILT_IN = ("digits", "fashion-mnist")


@dataclass
class ImageCorpus:
    name: str
    train: np.ndarray  # generation 0's training images, (n, h, w) float32 in [0, 1]
    pool: np.ndarray  # unseen real images, for fresh data
    holdout: np.ndarray  # what every generation is compared to
    train_labels: np.ndarray | None  # int64 class labels; None for a user's unlabelled images
    pool_labels: np.ndarray | None
    holdout_labels: np.ndarray | None
    n_classes: int | None  # None when unlabelled


def is_image_source(source: str) -> bool:
    """True for the built-in image sets, a folder holding ``.png`` files, or a ``.npy`` of 3 or 4 axes.

    4-D arrays count as images so that ``(n, h, w, 3)`` gets the image reader's message, not the
    numeric one's.
    """
    if source in BUILT_IN:
        return True
    path = Path(source)
    if path.is_dir():
        return any(_pngs(path))
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False).ndim in (3, 4)
        except (ValueError, OSError):
            return False
    return False


def build_image_corpus(source: str, *, n_train: int, n_pool: int, n_holdout: int, split_seed: int) -> ImageCorpus:
    images, labels, name = _load(source)  # images: uint8 or float32; converted per subset below
    n = len(images)
    n_hold = min(n_holdout, max(-(-n // 10), n - n_train - n_pool))
    if n_train < 1 or n_train > n - n_hold:
        raise UserError(
            f"corpus {name}: {n} images, {n_hold} of them held out, leave at most {n - n_hold} for training; "
            f"asked for {n_train}. Set train_items between 1 and {n - n_hold}."
        )
    n_pool = min(n_pool, n - n_hold - n_train)
    order = np.random.default_rng(split_seed).permutation(n)
    parts = np.split(order, [n_hold, n_hold + n_train, n_hold + n_train + n_pool])[:3]
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(1.0)
    hold, train, pool = (images[idx].astype(np.float32) / scale for idx in parts)
    hold_y, train_y, pool_y = (None, None, None) if labels is None else (labels[idx] for idx in parts)
    n_classes = None if labels is None else int(labels.max()) + 1
    return ImageCorpus(name, train, pool, hold, train_y, pool_y, hold_y, n_classes)


def _load(source: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(images uint8 or float32 in [0, 1], int64 labels or None, a name)."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64), source
    if source == "fashion-mnist":
        return *_fashion_mnist(FASHION_MNIST_DIR), source
    path = Path(source)
    if path.is_dir():
        return _png_folder(path), None, path.name
    if path.suffix.lower() == ".npy":
        return _npy(path), None, path.name
    raise UserError(
        f"corpus {source}: not an image source. Use 'digits', 'fashion-mnist', a folder of .png files "
        "or a .npy array of shape (n, height, width)."
    )


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian header: two zero bytes, type 0x08 = uint8, number of axes, sizes)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise UserError(f"{path}: not an IDX file of unsigned bytes. Reinstall dataset-fashion-mnist.")
    dims = np.frombuffer(raw, dtype=">u4", count=raw[3], offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def _fashion_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for part in ("train", "t10k"):
        files = [folder / f"{part}-{kind}-idx{d}-ubyte.gz" for kind, d in (("images", 3), ("labels", 1))]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise UserError(
                f"fashion-mnist: {missing[0]} not found. Install the data set with "
                "`sudo apt-get install dataset-fashion-mnist`, or use --corpus digits."
            )
        images.append(_read_idx(files[0]))
        labels.append(_read_idx(files[1]))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def _png_folder(folder: Path) -> np.ndarray:
    from PIL import Image

    files = _pngs(folder)
    if not files:
        raise UserError(f"{folder}: no .png files in this folder. Point --corpus at a folder of PNG images.")
    images = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode.startswith("I;16"):  # 16-bit grey: scale, since convert("L") would clip
                    arr = np.asarray(im, dtype=np.float32) / 65535.0
                else:
                    arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        except (OSError, ValueError, SyntaxError) as e:  # PIL reports broken files with any of these
            raise UserError(f"{path}: not a readable PNG image ({e}). Replace or remove the file.") from None
        if images and arr.shape != images[0].shape:
            h0, w0 = images[0].shape
            raise UserError(
                f"{path}: {arr.shape[1]}x{arr.shape[0]} pixels, but {files[0].name} and the files before it are "
                f"{w0}x{h0}. Resize all images to one size."
            )
        images.append(arr)
    return np.stack(images)


def _npy(path: Path) -> np.ndarray:
    x = read_npy(path)
    shape = x.shape
    if x.ndim == 4 and shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or len(x) < 3 or min(x.shape[1:]) < 3 or x.dtype.kind not in "iuf":
        raise UserError(
            f"{path}: need a numeric image array of shape (n, height, width) or (n, height, width, 1) with n >= 3 "
            f"and sides >= 3 pixels; got shape {shape}, dtype {x.dtype}. Convert colour images to grey first."
        )
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
        raise UserError(f"{path}: grey levels must be finite and in [0, 1] or [0, 255]; got values from {x.min()} to {x.max()}.")
    if x.dtype == np.uint8 or x.max() > 1:
        return (x / 255.0).astype(np.float32)
    return x.astype(np.float32)
