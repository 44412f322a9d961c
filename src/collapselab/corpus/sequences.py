"""Token sequences stored as one flat array plus offsets (CSR layout).

A text data set in Collapse Lab is a :class:`TokenSequences`: item ``i`` is
``tokens[offsets[i]:offsets[i + 1]]``. Every operation the loop needs (take a subset, concatenate
sets, count tokens) is an array operation, so no Python loop runs per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TokenSequences:
    tokens: np.ndarray  # int32, all items back to back
    offsets: np.ndarray  # int64, len(items) + 1, offsets[0] == 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", np.ascontiguousarray(self.tokens, dtype=np.int32))
        object.__setattr__(self, "offsets", np.ascontiguousarray(self.offsets, dtype=np.int64))
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError("offsets must be 1-D and start at 0")
        if self.offsets[-1] != len(self.tokens):
            raise ValueError("offsets[-1] must equal the number of tokens")

    @classmethod
    def from_lists(cls, items: Sequence[Sequence[int]]) -> "TokenSequences":
        lengths = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((t for x in items for t in x), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    @classmethod
    def empty(cls) -> "TokenSequences":
        return cls(np.zeros(0, np.int32), np.zeros(1, np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def item(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def to_lists(self) -> list[list[int]]:
        return [self.item(i).tolist() for i in range(len(self))]

    def item_index(self) -> np.ndarray:
        """For every token, the index of the item it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, idx: np.ndarray) -> "TokenSequences":
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # position of each output token in the source: start of its item + rank inside the item
        starts = np.repeat(self.offsets[:-1][idx], lengths)
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        return TokenSequences(self.tokens[starts + within], offsets)

    @staticmethod
    def concat(parts: Sequence["TokenSequences"]) -> "TokenSequences":
        parts = [p for p in parts if len(p)]
        if not parts:
            return TokenSequences.empty()
        tokens = np.concatenate([p.tokens for p in parts])
        lengths = np.concatenate([p.lengths for p in parts])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return TokenSequences(tokens, offsets)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TokenSequences)
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.tokens, other.tokens)
        )

    __hash__ = None  # type: ignore[assignment]
