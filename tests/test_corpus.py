"""The corpus builder: its streaming id-based sentence cut agrees with the reference
``sentences()``, the vocabulary is ordered by training frequency, and held-out-only words
become <unk>."""

from collections import Counter

import numpy as np

from collapselab.corpus.text_corpus import build_text_corpus
from collapselab.corpus.tokenize import SPECIALS, UNK_ID, sentences, tokenize

DOCS = [
    "The cat sat. The cat ran! Did the dog run? " + " ".join(["word"] * 23) + " end",
    "A dog, a cat and a bird. Zebras are rare here. The end",
    "The cat. Only here: xylophone quokka.",
]


def test_sentence_cut_and_vocab_match_the_reference():
    max_len = 10
    corpus = build_text_corpus(((f"d{i}", t) for i, t in enumerate(DOCS)), name="t", n_train=None,
                               holdout_fraction=1e-9, max_len=max_len)
    # with no hashed hold-out documents, the last 10% of sentences are held out
    expected = [" ".join(s) for d in DOCS for s in sentences(tokenize(d), max_len)]
    got = corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.holdout)
    assert Counter(got[: len(corpus.train)]) + Counter(expected[len(corpus.train):]) == Counter(expected)
    assert all(len(s.split()) <= max_len for s in got)
    # vocabulary: training words only, most frequent first, ties alphabetical
    train_words = Counter(w for s in expected[: len(corpus.train)] for w in s.split())
    order = sorted(train_words, key=lambda w: (-train_words[w], w))
    assert list(corpus.vocab.words[len(SPECIALS):]) == order


def test_held_out_only_words_become_unk():
    docs = [(f"d{i}", t) for i, t in enumerate(DOCS)]
    corpus = build_text_corpus(docs, name="t", n_train=None, holdout_fraction=1e-9)
    held = corpus.vocab.decode(corpus.holdout)
    assert any("<unk>" in s for s in held)
    assert "quokka" not in set(corpus.vocab.words)
    vocab = set(corpus.vocab.words)
    held_words = [w for d in DOCS for s in sentences(tokenize(d), 100) for w in s][-len(corpus.holdout.tokens):]
    assert {"xylophone", "quokka"} <= set(held_words) - vocab
    assert (corpus.holdout.tokens == UNK_ID).sum() == sum(w not in vocab for w in held_words)
    assert np.all(corpus.train.tokens != UNK_ID)
