"""The judge of the image metrics: a small CNN trained once on a data set's real images.

Its penultimate layer is the feature space of the FID and of precision/recall/density/coverage,
and its predictions label generated images for the class metrics. For a user's unlabelled images
it learns the k-means clusters (k = :data:`N_CLUSTERS`) of the real training pixels instead, and
its accuracy is its agreement with those clusters.

Trained once per data set: the weights are cached in ``$COLLAPSELAB_CACHE`` (default
``~/.cache/collapselab``) under ``image_classifier/``, keyed by the sha256 of the training
images and labels, the hyper-parameters and :data:`ARCH_VERSION`. Its seed is a hyper-parameter,
not drawn from an experiment's rng, so that every run on a data set is judged by the same network
and FIDs compare across runs. Training runs on the CPU, deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from collapselab.atomic import atomic_write

ARCH_VERSION = "cnn-16-32-f64-v1"  # change whenever the network or its training changes
N_CLUSTERS = 10
MAX_SIDE = 32  # larger images are area-downscaled to at most this many pixels a side


def cache_dir() -> Path:
    return Path(os.environ.get("COLLAPSELAB_CACHE") or Path.home() / ".cache" / "collapselab")


@contextmanager
def _one_thread():
    """Torch on one thread for the duration: this network is too small to gain from more, and on a
    busy machine extra threads spin-wait (measured: 100x slower per step with 2 threads under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _net(n_classes: int, feature_dim: int):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, feature_dim), nn.ReLU(),  # the features: output of layer -2
        nn.Linear(feature_dim, n_classes),
    )


class FeatureClassifier:
    """``fit(images, labels)`` on real images (n, h, w) in [0, 1]; then ``features``, ``predict``.

    ``max_train``: at most this many images are used (the first ones; pass them shuffled).
    ``accuracy_`` is the accuracy on the ``holdout`` given to ``fit`` (nan without one).
    """

    def __init__(self, *, feature_dim: int = 64, steps: int = 1000, batch_size: int = 64, lr: float = 2e-3,
                 max_train: int = 10_000, random_state: int = 0, use_cache: bool = True) -> None:
        self.feature_dim = feature_dim
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.max_train = max_train
        self.random_state = random_state
        self.use_cache = use_cache

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, images: np.ndarray, labels: np.ndarray | None = None, *,
            holdout: np.ndarray | None = None, holdout_labels: np.ndarray | None = None) -> "FeatureClassifier":
        import torch

        x = np.ascontiguousarray(images[: self.max_train], dtype=np.float32)
        y = None if labels is None else np.ascontiguousarray(labels[: self.max_train], dtype=np.int64)
        self.image_shape_ = x.shape[1:]
        self.cache_path_ = cache_dir() / "image_classifier" / f"{self._key(x, y)}.pt"
        state = self._load_cache() if self.use_cache else None
        self.from_cache_ = state is not None
        if state is None:
            with _one_thread():
                state = self._train(x, y)
            if self.use_cache:
                atomic_write(self.cache_path_, lambda tmp: torch.save(state, tmp))
        self.n_classes_ = int(state["n_classes"])
        self.centers_ = None if state["centers"] is None else state["centers"].numpy()
        self.net_ = _net(self.n_classes_, self.feature_dim)
        self.net_.load_state_dict(state["weights"])
        self.net_.eval()
        self.accuracy_ = float("nan") if holdout is None else self.score(holdout, holdout_labels)
        return self

    def _key(self, x: np.ndarray, y: np.ndarray | None) -> str:
        h = hashlib.sha256()
        params = (ARCH_VERSION, self.feature_dim, self.steps, self.batch_size, self.lr, self.random_state, x.shape)
        h.update(repr(params).encode())
        h.update(x.tobytes())
        h.update(b"kmeans" if y is None else y.tobytes())
        return h.hexdigest()

    def _load_cache(self) -> dict | None:
        import torch

        if not self.cache_path_.is_file():
            return None
        try:
            state = torch.load(self.cache_path_, weights_only=True)
        except Exception:  # a damaged cache file is retrained and overwritten
            return None
        return state

    def _train(self, x: np.ndarray, y: np.ndarray | None) -> dict:
        import torch
        from torch import nn

        from collapselab.models.torch_utils import torch_generator

        rng = np.random.default_rng(self.random_state)
        centers = None
        if y is None:
            from sklearn.cluster import KMeans

            km = KMeans(min(N_CLUSTERS, len(x)), n_init=4, random_state=self.random_state).fit(_pixels(x))
            centers, y = torch.from_numpy(km.cluster_centers_), km.labels_.astype(np.int64)
        n_classes = int(y.max()) + 1
        g = torch_generator(rng)
        net = _net(n_classes, self.feature_dim)
        for p in net.parameters():  # initialised from g, not torch's global generator
            if p.ndim > 1:
                nn.init.kaiming_uniform_(p, nonlinearity="relu", generator=g)
            else:
                nn.init.zeros_(p)
        xt, yt = _tensor(x), torch.from_numpy(y)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps)
        order, at = torch.randperm(len(x), generator=g), 0
        for _ in range(self.steps):
            if at + self.batch_size > len(x):
                order, at = torch.randperm(len(x), generator=g), 0
            idx = order[at : at + self.batch_size]
            at += self.batch_size
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return {"weights": net.state_dict(), "n_classes": n_classes, "centers": centers}

    # -- using -----------------------------------------------------------------------------------

    def _forward(self, images: np.ndarray, upto: int) -> np.ndarray:
        import torch

        outs = []
        with torch.inference_mode(), _one_thread():
            for start in range(0, len(images), 4096):
                outs.append(self.net_[:upto](_tensor(images[start : start + 4096])).double().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.feature_dim))

    def features(self, images: np.ndarray) -> np.ndarray:
        """(n, feature_dim) float64: the penultimate layer's activations."""
        return self._forward(images, len(self.net_) - 1)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The predicted class of each image (int64)."""
        return self._forward(images, len(self.net_)).argmax(axis=1)

    def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> float:
        """Accuracy against ``labels``; for unlabelled data, against the nearest k-means cluster."""
        if labels is None:
            if self.centers_ is None:
                raise ValueError("this classifier was trained on labels; pass labels to score against")
            from scipy.spatial.distance import cdist

            labels = cdist(_pixels(images), self.centers_, "sqeuclidean").argmin(axis=1)
        return float((self.predict(images) == np.asarray(labels)).mean())


def _tensor(images: np.ndarray):
    """(n, 1, h', w') float32 tensor, centred on 0, sides at most MAX_SIDE pixels."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None] - 0.5
    h, w = t.shape[2:]
    if max(h, w) > MAX_SIDE:
        t = torch.nn.functional.adaptive_avg_pool2d(t, (min(h, MAX_SIDE), min(w, MAX_SIDE)))
    return t


def _pixels(images: np.ndarray) -> np.ndarray:
    """Flattened, downscaled pixels for k-means (float64)."""
    t = _tensor(images)
    return t.reshape(len(t), -1).double().numpy()
