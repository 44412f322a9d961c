"""Image corpora: the built-in sets, a user's PNG folder or .npy array, the split, and bad input.

Fashion-MNIST is read from tiny IDX files written here (the parser, the 70k layout of train + t10k
is covered where the Debian package is installed); digits is always present.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from collapselab.corpus import images as ci
from collapselab.corpus.images import build_image_corpus, is_image_source
from collapselab.errors import UserError


def digits(**kw):
    args = dict(n_train=1000, n_pool=200, n_holdout=300, split_seed=0) | kw
    return build_image_corpus("digits", **args)


def rows_sorted(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def write_pngs(folder, arrays, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        img = Image.fromarray(a)
        (img.convert(mode) if mode != "L" else img).save(folder / f"img{i:03d}.png")
    return folder


def grey_images(n=12, h=5, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------
# digits and the split
# ----------------------------------------------------------------------------------------------


def test_digits_shapes_labels_and_range():
    c = digits()
    assert (c.train.shape, c.pool.shape, c.holdout.shape) == ((1000, 8, 8), (200, 8, 8), (300, 8, 8))
    assert c.train.dtype == np.float32 and c.train.min() == 0.0 and c.train.max() == 1.0
    assert c.n_classes == 10 and len(c.train_labels) == 1000 and len(c.holdout_labels) == 300
    assert set(np.unique(c.train_labels)) == set(range(10))


def test_split_is_a_partition_of_the_data_set():
    from sklearn.datasets import load_digits

    c = digits(n_pool=10_000)  # the pool takes what is left
    assert len(c.train) + len(c.pool) + len(c.holdout) == 1797
    everything = np.concatenate([c.holdout, c.train, c.pool])
    assert np.array_equal(rows_sorted(everything), rows_sorted((load_digits().images / 16).astype(np.float32)))
    labels = np.concatenate([c.holdout_labels, c.train_labels, c.pool_labels])
    assert np.array_equal(np.bincount(labels), np.bincount(load_digits().target))


def test_split_is_deterministic_under_split_seed():
    a, b, other = digits(), digits(), digits(split_seed=1)
    for name in ("train", "pool", "holdout", "train_labels"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.train, other.train)


def test_oversubscribed_split_shrinks_holdout_to_a_tenth_then_pool():
    c = digits(n_train=1000, n_pool=1000, n_holdout=1000)
    assert (len(c.holdout), len(c.train), len(c.pool)) == (180, 1000, 617)  # ceil(1797 / 10) = 180
    c = digits(n_train=1000, n_pool=0, n_holdout=1000)
    assert (len(c.holdout), len(c.train), len(c.pool)) == (797, 1000, 0)


def test_training_set_larger_than_the_data_is_a_user_error():
    with pytest.raises(UserError, match=r"1797 images.*at most 1617"):
        digits(n_train=1700)


# ----------------------------------------------------------------------------------------------
# fashion-mnist (IDX files)
# ----------------------------------------------------------------------------------------------


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_train_and_t10k(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(30, 4, 3), dtype=np.uint8)
    labels = np.arange(30) % 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs[:20])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:20])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs[20:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[20:])
    monkeypatch.setattr(ci, "FASHION_MNIST_DIR", tmp_path)
    c = build_image_corpus("fashion-mnist", n_train=20, n_pool=0, n_holdout=10, split_seed=0)
    got = np.concatenate([c.holdout, c.train])
    order = np.concatenate([c.holdout_labels, c.train_labels])
    assert got.shape == (30, 4, 3) and c.n_classes == 10
    # every image comes back /255 with its own label
    want = {(int(y), (x / 255.0).astype(np.float32).tobytes()) for x, y in zip(imgs, labels)}
    assert {(int(y), x.tobytes()) for x, y in zip(got, order)} == want


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(ci, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz not found.*apt-get install dataset-fashion-mnist"):
        build_image_corpus("fashion-mnist", n_train=10, n_pool=0, n_holdout=5, split_seed=0)


@pytest.mark.skipif(not ci.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_package_holds_70k_images():
    c = build_image_corpus("fashion-mnist", n_train=1000, n_pool=100_000, n_holdout=1000, split_seed=0)
    assert len(c.train) + len(c.pool) + len(c.holdout) == 70_000
    assert c.train.shape[1:] == (28, 28) and c.n_classes == 10 and c.train.max() == 1.0


# ----------------------------------------------------------------------------------------------
# a user's PNG folder and .npy array
# ----------------------------------------------------------------------------------------------


def test_png_folder_reads_grey_levels(tmp_path):
    arrays = grey_images()
    folder = write_pngs(tmp_path / "pngs", arrays)
    assert is_image_source(str(folder))
    c = build_image_corpus(str(folder), n_train=8, n_pool=0, n_holdout=4, split_seed=0)
    assert c.train.shape == (8, 5, 6) and c.train_labels is None and c.n_classes is None
    assert np.array_equal(rows_sorted(np.concatenate([c.holdout, c.train])), rows_sorted((arrays / 255.0).astype(np.float32)))


def test_png_folder_converts_colour_to_grey(tmp_path):
    folder = write_pngs(tmp_path / "rgb", grey_images(n=5), mode="RGB")
    c = build_image_corpus(str(folder), n_train=4, n_pool=0, n_holdout=1, split_seed=0)
    assert c.train.ndim == 3 and c.train.shape[1:] == (5, 6)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    levels = np.array([0, 16384, 32768, 65535], np.uint16)
    for i in range(4):
        Image.fromarray(np.full((4, 4), levels[i], np.uint16)).save(folder / f"d{i}.png")
    c = build_image_corpus(str(folder), n_train=4, n_pool=0, n_holdout=0, split_seed=0)
    assert np.allclose(np.sort(c.train[:, 0, 0]), levels / 65535.0)


def test_corrupt_png_names_the_file(tmp_path):
    folder = write_pngs(tmp_path / "pngs", grey_images(n=4))
    (folder / "img002.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(UserError, match=r"img002\.png: not a readable PNG"):
        build_image_corpus(str(folder), n_train=2, n_pool=0, n_holdout=1, split_seed=0)


def test_truncated_png_names_the_file(tmp_path):
    folder = write_pngs(tmp_path / "pngs", grey_images(n=4, h=40, w=40))
    data = (folder / "img001.png").read_bytes()
    (folder / "img001.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"img001\.png: not a readable PNG"):
        build_image_corpus(str(folder), n_train=2, n_pool=0, n_holdout=1, split_seed=0)


def test_mixed_sizes_name_the_odd_file_and_its_size(tmp_path):
    folder = write_pngs(tmp_path / "pngs", grey_images(n=4))  # 6 wide, 5 high
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(folder / "img002.png")
    with pytest.raises(UserError, match=r"img002\.png: 9x7 pixels, but img000\.png .* 6x5"):
        build_image_corpus(str(folder), n_train=2, n_pool=0, n_holdout=1, split_seed=0)


def test_folder_without_pngs(tmp_path):
    (tmp_path / "empty").mkdir()
    assert not is_image_source(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no .png files"):
        build_image_corpus(str(tmp_path / "empty"), n_train=2, n_pool=0, n_holdout=1, split_seed=0)


@pytest.mark.parametrize("form", ["uint8", "float255", "unit", "channel"])
def test_npy_in_0_255_or_0_1_with_optional_channel(tmp_path, form):
    raw = grey_images(n=10)
    arr = {"uint8": raw, "float255": raw.astype(np.float64), "unit": raw / 255.0, "channel": (raw / 255.0)[..., None]}[form]
    np.save(tmp_path / "x.npy", arr)
    assert is_image_source(str(tmp_path / "x.npy"))
    c = build_image_corpus(str(tmp_path / "x.npy"), n_train=7, n_pool=3, n_holdout=0, split_seed=0)
    assert c.train.dtype == np.float32 and c.train.shape == (7, 5, 6)
    assert np.allclose(rows_sorted(np.concatenate([c.train, c.pool])), rows_sorted(raw / 255.0), atol=1e-6)


@pytest.mark.parametrize(
    "shape, needle",
    [((10, 5, 6, 3), r"\(10, 5, 6, 3\)"), ((10, 5, 2), r"\(10, 5, 2\)"), ((2, 5, 6), r"\(2, 5, 6\)")],
)
def test_npy_of_the_wrong_shape_names_file_shape_and_need(tmp_path, shape, needle):
    np.save(tmp_path / "bad.npy", np.zeros(shape))
    with pytest.raises(UserError, match=rf"bad\.npy: need .*\(n, height, width\).*got shape {needle}"):
        build_image_corpus(str(tmp_path / "bad.npy"), n_train=1, n_pool=0, n_holdout=1, split_seed=0)


def test_npy_out_of_range_and_unreadable(tmp_path):
    np.save(tmp_path / "neg.npy", np.full((5, 4, 4), -1.0))
    with pytest.raises(UserError, match=r"neg\.npy: grey levels"):
        build_image_corpus(str(tmp_path / "neg.npy"), n_train=2, n_pool=0, n_holdout=1, split_seed=0)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert not is_image_source(str(tmp_path / "junk.npy"))
    with pytest.raises(UserError, match=r"junk\.npy: not a readable \.npy"):
        build_image_corpus(str(tmp_path / "junk.npy"), n_train=2, n_pool=0, n_holdout=1, split_seed=0)


def test_is_image_source_tells_images_from_numeric_data(tmp_path):
    np.save(tmp_path / "table.npy", np.zeros((10, 3)))
    assert is_image_source("digits") and is_image_source("fashion-mnist")
    assert not is_image_source("normal") and not is_image_source("mixture")
    assert not is_image_source(str(tmp_path / "table.npy"))
    assert not is_image_source(str(tmp_path / "missing.npy"))
