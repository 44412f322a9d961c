"""Defences in the loop: policies that wrap another policy and change the set it built.

Each holds the policy before it (``inner``) and does one thing to its training set; the grammar
that composes them (``web:0.1-0.9+filter:watermark:0.01+anchor:0.1``) is in
:mod:`collapselab.loop.spec`. What they judge items with is in :mod:`collapselab.loop.judges`.

* :class:`Filter` ``filter:DETECTOR:FPR``: drop every item the calibrated detector flags.
  Row columns: ``detected_share`` (share of the candidates flagged), ``human_flagged_share`` and
  ``synthetic_flagged_share`` (the false- and true-positive rates it really had, from the origins).
  ``filter:watermark`` scores with the run's key (``watermark_key``) or, in a run with a scheme
  (``watermark``: hf-kgw, synthid, gumbel, ...), with that scheme's p-values
  (:class:`~collapselab.loop.judges.SchemeDetector`), either way thresholded on the judges' human
  calibration split.
* :class:`Curate` ``curate:REWARD:KEEP``: best-of-k selection: keep the ``round(KEEP n)``
  candidates with the highest reward (ties: the earlier item), in their original order.
  Column ``curated_synthetic_share``: the synthetic share among the candidates before selection.
* :class:`Anchored` ``anchor:F``: replace a share ``F`` of the set (``round(F n)`` items chosen at
  random) with human items drawn afresh: from the vault snapshot (``Origin.VAULT``) if the run has one,
  else from the human training set (``Origin.HUMAN``). The set keeps its size.
* :class:`Accumulated` ``accumulate``: the human training set plus the inner policy's set of every
  generation 1..g. Earlier sets are rebuilt with the chain's own per-generation stream
  (``LoopState.rng('data', h)``), so each generation's part is the same set every time it is
  built, and a resumed run rebuilds exactly what it had.
* :class:`AccumulatedSubsample` ``accumulate-subsample``: the size-matched control of
  ``accumulate`` (Kazdan et al. 2024): the same accumulated set, of which generation g trains on
  ``n`` items (the size of one generation's output) drawn at random without replacement.

A filter or curation shrinks the training set (that is its cost); ``train_items_used`` records
the size that reached training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from collapselab.data import n_items, take
from collapselab.errors import UserError
from collapselab.loop.judges import calibrated_detector, check_reserve, reward_scores
from collapselab.loop.sources import Anchor, join, labelled, subsample
from collapselab.loop.types import LoopState, Origin, Policy, TrainingSet

DEFAULT_FPR = 0.01
DEFAULT_KEEP = 0.5


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else float("nan")


def _subset(ts: TrainingSet, idx: np.ndarray, stats: dict) -> TrainingSet:
    return TrainingSet(take(ts.data, idx), ts.origin[idx], {**ts.stats, **stats, "train_items_used": float(len(idx))})


@dataclass(frozen=True)
class _Wrapper:
    inner: Policy
    needs: ClassVar[frozenset] = frozenset()  # what this defence itself requires (see Policy.requires)

    @property
    def name(self) -> str:
        return f"{self.inner.name}+{self.part}"

    @property
    def requires(self) -> frozenset:
        return self.inner.requires | self.needs

    def human_pool_needed(self, generations: int, n: int) -> int:
        return self.inner.human_pool_needed(generations, n)


@dataclass(frozen=True)
class Filter(_Wrapper):
    detector: str = "watermark"
    fpr: float = DEFAULT_FPR

    @property
    def part(self) -> str:
        return f"filter:{self.detector}:{self.fpr:g}"

    @property
    def needs(self) -> frozenset:
        return frozenset({"text", "watermark"} if self.detector == "watermark" else {"text"})

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        check_reserve(self, state)
        ts = self.inner.training_set(g, state, rng)
        flagged = calibrated_detector(self.detector, self.fpr, state).flag(ts.data)
        keep = np.flatnonzero(~flagged)
        if len(keep) == 0:
            raise UserError(f"policy {self.name!r}: the filter flagged all {len(flagged)} candidates at generation {g}, "
                            "so nothing is left to train on. Put human data before the filter (e.g. 'web:0.1-0.9+filter:...') or lower its reach.")
        synthetic = ts.origin >= 0
        return _subset(ts, keep, {"detected_share": _share(flagged), "human_flagged_share": _share(flagged[~synthetic]),
                                  "synthetic_flagged_share": _share(flagged[synthetic])})


@dataclass(frozen=True)
class Curate(_Wrapper):
    reward: str = "reward"
    keep: float = DEFAULT_KEEP
    needs: ClassVar[frozenset] = frozenset({"text"})

    @property
    def part(self) -> str:
        return f"curate:{self.reward}:{self.keep:g}"

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        if self.reward == "reward":
            check_reserve(self, state)
        ts = self.inner.training_set(g, state, rng)
        scores = reward_scores(self.reward, g, ts.data, state, rng)
        k = max(1, int(round(self.keep * len(scores))))
        best = np.sort(np.argsort(-scores, kind="stable")[:k])
        return _subset(ts, best, {"curated_synthetic_share": _share(ts.origin >= 0)})


@dataclass(frozen=True)
class Anchored(_Wrapper):
    fraction: float = 0.1

    @property
    def part(self) -> str:
        return f"anchor:{self.fraction:g}"

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        ts = self.inner.training_set(g, state, rng)
        m = len(ts.origin)
        human = Anchor(self.fraction).human_items(g, state, int(round(self.fraction * m)), rng)
        kept = np.sort(rng.choice(m, size=m - len(human.origin), replace=False))
        return join([TrainingSet(take(ts.data, kept), ts.origin[kept]), human], ts.stats)


@dataclass(frozen=True)
class Accumulated(_Wrapper):
    part: ClassVar[str] = "accumulate"

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        parts = [labelled(state.human, Origin.HUMAN)]
        for h in range(1, g + 1):
            key = ("accumulate", self.inner.name, h)
            if key not in state.cache:
                state.cache[key] = self.inner.training_set(h, state.upto(h), state.rng("data", h))
            parts.append(state.cache[key])
        return join(parts, {**parts[-1].stats, "train_items_used": float(sum(len(p.origin) for p in parts))})


@dataclass(frozen=True)
class AccumulatedSubsample(_Wrapper):
    part: ClassVar[str] = "accumulate-subsample"

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        return subsample(Accumulated(self.inner).training_set(g, state, rng), n_items(state.outputs[g - 1]), rng)
