"""Data policies: how generation g's training set is made from human data and earlier outputs.

Moved apart (issue 16), and still importable from here:

- :mod:`collapselab.loop.types`: ``Origin``, ``TrainingSet``, ``LoopState``, ``Policy``;
- :mod:`collapselab.loop.sources`: the data sources ``Replace``, ``Accumulate``,
  ``AccumulateSubsample``, ``Anchor``, ``Fresh`` (and :mod:`collapselab.loop.web`'s ``Web``);
- :mod:`collapselab.loop.defences`: the defences that wrap a source;
- :mod:`collapselab.loop.spec`: the spec grammar, ``parse_policy``.
"""

from __future__ import annotations

from collapselab.loop.sources import (Accumulate, AccumulateSubsample, Anchor, Fresh, Replace, from_previous, join,  # noqa: F401
                                      subsample)
from collapselab.loop.spec import POLICIES, SPEC_HELP, bad_spec, parse_fraction, parse_policy  # noqa: F401
from collapselab.loop.types import LoopState, Origin, Policy, TrainingSet  # noqa: F401
