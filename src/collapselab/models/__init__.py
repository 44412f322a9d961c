"""Generative families behind one protocol (:mod:`collapselab.models.base`)."""

from __future__ import annotations

from typing import Any

from collapselab.models.base import GenerativeModel
from collapselab.models.gaussian import GaussianModel
from collapselab.models.gmm import GMMModel
from collapselab.models.ngram import NGramModel

FAMILIES = {"ngram": NGramModel, "gaussian": GaussianModel, "gmm": GMMModel}


def make_model(family: str, params: dict[str, Any], *, vocab_size: int | None = None) -> GenerativeModel:
    """A fresh, unfitted model of ``family`` with hyper-parameters ``params``."""
    if family == "ngram":
        return NGramModel(vocab_size=vocab_size, **params)
    return FAMILIES[family](**params)


__all__ = ["GenerativeModel", "GaussianModel", "GMMModel", "NGramModel", "make_model", "FAMILIES"]
