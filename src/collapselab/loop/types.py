"""What the loop passes around: where an item came from, a training set, what a policy may draw from.

Everything else in :mod:`collapselab.loop` builds on these; this module imports nothing of the loop
but its random streams.

* :class:`Origin`: per training item, where it came from: human data (``HUMAN`` the training set,
  ``POOL`` the unseen reserve, ``VAULT`` a sealed vault snapshot), or a whole number ``g >= 0``:
  made by generation ``g``.
* :class:`TrainingSet`: the items a generation is fitted on, their origins and per-generation
  numbers for the metrics row.
* :class:`LoopState`: what a policy may draw from when it builds generation g's training set.
* :class:`Policy`: the one method every data source and defence has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Callable, Protocol

import numpy as np

from collapselab.data import Data
from collapselab.loop.streams import generation_rng


class Origin(IntEnum):
    """Where a human training item came from; a model-made item's origin is its generation (>= 0)."""

    HUMAN = -1  # generation 0's human training set
    POOL = -2  # the unseen human reserve, taken in order
    VAULT = -3  # a sealed vault snapshot


@dataclass
class TrainingSet:
    data: Data
    origin: np.ndarray  # int per item: an Origin (human data) or g >= 0, made by generation g
    stats: dict = field(default_factory=dict)  # per-generation numbers for the metrics row (detected_share, ...)

    @property
    def synthetic_share(self) -> float:
        return float((self.origin >= 0).mean()) if len(self.origin) else 0.0


@dataclass
class LoopState:
    """What a policy may draw from when it builds generation g's training set."""

    human: Data  # generation 0's training set
    pool: Data  # unseen human items, in order
    vault: Data | None = None  # human items from a sealed vault snapshot: anchor and fresh draw here when set
    outputs: list[Data] = field(default_factory=list)  # outputs[g] = what generation g produced
    holdout: Data | None = None  # held-out human items that ppl_holdout is measured on: no defence looks at them
    watermark: object | None = None  # the run's Watermark (key loaded), for filter:watermark
    scheme: object | None = None  # the run's watermark scheme as a detector (loop.judges.SchemeDetector), for filter:watermark
    generations: int = 1  # generations of the run (the web's schedule spans them)
    seed: int = 0  # the run seed and the chain's label name the policy's own random streams
    label: str = ""
    cache: dict = field(default_factory=dict)  # what a defence fits once per chain (detectors, earlier sets)
    judge_draw: Callable[[], Data] | None = None  # a sample of generation 0's model of its own, for the judges (loop.judges)
    vocab: object | None = None  # the text corpus' Vocabulary: the LM detectors read items as text

    def rng(self, purpose: str, generation: int) -> np.random.Generator:
        """A generator of its own for ``purpose`` at ``generation``: the same every time it is
        asked, whatever else was drawn (defences fit detectors and rebuild earlier sets with it)."""
        return generation_rng(self.seed, f"{self.label}/{purpose}", generation)

    def upto(self, generation: int) -> "LoopState":
        """The state as it was when ``generation`` was built (outputs before it), same cache."""
        return replace(self, outputs=self.outputs[:generation])


class Policy(Protocol):
    name: str
    requires: frozenset  # what the run must provide: "text" (scores text), "watermark" (a key or a scheme)

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet: ...

    def human_pool_needed(self, generations: int, n: int) -> int:
        """Items of the reserve pool this policy consumes over the run (0 for most)."""
        ...


@dataclass
class Generation:
    """What one generation of the loop produced, as the engine yields it to the sinks
    (:mod:`collapselab.loop.sinks`), which store it: samples, grids, credentials, ledger, metrics."""

    seed: int
    generation: int
    labels: tuple[str, ...]  # what it is stored under: a chain's policy or a tree node; generation 0: every root label not stored yet
    rows: list[dict]  # one metrics row per label
    samples: Data | None = None
    per_item: dict = field(default_factory=dict)  # per-item columns of the sample shard (ppl_under_gen0, ...)
    sources: tuple[int, ...] = ()  # origins of the training items (Origin, or the generation that made them)
    output_hash: str = ""  # content hash of the samples (provenance.dataset_hash)
    ancestors: tuple[str, ...] = ()  # tree runs: the label of the model at each depth above this one
    human: tuple[str, str] | None = None  # generation 0 with resample_data: hashes of the seed's own human data and reserve
    seconds: float = 0.0
