"""Tiny random causal language models for the LM-detector tests (test_lm_detect.py, test_scan_lm.py).

A 2-layer, 16-wide LlamaForCausalLM over a 40-word whitespace vocabulary (a ``tokenizers``
WordLevel model in transformers' PreTrainedTokenizerFast, ``<|endoftext|>`` at id 0, as SmolLM2),
written with :func:`collapselab.detect.lm.save_model` so the detectors load it as they load
SmolLM2. The output layer is scaled up so the model's distributions are peaked: its own samples
then look unlike uniformly random word strings ("human" text here), as an LLM's text looks unlike a
human's to the LLM. Built in well under a second.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

WORDS = ["<|endoftext|>", "<unk>"] + (
    "the a of to and in that it is was for on with as by at from this we our nation people government year "
    "congress states united new great country must will have be not all zephyr quorum lantern obsidian"
).split()


def make_tiny_lm(folder: Path, seed: int = 0, *, sharpen: float = 60.0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from collapselab.detect.lm import save_model

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="<unk>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpen)
    return save_model(model.eval(), fast, folder)


def random_texts(n: int, seed: int = 0, *, low: int = 1, high: int = 40) -> list[str]:
    """``n`` strings of uniformly random words (ids 2..), of ``low``..``high`` words."""
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[i] for i in rng.integers(2, len(WORDS), rng.integers(low, high + 1))) for _ in range(n)]


def sample_texts(folder: Path, n: int, length: int, seed: int = 0) -> list[str]:
    """``n`` texts of ``length`` words sampled from the model in ``folder`` after ``<|endoftext|>``
    (temperature 1; <|endoftext|> and <unk> never drawn)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros((n, 1), dtype=torch.long)
    with torch.no_grad():
        for _ in range(length):
            logits = model(x).logits[:, -1].float()
            logits[:, :2] = -torch.inf
            x = torch.cat([x, torch.multinomial(torch.softmax(logits, -1), 1, generator=g)], 1)
    return [" ".join(WORDS[i] for i in row[1:]) for row in x.tolist()]


@lru_cache(maxsize=8)
def _float64(folder: str):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()


def naive_stats(folder_p: Path, folder_q: Path | None, ids: list[int]):
    """Per token of one text read after ``<|endoftext|>``, in float64 with the full logits:
    (log p(x_t), sum_v q(v) log p(v), sum_v q(v) log^2 p(v) - mu^2) under models ``p`` and ``q``."""
    import torch

    def logprobs(folder):
        with torch.no_grad():
            return torch.log_softmax(_float64(str(folder))(torch.tensor([[0, *ids]])).logits[0, :-1].double(), -1)

    logp = logprobs(folder_p)
    logq = logp if folder_q is None else logprobs(folder_q)
    q = logq.exp()
    lp = logp[torch.arange(len(ids)), torch.tensor(ids)]
    mu = (q * logp).sum(-1)
    var = (q * logp ** 2).sum(-1) - mu ** 2
    return lp.numpy(), mu.numpy(), var.numpy()


def naive_fast_detectgpt(folder: Path, ids: list[int]) -> float:
    """Bao et al. 2024, analytic form: (sum log p - sum mu) / sqrt(sum var), sampling model = scoring model."""
    if not ids:
        return float("nan")
    lp, mu, var = naive_stats(folder, None, ids)
    return float((lp.sum() - mu.sum()) / np.sqrt(var.sum()))


def naive_binoculars(observer: Path, performer: Path, ids: list[int]) -> float:
    """Hans et al. 2024, negated: -(log PPL under the performer / cross-entropy of the observer's
    probabilities against the performer's log-probabilities)."""
    if not ids:
        return float("nan")
    lp, xent, _ = naive_stats(performer, observer, ids)
    log_ppl = -lp.mean()
    log_xppl = -xent.mean()
    return float(-(log_ppl / log_xppl))
