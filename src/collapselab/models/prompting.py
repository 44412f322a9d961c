"""The Nature paper's prompted generation, shared by the neural text families: each item's prompt
is the first ``prompt_len`` words of a random training item, continued by beam search."""

from __future__ import annotations

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError


def heads(data: TokenSequences, rows: np.ndarray, k: int) -> TokenSequences:
    """The first ``k`` tokens of items ``rows``."""
    lengths = np.minimum(data.lengths[rows], k)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return TokenSequences(data.tokens[np.repeat(data.offsets[rows], lengths) + within], offsets)


def check_decoding(family: str, decoding: str, prompt_len: int) -> None:
    if decoding not in ("sample", "beam"):
        raise UserError(f"{family}: decoding {decoding!r} is not 'sample' or 'beam'. Set model.decoding.")
    if decoding == "beam" and prompt_len < 1:
        raise UserError(f"{family}: decoding 'beam' continues prompts taken from the training data, and "
                        "prompt_len is 0 (every item would be the same). Set model.prompt_len, e.g. 8.")


def training_prompts(data: TokenSequences, n: int, prompt_len: int, rng: np.random.Generator) -> TokenSequences:
    """``n`` prompts: the first ``prompt_len`` words of random training items (longer ones when any)."""
    eligible = np.flatnonzero(data.lengths > prompt_len)
    eligible = eligible if len(eligible) else np.arange(len(data))
    return heads(data, eligible[rng.integers(len(eligible), size=n)], prompt_len)
