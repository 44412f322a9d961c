"""Pretraining the ``gpt`` family on human text, once, cached on disk.

The Nature paper fine-tunes a *pretrained* model (OPT-125m). :func:`pretrained` gives the ``gpt``
family the same start: a BPE tokenizer and a transformer trained on human text that is neither the
run's training set nor its held-out set (the run's corpus reserve, :mod:`collapselab.models.gpt`
says which part). Pretraining depends on nothing but that text, the word vocabulary and the
settings below, never on a run's random stream (its seed is :data:`PRETRAIN_SEED`), so its result
is cached: ``$COLLAPSELAB_CACHE`` (default ``~/.cache/collapselab``) ``/gpt_pretrain/<key>.pkl``,
keyed by the sha256 of the vocabulary's words, the text's word ids, every setting that shapes the
weights, :data:`FORMAT` and torch's version, written atomically (a killed run leaves no half file).
A run that finds the file loads it: the same weights, bit for bit, as training them again.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np

from collapselab.atomic import atomic_write
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import Vocabulary
from collapselab.metrics.image_features import cache_dir

FORMAT = "gpt-pretrain-v1"  # change whenever pretraining (or what the file holds) changes
PRETRAIN_SEED = 0  # the initialisation and shuffling of pretraining: a setting, not a run's draw


def pretrain_key(vocab: Vocabulary, text: TokenSequences, settings: dict) -> str:
    """sha256 of everything that determines the pretrained tokenizer and weights."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "torch": torch.__version__, "seed": PRETRAIN_SEED, **settings},
                        sort_keys=True).encode())
    h.update("\n".join(vocab.words.tolist()).encode())
    h.update(np.ascontiguousarray(text.tokens, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(text.offsets, dtype=np.int64).tobytes())
    return h.hexdigest()


def cache_path(key: str):
    return cache_dir() / "gpt_pretrain" / f"{key}.pkl"


def pretrained(model, text: TokenSequences, device: str):
    """``(bpe, net, loss_history, path, reused)``: ``model``'s tokenizer and transformer pretrained
    on ``text`` for ``model.pretrain_epochs`` epochs (its size, ``batch_size`` and ``lr``), from
    the cache when an earlier run made them."""
    import torch

    from collapselab.models.bpe import WordBPE
    from collapselab.models.torch_utils import torch_generator
    from collapselab.models.transformer import GPT, GPTConfig

    settings = {k: getattr(model, k) for k in ("bpe_vocab", "n_layer", "n_head", "n_embd", "block_size",
                                               "batch_size", "lr", "pretrain_epochs")}
    settings["device"] = torch.device(device).type  # CUDA and CPU kernels round differently
    path = cache_path(pretrain_key(model.vocab, text, settings))
    if path.is_file():
        with open(path, "rb") as f:
            saved = pickle.load(f)
        bpe = saved["bpe"]
        bpe.vocab = model.vocab
        net = GPT(GPTConfig(**saved["config"])).to(device)
        net.load_state_dict(saved["state"])
        return bpe, net, saved["loss"], path, True
    rng = np.random.default_rng(PRETRAIN_SEED)
    bpe = WordBPE(model.vocab, model.bpe_vocab).fit(text)
    config = GPTConfig(bpe.n_pieces, model.block_size, model.n_layer, model.n_head, model.n_embd)
    net = GPT.create(config, torch_generator(rng, device), device)
    with torch.enable_grad():
        loss = model.train_net(net, bpe.encode(text), rng, model.pretrain_epochs, device)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    saved = {"bpe": _without_vocab(bpe), "config": config.__dict__, "state": state, "loss": loss, "settings": settings}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(saved, f, protocol=pickle.HIGHEST_PROTOCOL)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return bpe, net, loss, path, False


def _without_vocab(bpe):
    """A copy of ``bpe`` without its vocabulary (the key holds it; the loader puts the run's back)."""
    import copy

    out = copy.copy(bpe)
    out.vocab = None
    return out
