"""Data sources: where generation g's training set comes from, before any defence.

- ``replace``: only generation g-1's output.
- ``accumulate``: all human training data plus every earlier generation's output (Gerstgrasser et
  al. 2024); the set grows by one output per generation.
- ``accumulate-subsample``: the size-matched control of ``accumulate`` (Kazdan et al. 2024): the
  same accumulated pool, but each generation trains on ``n`` items of it (``n``: the size of one
  generation's output, the budget of ``replace``) drawn at random without replacement.
- ``anchor:f``: a share ``f`` (default 0.1) of each training set drawn afresh at random from the
  original human training set, the rest from generation g-1's output (Shumailov et al.'s 10%).
- ``fresh:f``: a share ``f`` (default 0.1) of new human items never seen before, taken in order
  from the corpus' reserve pool, the rest from generation g-1's output (MAD's fresh-data loop).

With a vault (``LoopState.vault``), anchor and fresh take their human items from its sealed
snapshot instead (origin ``Origin.VAULT``). The contaminated web, a source too, is in
:mod:`collapselab.loop.web`; the spec grammar that names them in :mod:`collapselab.loop.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from collapselab.data import concat, n_items, take
from collapselab.loop.types import LoopState, Origin, TrainingSet


def from_previous(state: LoopState, g: int, k: int, rng: np.random.Generator) -> TrainingSet:
    """``k`` items of generation g-1's output (all of it when k equals its size)."""
    prev = state.outputs[g - 1]
    n = n_items(prev)
    idx = np.arange(n) if k >= n else np.sort(rng.choice(n, size=k, replace=False))
    return TrainingSet(take(prev, idx), np.full(len(idx), g - 1))


def labelled(data, origin: Origin) -> TrainingSet:
    """All of ``data``, every item of origin ``origin``."""
    return TrainingSet(data, np.full(n_items(data), int(origin)))


def join(parts: list[TrainingSet], stats: dict | None = None) -> TrainingSet:
    return TrainingSet(concat([p.data for p in parts]), np.concatenate([p.origin for p in parts]), stats or {})


def subsample(ts: TrainingSet, n: int, rng: np.random.Generator) -> TrainingSet:
    """``n`` items of ``ts`` drawn at random without replacement (all of it when it has no more), in order."""
    m = len(ts.origin)
    idx = np.arange(m) if n >= m else np.sort(rng.choice(m, size=n, replace=False))
    return TrainingSet(take(ts.data, idx), ts.origin[idx], {**ts.stats, "train_items_used": float(len(idx))})


class _Source:
    """What most sources share: they need nothing of the run, and take nothing from the reserve."""

    requires: ClassVar[frozenset] = frozenset()

    def human_pool_needed(self, generations: int, n: int) -> int:
        return 0


@dataclass(frozen=True)
class Replace(_Source):
    name: str = "replace"

    def training_set(self, g, state, rng):
        return from_previous(state, g, n_items(state.outputs[g - 1]), rng)


@dataclass(frozen=True)
class Accumulate(_Source):
    name: str = "accumulate"

    def training_set(self, g, state, rng):
        parts = [labelled(state.human, Origin.HUMAN)]
        parts += [TrainingSet(out, np.full(n_items(out), i)) for i, out in enumerate(state.outputs[:g])]
        return join(parts)


@dataclass(frozen=True)
class AccumulateSubsample(_Source):
    """Kazdan et al. 2024's size-matched control: accumulate everything, train on ``n`` items of it."""

    name: str = "accumulate-subsample"

    def training_set(self, g, state, rng):
        return subsample(Accumulate().training_set(g, state, rng), n_items(state.outputs[g - 1]), rng)


@dataclass(frozen=True)
class _HumanShare(_Source):
    """A share ``fraction`` of human items (chosen by the subclass), the rest from g-1's output."""

    fraction: float = 0.1
    kind = ""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.fraction:g}"

    def training_set(self, g, state, rng):
        n = n_items(state.outputs[g - 1])
        human = self.human_items(g, state, int(round(self.fraction * n)), rng)
        return join([human, from_previous(state, g, n - len(human.origin), rng)])


class Anchor(_HumanShare):
    """Draws afresh each generation; capped at the human set's size (the rest is synthetic)."""

    kind = "anchor"

    def human_items(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.human, Origin.HUMAN) if state.vault is None else (state.vault, Origin.VAULT)
        idx = np.sort(rng.choice(n_items(source), size=min(k, n_items(source)), replace=False))
        return TrainingSet(take(source, idx), np.full(len(idx), int(origin)))


class Fresh(_HumanShare):
    kind = "fresh"

    def human_items(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.pool, Origin.POOL) if state.vault is None else (state.vault, Origin.VAULT)
        return TrainingSet(take(source, np.arange((g - 1) * k, g * k)), np.full(k, int(origin)))

    def human_pool_needed(self, generations, n):
        return generations * int(round(self.fraction * n))


SOURCES = {"replace": Replace, "accumulate": Accumulate, "accumulate-subsample": AccumulateSubsample, "anchor": Anchor,
           "fresh": Fresh}
