"""The Nature paper's prompted generation. Shared by the neural text families: each item's prompt
is the first ``prompt_len`` words of a random training item, continued by beam search. The ``gpt``
family's block generation (its ``continuation`` setting): prompts are fixed-size blocks of the
packed prompt data (:func:`block_prompts`), and the items are the continuations' sentences
(:func:`continuation_items`)."""

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


def block_prompts(stream: np.ndarray, block: int, n: int, n_items: int, rng: np.random.Generator) -> TokenSequences:
    """The Nature paper's prompts: ``block``-piece blocks of ``stream`` (the prompt data packed,
    ``</s> item </s> item ...``, cut from its start; the last partial block dropped). As many as
    ``n`` of its ``n_items`` items fill, ``n / n_items`` of the blocks (every block once when ``n``
    is ``n_items``: a generated set the size of the original), drawn with ``rng``, in stream order."""
    block = min(block, len(stream) - 1)
    n_blocks = (len(stream) - 1) // block if block > 0 else 0
    if n_blocks == 0:
        raise ValueError("no prompt blocks: the prompt data is empty")
    want = max(1, int(round(n_blocks * n / max(n_items, 1)))) if n > 0 else 0
    rows = np.sort(rng.choice(n_blocks, want, replace=want > n_blocks))
    tokens = stream[rows[:, None] * block + np.arange(block)].reshape(-1).astype(np.int32)
    return TokenSequences(tokens, np.arange(want + 1, dtype=np.int64) * block)


def continuation_items(prompts: TokenSequences, pieces: TokenSequences, ends_word: np.ndarray,
                       eos: int = 0) -> TokenSequences:
    """The items of block continuations: each continuation's pieces split at ``eos`` into
    sentences (empty ones dropped), without the pieces that finish a word the prompt began and
    without a last word left unfinished, so that every item decodes into whole words. A
    continuation's first and last items are usually parts of sentences, as the paper's 64-token
    blocks begin and end mid-sentence."""
    ends = ends_word.copy()
    ends[eos] = True  # a boundary between words
    last = prompts.tokens[prompts.offsets[1:] - 1] if len(prompts) else np.zeros(0, dtype=np.int32)
    items = []
    for i in range(len(pieces)):
        c = pieces.tokens[pieces.offsets[i]: pieces.offsets[i + 1]]
        bounds = np.flatnonzero(ends[c])
        if len(bounds) == 0:
            continue
        first = bounds[0]
        lo = 0 if ends[last[i]] else first + (c[first] != eos)  # drop the end of the prompt's word
        c = c[lo: bounds[-1] + 1]
        for part in np.split(c, np.flatnonzero(c == eos)):
            part = part[part != eos]
            if len(part):
                items.append(part)
    lengths = np.array([len(x) for x in items], dtype=np.int64)
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenSequences(np.concatenate(items).astype(np.int32) if items else np.zeros(0, np.int32), offsets)
