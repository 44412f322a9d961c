"""Generative families behind one protocol (:mod:`collapselab.models.base`).

The classical families load eagerly; the PyTorch ones (gpt, smollm2, vae, ddpm) and the image
GMM are imported only when a run asks for them, so the CLI starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from collapselab.models.base import GenerativeModel
from collapselab.models.categorical import CategoricalModel
from collapselab.models.gaussian import GaussianModel
from collapselab.models.gmm import GMMModel
from collapselab.models.linreg import LinearRegressionModel
from collapselab.models.ngram import NGramModel

FAMILIES = {"ngram": NGramModel, "gaussian": GaussianModel, "gmm": GMMModel, "linreg": LinearRegressionModel,
            "categorical": CategoricalModel}
LAZY = {  # family -> (module, class)
    "gpt": ("collapselab.models.gpt", "GPTModel"),
    "smollm2": ("collapselab.models.smollm2", "SmolLM2Model"),
    "vae": ("collapselab.models.vae", "VAEModel"),
    "ddpm": ("collapselab.models.ddpm", "DDPMModel"),
    "image_gmm": ("collapselab.models.image_gmm", "ImageGMMModel"),
}


def model_class(family: str, *, image: bool = False) -> type:
    """The estimator class of ``family`` (``gmm`` on images is the PCA + GMM image model)."""
    key = "image_gmm" if image and family == "gmm" else family
    if key in LAZY:
        module, name = LAZY[key]
        return getattr(importlib.import_module(module), name)
    return FAMILIES[key]


def make_model(family: str, params: dict[str, Any], *, vocab=None, image: bool = False) -> GenerativeModel:
    """A fresh, unfitted model of ``family`` with hyper-parameters ``params``; text families get the
    run's word vocabulary (the n-gram only its size)."""
    cls = model_class(family, image=image)
    if family == "ngram":
        return cls(vocab_size=len(vocab), **params)
    if family in ("gpt", "smollm2"):
        return cls(vocab, **params)
    return cls(**params)


__all__ = ["GenerativeModel", "GaussianModel", "GMMModel", "NGramModel", "make_model", "model_class", "FAMILIES"]
