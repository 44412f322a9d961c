"""Words in, ids out: the tokenizer, the sentence splitter and the vocabulary.

Text is lower-cased and split into words (letters/digits, with an inner apostrophe or hyphen) and
single punctuation marks. An *item* of a text corpus is a sentence: the tokens up to and including
a ``.``, ``!`` or ``?``. Ids 0, 1 and 2 are reserved for ``<s>``, ``</s>`` and ``<unk>``.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokens import SPECIALS
from collapselab.corpus.tokens import UNK as UNK_ID

_TOKEN = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*|[^\sa-z0-9]")
SENTENCE_END = (".", "!", "?")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def sentences(tokens: list[str], max_len: int) -> Iterator[list[str]]:
    """Cut a token list after each sentence-final mark; long runs are cut every ``max_len``.

    The reference definition of an item; the corpus builder does the same cut on id arrays."""
    start = 0
    for i, tok in enumerate(tokens):
        if tok in SENTENCE_END or i - start + 1 >= max_len:
            yield tokens[start : i + 1]
            start = i + 1
    if start < len(tokens):
        yield tokens[start:]


class Vocabulary:
    """A fixed list of words; position = id. Built once from the human training text
    (:func:`collapselab.corpus.text_corpus.build_text_corpus`: most frequent first)."""

    def __init__(self, words: Iterable[str]):
        self.words = np.array(list(SPECIALS) + [w for w in words if w not in SPECIALS], dtype=object)
        self._index = pd.Index(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, token_lists: list[list[str]]) -> TokenSequences:
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        flat = [t for toks in token_lists for t in toks]
        ids = self._index.get_indexer(flat) if flat else np.zeros(0, np.int64)
        ids = np.where(ids < 0, UNK_ID, ids)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return TokenSequences(ids.astype(np.int32), offsets)

    def decode(self, seqs: TokenSequences) -> list[str]:
        words = self.words[seqs.tokens]
        return [" ".join(words[seqs.offsets[i] : seqs.offsets[i + 1]]) for i in range(len(seqs))]

    def save(self, path) -> None:
        from collapselab.atomic import atomic_write_text

        atomic_write_text(path, "\n".join(self.words[len(SPECIALS):]) + "\n")

    @classmethod
    def load(cls, path) -> "Vocabulary":
        with open(path, encoding="utf-8") as f:
            return cls(line.rstrip("\n") for line in f if line.rstrip("\n"))
