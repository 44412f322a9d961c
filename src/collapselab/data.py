"""The two kinds of data that flow through the loop, behind three small functions.

Text is :class:`~collapselab.corpus.sequences.TokenSequences`; the theory models use a 2-D numpy
array (one row per item). Policies only ever count, subset and concatenate items, so these three
functions are all they need to know about either kind.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from collapselab.corpus.sequences import TokenSequences

Data = Union[TokenSequences, np.ndarray]


def n_items(data: Data) -> int:
    return len(data)


def take(data: Data, idx: np.ndarray) -> Data:
    if isinstance(data, TokenSequences):
        return data.take(idx)
    return data[np.asarray(idx, dtype=np.int64)]


def concat(parts: Sequence[Data]) -> Data:
    if isinstance(parts[0], TokenSequences):
        return TokenSequences.concat(parts)
    return np.concatenate(parts, axis=0)
