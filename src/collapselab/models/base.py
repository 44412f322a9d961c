"""The protocol every generative family follows (see DESIGN.md).

scikit-learn habits: hyper-parameters are constructor arguments stored as given, fitted state
ends in ``_``, ``fit`` returns ``self``, and all randomness comes from the ``rng`` passed in.

Watermarking is part of sampling: a family that can embed a watermark takes ``watermark=`` in
:meth:`GenerativeModel.sample` (a :class:`~collapselab.provenance.watermark.Watermark` or a scheme
of :mod:`collapselab.detect.schemes`) and says which token space the scheme reads
(:class:`Watermarkable`: the text families). :func:`sample` is how the loop samples: with a
watermark, from a family that cannot embed one, it is one :class:`~collapselab.errors.UserError` line.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import numpy as np

from collapselab.data import Data
from collapselab.errors import UserError


@runtime_checkable
class GenerativeModel(Protocol):
    def fit(self, data: Data, *, rng: np.random.Generator) -> "GenerativeModel": ...

    def sample(self, n: int, *, rng: np.random.Generator) -> Data:
        """``n`` items; a family that can watermark also takes ``watermark=`` (None: unmarked)."""
        ...

    def log_likelihood(self, data: Data) -> np.ndarray:
        """One value per item (natural log)."""
        ...


@runtime_checkable
class Watermarkable(Protocol):
    """A family whose sampler embeds a watermark: ``sample(n, rng=, watermark=)``, in this token space."""

    def sample(self, n: int, *, rng: np.random.Generator, watermark=None) -> Data: ...

    def watermark_tokens(self, items: Data) -> Data:
        """``items`` as the ids a watermark scheme reads."""
        ...

    def watermark_vocab_size(self) -> int | None:
        """How many ids the scheme's green lists span."""
        ...


def can_watermark(model) -> bool:
    return "watermark" in inspect.signature(model.sample).parameters


def sample(model: GenerativeModel, n: int, *, rng: np.random.Generator, watermark=None) -> Data:
    """``model.sample(n, rng=rng)``, embedding ``watermark`` when given; one UserError line if the
    model's family cannot embed one."""
    if watermark is None:
        return model.sample(n, rng=rng)
    if not can_watermark(model):
        raise UserError(f"{type(model).__name__} cannot sample with a watermark: its samples are not text. "
                        "Watermark a text family (--family ngram, gpt or smollm2).")
    return model.sample(n, rng=rng, watermark=watermark)
