"""Deterministic pseudo-random sentences over a small vocabulary: the tests' corpora
(``conftest.py``) and the refactor-identity runs (``bench/refactor_identity.py``) are made of them.
Plain Python, no pytest, so a script can import it too."""

from __future__ import annotations

import random

COMMON = (
    "the a of to and in that it is was for on with as by at from this we our nation people "
    "government year congress states united new great country must will have be not all"
).split()
RARE = "zephyr quorum lantern obsidian marigold juniper basalt cobalt saffron tundra".split()


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic sentences; a few rare words so the tail metrics have something to lose."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(COMMON) for _ in range(rng.randint(5, 12))]
        if rng.random() < 0.15:
            words[rng.randrange(len(words))] = rng.choice(RARE)
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
    return out
