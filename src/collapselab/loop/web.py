"""The contaminated web: every generation scrapes a web whose synthetic share grows.

The article's picture, "as AI content floods the internet", made measurable. Generation ``g``
(1..G) of a run with ``G`` generations trains on a scrape of ``n`` items (``n``: the size of one
generation's output) of which a share ::

    s(g) = LO + (HI - LO) * (g - 1) / (G - 1)          (s = LO when G = 1)

is synthetic, rounded to whole items: ``round(s(g) n)`` items drawn without replacement from
generation g-1's output. The rest is human text: by default (``:pool``) the next unseen items of the
corpus' reserve pool, in order, never repeated (the human web keeps writing new text; origin -2);
with ``:train``, items drawn afresh from the human training set (origin -1).

When the run has a watermark key, only a share ``watermark_share`` of each generation's output
carries the watermark (``ExperimentConfig.watermark_share``), so a watermark filter can find at
most that share of the synthetic part. Defences (``+filter:...``) remove what they can detect.

Spec (parsed in :mod:`collapselab.loop.spec`): ``web`` (= ``web:0.1-0.9``), ``web:LO-HI``,
``web:S`` (a constant share), each optionally followed by ``:pool`` or ``:train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from collapselab.data import n_items, take
from collapselab.loop.sources import from_previous, join
from collapselab.loop.types import LoopState, Origin, TrainingSet

SOURCES = ("pool", "train")  # where the human part comes from


@dataclass(frozen=True)
class Web:
    start: float = 0.1  # synthetic share of the scrape at generation 1
    end: float = 0.9  # ... at the run's last generation
    human: str = "pool"  # where the human part comes from: 'pool' (unseen) or 'train'
    requires: ClassVar[frozenset] = frozenset()

    @property
    def name(self) -> str:
        shares = f"{self.start:g}" if self.start == self.end else f"{self.start:g}-{self.end:g}"
        return f"web:{shares}" + ("" if self.human == "pool" else f":{self.human}")

    def share(self, g: int, generations: int) -> float:
        """Target synthetic share of generation g's scrape."""
        t = (min(g, generations) - 1) / max(generations - 1, 1)
        return self.start + (self.end - self.start) * t

    def n_synthetic(self, g: int, generations: int, n: int) -> int:
        return int(round(self.share(g, generations) * n))

    def training_set(self, g: int, state: LoopState, rng: np.random.Generator) -> TrainingSet:
        n = n_items(state.outputs[g - 1])
        k = self.n_synthetic(g, state.generations, n)
        if self.human == "pool":
            start = sum(n - self.n_synthetic(h, state.generations, n) for h in range(1, g))
            human = TrainingSet(take(state.pool, np.arange(start, start + n - k)), np.full(n - k, int(Origin.POOL)))
        else:
            idx = np.sort(rng.choice(n_items(state.human), size=min(n - k, n_items(state.human)), replace=False))
            human = TrainingSet(take(state.human, idx), np.full(len(idx), int(Origin.HUMAN)))
        return join([human, from_previous(state, g, k, rng)], {"web_synthetic_share": self.share(g, state.generations)})

    def human_pool_needed(self, generations: int, n: int) -> int:
        if self.human != "pool":
            return 0
        return sum(n - self.n_synthetic(g, generations, n) for g in range(1, generations + 1))
