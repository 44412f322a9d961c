"""Data policies: how generation g's training set is made from human data and earlier outputs.

Each policy is a small object with one method, :meth:`Policy.training_set`, so that later
defences (filters, curation) can wrap or compose with it without touching the engine. A training
set carries, per item, its *origin*: ``-1`` for human data, ``g`` for data generation ``g`` made.

- ``replace``: only generation g-1's output.
- ``accumulate``: all human training data plus every earlier generation's output (Gerstgrasser et
  al. 2024); the set grows by one output per generation.
- ``anchor:f``: a share ``f`` (default 0.1) of each training set drawn afresh at random from the
  original human training set, the rest from generation g-1's output (Shumailov et al.'s 10%).
- ``fresh:f``: a share ``f`` (default 0.1) of new human items never seen before, taken in order
  from the corpus' reserve pool, the rest from generation g-1's output (MAD's fresh-data loop).

With a vault (``LoopState.vault``), anchor and fresh take their human items from its sealed
snapshot instead (origin -3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from collapselab.data import Data, concat, n_items, take
from collapselab.errors import UserError


@dataclass
class TrainingSet:
    data: Data
    origin: np.ndarray  # int: -1 human training set, -2 unseen human reserve, -3 vault, g >= 0 made by generation g

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


class Policy(Protocol):
    name: str

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet: ...

    def human_pool_needed(self, generations: int, n: int) -> int:
        """Items of the reserve pool this policy consumes over the run (0 for most)."""
        ...


def _synthetic(state: LoopState, g: int, k: int, rng: np.random.Generator) -> TrainingSet:
    """``k`` items of generation g-1's output (all of it when k equals its size)."""
    prev = state.outputs[g - 1]
    n = n_items(prev)
    idx = np.arange(n) if k >= n else np.sort(rng.choice(n, size=k, replace=False))
    return TrainingSet(take(prev, idx), np.full(len(idx), g - 1))


def _join(parts: list[TrainingSet]) -> TrainingSet:
    return TrainingSet(concat([p.data for p in parts]), np.concatenate([p.origin for p in parts]))


@dataclass(frozen=True)
class Replace:
    name: str = "replace"

    def training_set(self, g, state, rng):
        return _synthetic(state, g, n_items(state.outputs[g - 1]), rng)

    def human_pool_needed(self, generations, n):
        return 0


@dataclass(frozen=True)
class Accumulate:
    name: str = "accumulate"

    def training_set(self, g, state, rng):
        parts = [TrainingSet(state.human, np.full(n_items(state.human), -1))]
        parts += [TrainingSet(out, np.full(n_items(out), i)) for i, out in enumerate(state.outputs[:g])]
        return _join(parts)

    def human_pool_needed(self, generations, n):
        return 0


@dataclass(frozen=True)
class _HumanShare:
    """A share ``fraction`` of human items (chosen by the subclass), the rest from g-1's output."""

    fraction: float = 0.1
    kind = ""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.fraction:g}"

    def training_set(self, g, state, rng):
        n = n_items(state.outputs[g - 1])
        human = self._human(g, state, int(round(self.fraction * n)), rng)
        return _join([human, _synthetic(state, g, n - len(human.origin), rng)])

    def human_pool_needed(self, generations, n):
        return 0


class Anchor(_HumanShare):
    """Draws afresh each generation; capped at the human set's size (the rest is synthetic)."""

    kind = "anchor"

    def _human(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.human, -1) if state.vault is None else (state.vault, -3)
        idx = np.sort(rng.choice(n_items(source), size=min(k, n_items(source)), replace=False))
        return TrainingSet(take(source, idx), np.full(len(idx), origin))


class Fresh(_HumanShare):
    kind = "fresh"

    def _human(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.pool, -2) if state.vault is None else (state.vault, -3)
        return TrainingSet(take(source, np.arange((g - 1) * k, g * k)), np.full(k, origin))

    def human_pool_needed(self, generations, n):
        return generations * int(round(self.fraction * n))


POLICIES = {"replace": Replace, "accumulate": Accumulate, "anchor": Anchor, "fresh": Fresh}


def parse_policy(spec: str) -> Policy:
    """``replace``, ``accumulate``, ``anchor[:fraction]``, ``fresh[:fraction]``."""
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in POLICIES:
        raise UserError(f"unknown policy {spec!r}. Choose from: replace, accumulate, anchor[:FRACTION], fresh[:FRACTION].")
    cls = POLICIES[name]
    if not arg:
        return cls()
    if name in ("replace", "accumulate"):
        raise UserError(f"policy {name!r} takes no fraction (got {spec!r}). Write just '{name}'.")
    try:
        fraction = float(arg)
    except ValueError:
        raise UserError(f"policy {spec!r}: {arg!r} is not a number. Write e.g. '{name}:0.1'.") from None
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"policy {spec!r}: the fraction must lie in [0, 1], got {fraction:g}. Write e.g. '{name}:0.1'.")
    return cls(fraction)
