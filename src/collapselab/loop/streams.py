"""Random streams: one numpy generator per (seed, stream name, generation).

Every random draw of a run comes from a generator named by what it is for, never from a shared
one, so a resumed run draws exactly what an uninterrupted one would, and adding a policy (a new
stream name) leaves every other stream's numbers alone.
"""

from __future__ import annotations

import zlib

import numpy as np


def generation_rng(seed: int, stream: str, generation: int) -> np.random.Generator:
    """The generator of one (seed, stream, generation); ``stream`` is a policy name, 'gen0', or a
    policy's own sub-stream such as ``'web:0.1-0.9+accumulate/data'``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(stream.encode()), generation)))
