"""The ``gpt`` family: a tiny GPT-2 on ~2,000 real State of the Union sentences.

One model is trained once for the module (a few seconds); the other tests fit for a fraction of
an epoch or not at all (``epochs=0``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
from collapselab.errors import UserError
from collapselab.models import decoding
from collapselab.models.gpt import GPTModel

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, bpe_vocab=500, batch_size=16, lr=1e-2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a small shared machine, two threads waiting on each other are slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    return build_text_corpus(itertools.islice(sotu_documents(), 40), name="sotu", n_train=2000)


@pytest.fixture(scope="module")
def trained(corpus):
    return GPTModel(corpus.vocab, epochs=1, **TINY).fit(corpus.train, rng=np.random.default_rng(0))


def _prompts(model, lists):
    return model._start(TokenSequences.from_lists(lists))


def test_samples_are_word_ids_of_the_vocabulary(trained, corpus):
    s = trained.sample(40, rng=np.random.default_rng(1))
    assert len(s) == 40 and s.n_tokens > 40
    assert s.tokens.min() >= 2 and s.tokens.max() < len(corpus.vocab)  # never <s> or </s>
    assert s.lengths.max() <= trained.max_len
    ll = trained.log_likelihood(s)
    assert ll.shape == (40,) and np.all(np.isfinite(ll)) and np.all(ll < 0)
    assert np.array_equal(trained.n_scored(s), s.lengths + 1)
    assert len(trained.sample(0, rng=np.random.default_rng(1))) == 0
    assert trained.log_likelihood(TokenSequences.empty()).shape == (0,)


def test_same_seed_same_model_and_samples(corpus):
    def run(seed):
        m = GPTModel(corpus.vocab, epochs=0.1, **TINY).fit(corpus.train, rng=np.random.default_rng(seed))
        return m.loss_history_, m.sample(20, rng=np.random.default_rng(5))

    (l1, s1), (l2, s2), (l3, _) = run(3), run(3), run(4)
    assert len(l1) > 5 and np.array_equal(l1, l2) and s1 == s2
    assert not np.array_equal(l1, l3)


def test_training_lowers_the_loss(trained):
    h = trained.loss_history_
    assert h[0] > np.log(trained.bpe_.n_pieces) - 0.5  # starts near uniform
    assert h[-10:].mean() < h[0] - 1.0


def test_held_out_perplexity_far_below_uniform(trained, corpus):
    # uniform over the pieces: log(n_pieces) per piece and per </s>, spread over the words + </s>
    hold = corpus.holdout
    pieces = trained.bpe_.encode(hold)
    uniform = np.exp((pieces.n_tokens + len(hold)) * np.log(trained.bpe_.n_pieces) / (hold.n_tokens + len(hold)))
    ppl = trained.perplexity(hold)
    assert ppl < uniform / 5
    assert np.isclose(ppl, np.exp(-trained.log_likelihood(hold).sum() / (hold.lengths + 1).sum()))


def test_every_piece_is_scored_once_even_past_the_block(trained, corpus):
    long_items = TokenSequences(corpus.train.tokens[:400], np.array([0, 7, 150, 400]))  # up to ~300 pieces
    pieces = trained.bpe_.encode(long_items)
    assert pieces.lengths.max() > 3 * trained.block_size
    logp, item = trained.token_log_probs(long_items)
    assert np.array_equal(np.bincount(item, minlength=3), pieces.lengths + 1)
    assert np.all(np.isfinite(logp)) and np.all(logp <= 0)


def test_fine_tuning_starts_from_generation_0(trained, corpus):
    before = {k: v.clone() for k, v in trained.net_.state_dict().items()}
    other = corpus.pool.take(np.arange(300))
    g1 = GPTModel(corpus.vocab, epochs=0, **TINY).fit(other, rng=np.random.default_rng(1), init_from=trained)
    assert len(g1.loss_history_) == 0 and g1.bpe_ is trained.bpe_
    assert all(torch.equal(v, before[k]) for k, v in g1.net_.state_dict().items())
    g1b = GPTModel(corpus.vocab, epochs=1, **TINY).fit(other, rng=np.random.default_rng(1), init_from=trained)
    fresh = GPTModel(corpus.vocab, epochs=1, **TINY).fit(other, rng=np.random.default_rng(1))
    assert g1b.loss_history_[0] < fresh.loss_history_[0] - 1.0  # it already knows the language
    assert all(torch.equal(v, before[k]) for k, v in trained.net_.state_dict().items())  # gen 0 untouched


def test_kv_cache_and_full_recompute_generate_the_same_tokens(trained):
    prompts = _prompts(trained, [[5, 6, 7, 8, 9], [10], [11, 12, 13]])  # left padding
    ends = torch.as_tensor(trained.bpe_.ends_word_)
    kw = dict(max_words=10**6, max_tokens=3 * trained.block_size, ends_word=ends, generator=None, top_k=1)
    with torch.no_grad():
        cached = decoding.sample(trained.net_, prompts, **kw)
        full = decoding.sample(trained.net_, prompts, use_cache=False, **kw)
        beam1 = decoding.beam_search(trained.net_, prompts, num_beams=1, max_words=10**6,
                                     max_tokens=3 * trained.block_size, ends_word=ends)
    assert cached.lengths.sum() > 20
    assert cached == full  # also past block_size, where the window slides
    assert beam1 == cached  # one beam is greedy


def test_greedy_matches_row_by_row_generation(trained, corpus):
    lists = [[5, 6, 7, 8, 9], [10], [11, 12, 13]]
    together = trained.complete(TokenSequences.from_lists(lists), 6, rng=np.random.default_rng(0), top_k=1)
    alone = [trained.complete(TokenSequences.from_lists([p]), 6, rng=np.random.default_rng(9), top_k=1) for p in lists]
    assert together == TokenSequences.concat(alone)
    assert together.lengths.max() <= 6
    long_prompt = TokenSequences(corpus.train.tokens[:200], np.array([0, 200]))  # past block_size
    assert len(trained.complete(long_prompt, 4, rng=np.random.default_rng(0)).item(0)) <= 4


def test_beam_decoding_continues_training_prompts(trained, corpus):
    m = GPTModel(corpus.vocab, decoding="beam", prompt_len=4, max_len=12, repetition_penalty=1.3, **TINY)
    m.bpe_, m.net_, m.device_, m.train_data_ = trained.bpe_, trained.net_, "cpu", corpus.train
    s = m.sample(12, rng=np.random.default_rng(2))
    heads = {tuple(corpus.train.item(i)[:4]) for i in range(len(corpus.train))}
    assert all(tuple(s.item(i)[:4]) in heads for i in range(12))
    assert s.lengths.min() > 4 and s.lengths.max() <= 4 + 12
    assert m.sample(12, rng=np.random.default_rng(2)) == s
    m.prompt_len = 0
    with pytest.raises(UserError, match="prompt_len"):
        m.sample(3, rng=np.random.default_rng(2))


def test_words_round_trip_and_unknown_words_become_unk(trained, corpus):
    bpe = trained.bpe_
    assert bpe.decode(bpe.encode(corpus.train)) == corpus.train
    made_up = bpe.tokenizer_.encode(["zqxvb\u2581", "the\u2581"], is_pretokenized=True).ids
    out = bpe.decode(TokenSequences.from_lists([made_up]))
    assert out.to_lists() == [[2, int(corpus.vocab._index.get_loc("the"))]]


def test_our_transformer_computes_gpt2(trained):
    transformers = pytest.importorskip("transformers")
    cfg = trained.net_.config
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    conv1d = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # GPT-2 stores these transposed
    sd = {k: v.t() if k.endswith(conv1d) else v for k, v in trained.net_.state_dict().items()}
    hf.transformer.load_state_dict(sd, strict=False)
    x = torch.randint(0, cfg.vocab_size, (3, cfg.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, trained.net_(x), atol=1e-4)


def test_bad_configs_are_user_errors(corpus):
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            GPTModel(corpus.vocab, device="cuda", **TINY).fit(corpus.train, rng=np.random.default_rng(0))
    with pytest.raises(UserError, match="GiB"):
        GPTModel(corpus.vocab, n_layer=48, n_embd=16384, n_head=16).fit(corpus.train, rng=np.random.default_rng(0))
    with pytest.raises(UserError, match="multiple of n_head"):
        GPTModel(corpus.vocab, n_embd=30, n_head=4).fit(corpus.train, rng=np.random.default_rng(0))


def test_a_refused_run_leaves_no_run_folder(shared_text_folder, tmp_path, monkeypatch):
    """A model too big for the machine is refused at generation 0's fit, after the folder was made:
    the folder goes, so no unfinished run is left for `--resume` to pick up; `--device cuda` on a
    machine without a GPU is refused before any folder is made."""
    import collapselab as cl

    monkeypatch.chdir(tmp_path)
    too_big = {"family": "gpt", "corpus": str(shared_text_folder), "generations": 1, "train_items": 100,
               "model": {**TINY, "n_layer": 48, "n_embd": 16384, "n_head": 16}}
    with pytest.raises(UserError, match="GiB"):
        cl.run_experiment(too_big)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    (tmp_path / "mine").mkdir()  # an empty folder the user named: emptied again, kept
    with pytest.raises(UserError, match="GiB"):
        cl.run_experiment(too_big, out=tmp_path / "mine")
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            cl.run_experiment({**too_big, "model": {**TINY, "device": "cuda"}}, out=tmp_path / "gpu")
        assert not (tmp_path / "gpu").exists()


def test_beam_decoding_gets_a_prompt_length_from_the_config():
    from collapselab.config import BEAM_PROMPT_LEN, make_config

    assert make_config({"family": "gpt", "model": {"decoding": "beam"}}).model["prompt_len"] == BEAM_PROMPT_LEN
    assert make_config({"family": "gpt", "model": {"decoding": "beam", "prompt_len": 3}}).model["prompt_len"] == 3
    assert make_config({"family": "gpt"}).model["prompt_len"] == 0  # sampling needs none
    with pytest.raises(UserError, match="prompt_len"):
        make_config({"family": "gpt", "model": {"decoding": "beam", "prompt_len": 0}})

