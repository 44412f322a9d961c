"""Data policies: how generation g's training set is made from human data and earlier outputs.

Each policy is a small object with one method, :meth:`Policy.training_set`. A training set carries,
per item, its *origin*: ``-1`` human training data, ``-2`` unseen human data (the reserve pool),
``-3`` a vault snapshot, ``g >= 0`` made by generation ``g``.

The spec grammar
----------------
A policy is written as a **data source**, optionally followed by **defences**, joined by ``+``::

    spec    := source ( "+" defence )*
    source  := replace | accumulate | accumulate-subsample | anchor[:F] | fresh[:F]
             | web[:LO-HI | :S][:pool | :train]
    defence := filter:DETECTOR[:FPR] | curate[:REWARD][:KEEP] | anchor[:F] | accumulate | accumulate-subsample
    DETECTOR := watermark | likelihood | classifier          (FPR default 0.01)
    REWARD   := reward | self | random                       (default reward; KEEP default 0.5)

Defences apply left to right, each to the training set the part before it built:
``web:0.1-0.9+filter:watermark:0.01+anchor:0.1`` filters the scraped web, then replaces 10% of
what is left with human data; ``...+anchor:0.1+filter:watermark`` would filter the human items
too. A spec's canonical form (``Policy.name``) spells every default out and names the run's
rows and random streams; ``parse_policy(p.name)`` gives ``p`` back.

Data sources:

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
- ``web:LO-HI``: the contaminated web (:mod:`collapselab.loop.web`): each generation scrapes a web
  whose synthetic share grows linearly from ``LO`` at generation 1 to ``HI`` at the last; the
  synthetic part is generation g-1's output, the human part unseen pool items (``:pool``, the
  default) or items drawn from the human training set (``:train``).

Defences (:mod:`collapselab.loop.defences`), each wrapping the policy before it:

- ``filter:DETECTOR:FPR``: drop what a detector flags; the detector is fitted and calibrated
  inside the loop on data of its own that it never judges (:mod:`collapselab.loop.judges`), its
  threshold set on a human calibration split for false-positive rate ``FPR``.
- ``curate:REWARD:KEEP``: best-of-k selection, keep the ``KEEP`` share that a reward ranks
  highest: a preference-trained reward model (human preferred over synthetic), the model's own
  likelihood (``self``), or chance (``random``, the control).
- ``anchor:F``: replace a share ``F`` of the set with human data drawn afresh (the vault's when
  the run has one).
- ``accumulate``: keep everything: the human training data plus what the policy before it built
  at every generation so far.
- ``accumulate-subsample``: the same pool, of which each generation trains on a random ``n`` items.

With a vault (``LoopState.vault``), anchor and fresh take their human items from its sealed
snapshot instead (origin -3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Protocol

import numpy as np

from collapselab.data import Data, concat, n_items, take
from collapselab.errors import UserError
from collapselab.loop.streams import generation_rng


@dataclass
class TrainingSet:
    data: Data
    origin: np.ndarray  # int: -1 human training set, -2 unseen human reserve, -3 vault, g >= 0 made by generation g
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


def from_previous(state: LoopState, g: int, k: int, rng: np.random.Generator) -> TrainingSet:
    """``k`` items of generation g-1's output (all of it when k equals its size)."""
    prev = state.outputs[g - 1]
    n = n_items(prev)
    idx = np.arange(n) if k >= n else np.sort(rng.choice(n, size=k, replace=False))
    return TrainingSet(take(prev, idx), np.full(len(idx), g - 1))


def join(parts: list[TrainingSet], stats: dict | None = None) -> TrainingSet:
    return TrainingSet(concat([p.data for p in parts]), np.concatenate([p.origin for p in parts]), stats or {})


@dataclass(frozen=True)
class Replace:
    name: str = "replace"
    requires: ClassVar[frozenset] = frozenset()

    def training_set(self, g, state, rng):
        return from_previous(state, g, n_items(state.outputs[g - 1]), rng)

    def human_pool_needed(self, generations, n):
        return 0


@dataclass(frozen=True)
class Accumulate:
    name: str = "accumulate"
    requires: ClassVar[frozenset] = frozenset()

    def training_set(self, g, state, rng):
        parts = [TrainingSet(state.human, np.full(n_items(state.human), -1))]
        parts += [TrainingSet(out, np.full(n_items(out), i)) for i, out in enumerate(state.outputs[:g])]
        return join(parts)

    def human_pool_needed(self, generations, n):
        return 0


def subsample(ts: TrainingSet, n: int, rng: np.random.Generator) -> TrainingSet:
    """``n`` items of ``ts`` drawn at random without replacement (all of it when it has no more), in order."""
    m = len(ts.origin)
    idx = np.arange(m) if n >= m else np.sort(rng.choice(m, size=n, replace=False))
    return TrainingSet(take(ts.data, idx), ts.origin[idx], {**ts.stats, "train_items_used": float(len(idx))})


@dataclass(frozen=True)
class AccumulateSubsample:
    """Kazdan et al. 2024's size-matched control: accumulate everything, train on ``n`` items of it."""

    name: str = "accumulate-subsample"
    requires: ClassVar[frozenset] = frozenset()

    def training_set(self, g, state, rng):
        return subsample(Accumulate().training_set(g, state, rng), n_items(state.outputs[g - 1]), rng)

    def human_pool_needed(self, generations, n):
        return 0


@dataclass(frozen=True)
class _HumanShare:
    """A share ``fraction`` of human items (chosen by the subclass), the rest from g-1's output."""

    fraction: float = 0.1
    kind = ""
    requires: ClassVar[frozenset] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.fraction:g}"

    def training_set(self, g, state, rng):
        n = n_items(state.outputs[g - 1])
        human = self.human_items(g, state, int(round(self.fraction * n)), rng)
        return join([human, from_previous(state, g, n - len(human.origin), rng)])

    def human_pool_needed(self, generations, n):
        return 0


class Anchor(_HumanShare):
    """Draws afresh each generation; capped at the human set's size (the rest is synthetic)."""

    kind = "anchor"

    def human_items(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.human, -1) if state.vault is None else (state.vault, -3)
        idx = np.sort(rng.choice(n_items(source), size=min(k, n_items(source)), replace=False))
        return TrainingSet(take(source, idx), np.full(len(idx), origin))


class Fresh(_HumanShare):
    kind = "fresh"

    def human_items(self, g, state, k, rng) -> TrainingSet:
        source, origin = (state.pool, -2) if state.vault is None else (state.vault, -3)
        return TrainingSet(take(source, np.arange((g - 1) * k, g * k)), np.full(k, origin))

    def human_pool_needed(self, generations, n):
        return generations * int(round(self.fraction * n))


POLICIES = {"replace": Replace, "accumulate": Accumulate, "accumulate-subsample": AccumulateSubsample, "anchor": Anchor,
            "fresh": Fresh}
SPEC_HELP = ("Write a data source (replace, accumulate, accumulate-subsample, anchor[:F], fresh[:F], web[:LO-HI]), then defences "
             "joined by '+' (filter:DETECTOR[:FPR], curate[:REWARD][:KEEP], anchor[:F], accumulate, accumulate-subsample), "
             "e.g. 'anchor:0.1' or 'web:0.1-0.9+filter:watermark:0.01' (docs/defences.md).")


def bad_spec(spec: str, problem: str, write: str = SPEC_HELP) -> UserError:
    """The one-line error for a policy spec: the spec, what is wrong, what to write."""
    return UserError(f"policy {spec!r}: {problem}. {write}")


def parse_fraction(arg: str, spec: str, what: str, example: str) -> float:
    """``arg`` as a number in [0, 1] (``what`` names it in the error, ``example`` shows a spec)."""
    try:
        x = float(arg)
    except ValueError:
        raise bad_spec(spec, f"{arg!r} is not a number", f"Write e.g. '{example}'.") from None
    if not 0.0 <= x <= 1.0:
        raise bad_spec(spec, f"the {what} must lie in [0, 1], got {x:g}", f"Write e.g. '{example}'.")
    return x


def _source(part: str, spec: str) -> Policy:
    from collapselab.loop.web import Web

    name, _, arg = part.partition(":")
    name = name.strip().lower()
    if name == "web":
        return Web.from_args(arg, spec)
    if name in ("filter", "curate"):
        raise bad_spec(spec, f"{name!r} is a defence: it wraps a data source, so write one before it")
    if name not in POLICIES:
        raise bad_spec(spec, f"unknown data source {name!r}" if name else "no data source")
    cls = POLICIES[name]
    if not arg:
        return cls()
    if name in ("replace", "accumulate", "accumulate-subsample"):
        raise bad_spec(spec, f"{name!r} takes no fraction", f"Write just '{name}'.")
    return cls(parse_fraction(arg, spec, "fraction", f"{name}:0.1"))


def parse_policy(spec: str) -> Policy:
    """A policy from its spec (the grammar is in the module docstring); one UserError line if bad."""
    from collapselab.loop.defences import parse_defence

    parts = [p.strip() for p in str(spec).split("+")]
    if not all(parts):
        raise bad_spec(spec, "an empty part (a '+' with nothing on one side)")
    policy = _source(parts[0], spec)
    for part in parts[1:]:
        policy = parse_defence(part, policy, spec)
    return policy
