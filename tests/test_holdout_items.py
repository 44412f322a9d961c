"""``holdout_items``: how many held-out human items every generation is scored on."""

import pytest

from collapselab.config import make_config
from collapselab.corpus import load_corpus
from collapselab.errors import UserError


def test_family_defaults():
    assert make_config({"family": "ngram"}).holdout_items == 5000
    assert make_config({"family": "smollm2"}).holdout_items == 500  # a 135 M model scores slowly on a CPU
    assert make_config({"family": "vae"}).holdout_items == 300
    assert make_config({"family": "gaussian"}).holdout_items is None  # the theory models keep their own rule


def test_text_holdout_is_capped():
    corpus = load_corpus(make_config({"family": "ngram", "train_items": 500, "holdout_items": 123}))
    assert len(corpus.holdout) == 123
    default = load_corpus(make_config({"family": "ngram", "train_items": 500}))
    assert len(default.holdout) == 5000
    full = load_corpus(make_config({"family": "ngram", "train_items": 500, "holdout_items": 10**9}))
    assert len(full.holdout) > 5000

    def sentences(c):
        words, off = c.vocab.words[c.holdout.tokens], c.holdout.offsets
        return {tuple(words[off[i]:off[i + 1]]) for i in range(len(off) - 1)}

    # the cap draws from the same held-out documents: never a training sentence
    assert sentences(corpus) <= sentences(full)


def test_image_holdout():
    corpus = load_corpus(make_config({"family": "gmm", "corpus": "digits", "train_items": 200, "holdout_items": 150}))
    assert len(corpus.holdout) == 150


def test_bad_value_is_a_user_error():
    with pytest.raises(UserError, match="holdout_items"):
        make_config({"family": "ngram", "holdout_items": 0})  # named in the message
