"""The ``gpt`` family's Nature-paper recipe: prompts from the original data, 64-piece blocks,
pretraining cached on disk, checkpoint selection on human validation text. Tiny models, seconds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from collapselab.config import ExperimentConfig
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
from collapselab.models import gpt as gpt_module
from collapselab.models.gpt import NATURE_RECIPE, GPTModel, packed
from collapselab.models.prompting import block_prompts, continuation_items, heads
from collapselab.models.torch_utils import set_threads

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, bpe_vocab=400, batch_size=16, lr=1e-2)


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():  # a small shared machine: one thread is faster (docs/gpt.md, "Threads")
    saved = torch.get_num_threads()
    set_threads(1)
    yield
    set_threads(saved)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSELAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def corpus():
    return build_text_corpus(itertools.islice(sotu_documents(), 40), name="sotu", n_train=600)


def _items(data: TokenSequences) -> set:
    return {tuple(data.tokens[data.offsets[i]: data.offsets[i + 1]].tolist()) for i in range(len(data))}


@pytest.mark.parametrize("prompts", ["original", "train"])
def test_beam_prompts_come_from_the_original_data_at_later_generations(corpus, prompts):
    gen0 = GPTModel(corpus.vocab, epochs=0, decoding="beam", prompt_len=3, max_len=2, prompts=prompts,
                    **TINY).fit(corpus.train, rng=np.random.default_rng(0), human=corpus)
    synthetic = corpus.pool.take(np.arange(300))  # stands for what generation 0 wrote: other sentences
    gen1 = GPTModel(corpus.vocab, epochs=0, decoding="beam", prompt_len=3, max_len=2, prompts=prompts,
                    **TINY).fit(synthetic, rng=np.random.default_rng(1), init_from=gen0, human=corpus)
    out = gen1.sample(60, rng=np.random.default_rng(2))
    starts = _items(heads(out, np.arange(len(out)), 3))
    original = _items(heads(corpus.train, np.arange(len(corpus.train)), 3))
    own = _items(heads(synthetic, np.arange(len(synthetic)), 3))
    if prompts == "original":
        assert starts <= original and not starts <= own
        assert gen1.original_ is corpus.train
    else:  # the old behaviour: the generation's own training items
        assert starts <= own and not starts <= original


def test_original_prompts_follow_the_lineage_without_the_corpus(corpus):
    gen0 = GPTModel(corpus.vocab, epochs=0, prompts="original", **TINY).fit(corpus.train, rng=np.random.default_rng(0))
    gen1 = GPTModel(corpus.vocab, epochs=0, prompts="original", **TINY).fit(
        corpus.pool.take(np.arange(50)), rng=np.random.default_rng(1), init_from=gen0)
    assert gen1.original_ is corpus.train and gen1._prompt_data() is corpus.train


def test_pretraining_is_cached_reused_and_keyed(corpus, cache):
    kw = dict(epochs=0, pretrain_items=300, pretrain_epochs=0.5, **TINY)
    a = GPTModel(corpus.vocab, **kw).fit(corpus.train, rng=np.random.default_rng(0), human=corpus)
    assert not a.pretrain_reused_ and a.pretrain_path_.is_file() and a.pretrain_path_.parent.parent == cache
    assert not list(cache.rglob("*.tmp*"))  # written atomically: no temporary file left
    b = GPTModel(corpus.vocab, **kw).fit(corpus.train, rng=np.random.default_rng(7), human=corpus)
    assert b.pretrain_reused_ and b.pretrain_path_ == a.pretrain_path_
    for (k, v), w in zip(a.net_.state_dict().items(), b.net_.state_dict().values()):
        assert torch.equal(v, w), k
    assert np.array_equal(a.bpe_.encode(corpus.holdout).tokens, b.bpe_.encode(corpus.holdout).tokens)
    assert a.perplexity(corpus.holdout) == b.perplexity(corpus.holdout)
    # every setting that shapes the weights is in the key: a change pretrains again
    for change in ({"pretrain_epochs": 0.25}, {"lr": 5e-3}, {"pretrain_items": 250}, {"bpe_vocab": 300}):
        c = GPTModel(corpus.vocab, **{**kw, **change}).fit(corpus.train, rng=np.random.default_rng(0), human=corpus)
        assert not c.pretrain_reused_ and c.pretrain_path_ != a.pretrain_path_, change
    # the pretraining text is the end of the reserve, before the validation sentences: neither train nor holdout
    pool = corpus.pool
    pre, val = GPTModel(corpus.vocab, pretrain_items=300, val_items=100, **TINY)._reserve(corpus)
    assert _items(pre) == _items(pool.take(np.arange(len(pool) - 400, len(pool) - 100)))
    assert _items(val) == _items(pool.take(np.arange(len(pool) - 100, len(pool))))


def test_pretraining_helps_the_held_out_perplexity(corpus):
    plain = GPTModel(corpus.vocab, epochs=1, **TINY).fit(corpus.train, rng=np.random.default_rng(0))
    pre = GPTModel(corpus.vocab, epochs=1, pretrain_items=1500, pretrain_epochs=1, **TINY).fit(
        corpus.train, rng=np.random.default_rng(0), human=corpus)
    assert pre.perplexity(corpus.holdout) < 0.9 * plain.perplexity(corpus.holdout)


def test_checkpoint_selection_keeps_the_best_epoch_not_the_last(corpus):
    """Fine-tuning on one word repeated makes the human validation text worse epoch after epoch:
    the kept weights are an early epoch's, not the last."""
    junk = TokenSequences(np.full(600 * 20, 50, dtype=np.int32), np.arange(601) * 20)
    m = GPTModel(corpus.vocab, pretrain_items=800, val_items=150, **{**TINY, "epochs": 4, "lr": 3e-2})
    m.fit(junk, rng=np.random.default_rng(0), human=corpus)
    val = m._reserve(corpus)[1]
    h = m.val_perplexity_
    assert len(h) == 4 and m.best_epoch_ == int(np.argmin(h)) + 1
    assert m.best_epoch_ != 4 and h[-1] > min(h)
    assert m.perplexity(val) == pytest.approx(min(h), rel=1e-12)  # the model now holds that epoch's weights


def test_recipe_blocks_are_64_pieces(corpus, monkeypatch):
    cfg = ExperimentConfig(family="gpt", model={"recipe": "nature"}).model
    assert {k: cfg[k] for k in NATURE_RECIPE} == NATURE_RECIPE
    assert cfg["block_size"] == 64 and cfg["continuation"] == 64 and cfg["prompts"] == "original"
    assert ExperimentConfig(family="gpt", model={"recipe": "nature", "decoding": "sample"}).model["decoding"] == "sample"
    with pytest.raises(ValueError, match="scratch"):
        ExperimentConfig(family="gpt", model={"recipe": "nature", "init": "scratch"})

    seen = {}

    def spy(prompts, pieces, ends_word):
        seen["prompts"], seen["pieces"] = prompts, pieces
        return continuation_items(prompts, pieces, ends_word)

    monkeypatch.setattr(gpt_module, "continuation_items", spy)
    recipe = {**NATURE_RECIPE, "pretrain_items": 400, "val_items": 100, "epochs": 1, "num_beams": 2}
    m = GPTModel(corpus.vocab, **{**TINY, **recipe}).fit(corpus.train, rng=np.random.default_rng(0), human=corpus)
    assert m.net_.config.block_size == 64
    out = m.sample(len(corpus.train), rng=np.random.default_rng(1))
    stream = packed(m.bpe_.encode(corpus.train))
    p, c = seen["prompts"], seen["pieces"]
    assert len(p) == (len(stream) - 1) // 64  # every block of the original once: a set its size
    assert np.all(p.lengths == 64) and np.all(c.lengths == 64)
    blocks = stream[: len(p) * 64].reshape(-1, 64)
    assert np.array_equal(p.tokens.reshape(-1, 64), blocks)
    assert len(out) > 0 and out.tokens.min() >= 2  # word ids, never </s>
    # sampling continues the same blocks by 64 pieces too
    m.decoding = "sample"
    m.sample(len(corpus.train) // 4, rng=np.random.default_rng(1))
    assert np.all(seen["prompts"].lengths == 64) and np.all(seen["pieces"].lengths == 64)
    assert len(seen["prompts"]) == round(len(blocks) / 4)


def test_block_prompts_and_continuation_items():
    stream = np.arange(1, 202)  # 201 pieces: 3 blocks of 64, the rest dropped
    p = block_prompts(stream, 64, 10, 10, np.random.default_rng(0))
    assert np.array_equal(p.tokens, np.arange(1, 193))
    ends = np.zeros(10, dtype=bool)
    ends[[5, 6]] = True  # pieces 5 and 6 end a word; 0 is </s>
    prompts = TokenSequences.from_lists([[3, 4], [3, 5]])  # the first ends mid-word, the second on a word end
    cont = TokenSequences.from_lists([[4, 5, 3, 6, 0, 3, 5, 0, 0, 2, 4], [3, 5, 0, 4]])
    items = continuation_items(prompts, cont, ends)
    # row 0: "4 5" finishes the prompt's word (dropped); "2 4" is left unfinished (dropped)
    # row 1: "4" after the last boundary is unfinished
    assert items.to_lists() == [[3, 6], [3, 5], [3, 5]]


def test_finetune_lr_applies_from_trained_weights_only(corpus):
    def fit(init_from=None, **kw):
        return GPTModel(corpus.vocab, epochs=0.1, **{**TINY, **kw}).fit(
            corpus.train, rng=np.random.default_rng(0), init_from=init_from).loss_history_

    # from scratch, finetune_lr is not used
    assert np.array_equal(fit(lr=1e-2), fit(lr=1e-2, finetune_lr=1e-4))
    base = GPTModel(corpus.vocab, epochs=0.1, **TINY).fit(corpus.train, rng=np.random.default_rng(5))
    # from trained weights it replaces lr
    assert np.array_equal(fit(base, lr=1e-2, finetune_lr=1e-4), fit(base, lr=1e-4))
    assert not np.array_equal(fit(base, lr=1e-2, finetune_lr=1e-4), fit(base, lr=1e-2))
