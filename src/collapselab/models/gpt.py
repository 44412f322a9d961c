"""``gpt``: a small GPT-2 trained on the run's text, word ids in and out.

The model reads BPE pieces (:mod:`collapselab.models.bpe`, trained on generation 0's human text)
and is GPT-2's transformer (:mod:`collapselab.models.transformer`). Everything the loop and the
metrics see is word-level, like the n-gram's: :meth:`GPTModel.sample` and
:meth:`GPTModel.complete` return word ids (a generated word the vocabulary lacks is ``<unk>``),
and :meth:`GPTModel.log_likelihood` is ``log P(words..., </s>)``, the sum over the item's pieces
and its closing ``</s>``, so ``perplexity`` is per word and compares with the n-gram's.

Training (:meth:`GPTModel.fit`)
-------------------------------
Every epoch shuffles the items (with ``rng``) and packs them into one stream,
``</s> item </s> item </s> ...``, cut into windows of ``block_size`` inputs and their next pieces
(the last, partial window is dropped), ``batch_size`` windows a step: nothing is padded, so every
position trains. AdamW (betas 0.9/0.95, weight decay 0.01), gradients clipped at norm 1, a linear
warm-up over the first 5% of steps and a cosine decay to ``lr / 10``. No dropout. ``epochs`` may be
fractional. ``loss_history_`` holds every step's training loss (step 0's before any update).

``init_from=M`` fine-tunes: the tokenizer and the weights are ``M``'s (the Nature paper's recipe
fine-tunes generation ``g`` from generation 0 on what ``g - 1`` wrote); ``init`` only records which
earlier model the engine passed.

Scoring
-------
Each item is read as ``</s> pieces </s>`` from its first ``</s>``: exactly what sampling
generates. An item longer than ``block_size`` pieces is scored in windows that advance by
``block_size // 2``, every piece with at least ``block_size // 2`` pieces of context, as the
generator sees it once its window slides (:mod:`collapselab.models.decoding`).

Sampling
--------
``decoding="sample"``: every item starts from ``</s>`` and draws with temperature, top-k and top-p
(and the repetition penalty) until ``</s>`` or ``max_len`` words. ``decoding="beam"``: the Nature
paper's generation: each item's prompt is the first ``prompt_len`` words of a random training item
(one longer than the prompt where there is one), continued by beam search (``num_beams``,
``repetition_penalty``) for at most ``max_len`` words; the item is prompt + continuation.

Watermarks
----------
``sample(n, rng=, watermark=scheme)`` samples with a text-watermark scheme
(:mod:`collapselab.detect.schemes`): its logits processor acts on the model's BPE pieces after
temperature, top-k and top-p (:mod:`collapselab.models.decoding`). The scheme's token space is
the model's: :meth:`GPTModel.watermark_tokens` turns word-id items into their pieces (what a
detector reads: the item's text in this tokenizer, without the ``</s>`` it starts from) and
:meth:`GPTModel.watermark_vocab_size` is the logits width. A word generated in a piece split the
BPE would not choose reads back in its own split (and a word the vocabulary lacks as ``<unk>``),
as any detector re-tokenising text sees it. Beam decoding refuses a watermark (the schemes'
rules are sampling rules).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import Vocabulary
from collapselab.errors import UserError
from collapselab.models.bpe import EOS_PIECE, WordBPE
from collapselab.models.prompting import check_decoding, training_prompts
from collapselab.models.scoring import WordScores

GEN_BYTES = 256 * 2**20  # key/value cache of one generation chunk
EVAL_LOGITS = 2**24  # logits (floats) of one scoring batch
PIECES_PER_WORD = 4  # a generated row stops after 4 pieces per word it may write (+4)


def _within(seqs: TokenSequences) -> np.ndarray:
    """Every token's position inside its item."""
    return np.arange(seqs.n_tokens, dtype=np.int64) - seqs.offsets[:-1][seqs.item_index()]


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def join(a: TokenSequences, b: TokenSequences) -> TokenSequences:
    """Item ``i`` is ``a[i]`` followed by ``b[i]``."""
    offsets = _offsets(a.lengths + b.lengths)
    tokens = np.empty(int(offsets[-1]), dtype=np.int32)
    tokens[offsets[:-1][a.item_index()] + _within(a)] = a.tokens
    tokens[(offsets[:-1] + a.lengths)[b.item_index()] + _within(b)] = b.tokens
    return TokenSequences(tokens, offsets)


def packed(pieces: TokenSequences) -> np.ndarray:
    """``</s> item </s> item ... </s>`` as one int64 array; item ``i`` starts after position
    ``pieces.offsets[i] + i``."""
    stream = np.full(pieces.n_tokens + len(pieces) + 1, EOS_PIECE, dtype=np.int64)
    stream[pieces.offsets[:-1][pieces.item_index()] + pieces.item_index() + 1 + _within(pieces)] = pieces.tokens
    return stream


class GPTModel(WordScores):
    """A GPT-2 language model over the words of ``vocab`` (see the module docstring).

    Parameters
    ----------
    vocab: the run's word vocabulary.
    n_layer, n_head, n_embd, block_size: the transformer (``block_size``: positions it sees).
    bpe_vocab: BPE pieces learnt from generation 0's training text.
    epochs, batch_size, lr: training (``batch_size`` windows of ``block_size`` pieces a step).
    temperature, top_k, top_p: sampling (``top_k=0`` and ``top_p=1`` switch truncation off).
    decoding: ``"sample"`` or ``"beam"`` (prompted beam search, the Nature paper's).
    num_beams, repetition_penalty, prompt_len: beam search; ``prompt_len`` words of a training
        item are the prompt (``repetition_penalty`` also applies when sampling).
    max_len: longest generated item (``"sample"``) or continuation (``"beam"``), in words.
    device: ``"cpu"`` or ``"cuda"``.
    init: ``"gen0"``, ``"previous"`` or ``"scratch"``: which model generation ``g >= 1`` starts
        from; the engine reads it and passes ``init_from``, the model only records it.
    """

    def __init__(self, vocab: Vocabulary, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 block_size: int = 64, bpe_vocab: int = 8000, epochs: float = 3.0, batch_size: int = 16,
                 lr: float = 5e-3, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 decoding: str = "sample", num_beams: int = 5, repetition_penalty: float = 1.0,
                 prompt_len: int = 0, max_len: int = 100, device: str = "cpu", init: str = "gen0") -> None:
        self.vocab = vocab
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_embd = n_embd
        self.block_size = block_size
        self.bpe_vocab = bpe_vocab
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.decoding = decoding
        self.num_beams = num_beams
        self.repetition_penalty = repetition_penalty
        self.prompt_len = prompt_len
        self.max_len = max_len
        self.device = device
        self.init = init

    # ------------------------------------------------------------------ fitting
    def train_bytes(self) -> int:
        """Rough memory needed to train: float32 weights, gradients and two AdamW moments, plus
        the activations kept for the backward pass and the logits of one batch."""
        from collapselab.models.transformer import GPTConfig

        C, T, V = self.n_embd, self.block_size, self.bpe_vocab
        params = GPTConfig(V, T, self.n_layer, self.n_head, C).n_params()
        acts = self.batch_size * T * (self.n_layer * (16 * C + self.n_head * T) + 3 * V)
        return 4 * (4 * params + acts)

    def _check_params(self) -> None:
        if self.n_embd % self.n_head:
            raise UserError(f"gpt: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head}). "
                            "Change model.n_embd or model.n_head.")
        check_decoding("gpt", self.decoding, self.prompt_len)

    def fit(self, data: TokenSequences, *, rng: np.random.Generator, init_from: "GPTModel | None" = None) -> "GPTModel":
        import torch

        from collapselab.models.torch_utils import check_fits, resolve_device, torch_generator
        from collapselab.models.transformer import GPT, GPTConfig

        if len(data) == 0:
            raise ValueError("cannot fit a gpt model on no items")
        self._check_params()
        device = resolve_device(self.device)
        check_fits(self.train_bytes(), f"gpt (n_layer={self.n_layer}, n_embd={self.n_embd}, "
                   f"block_size={self.block_size}, batch_size={self.batch_size}, bpe_vocab={self.bpe_vocab})", device)
        if init_from is None:
            self.bpe_ = WordBPE(self.vocab, self.bpe_vocab).fit(data)
            config = GPTConfig(self.bpe_.n_pieces, self.block_size, self.n_layer, self.n_head, self.n_embd)
            self.net_ = GPT.create(config, torch_generator(rng, device), device)
        else:
            init_from._check_fitted()
            mine = (self.block_size, self.n_layer, self.n_head, self.n_embd)
            theirs = init_from.net_.config
            if mine != (theirs.block_size, theirs.n_layer, theirs.n_head, theirs.n_embd):
                raise ValueError(f"init_from has another architecture ({theirs}) than this model {mine}")
            self.bpe_ = init_from.bpe_
            self.net_ = copy.deepcopy(init_from.net_).to(device)
        self.device_ = device
        self.train_data_ = data
        with torch.enable_grad():
            self.loss_history_ = self._train(self.bpe_.encode(data), rng)
        self.net_.eval()
        return self

    def _train(self, pieces: TokenSequences, rng: np.random.Generator) -> np.ndarray:
        import torch

        net, device = self.net_, self.device_
        net.train()
        n_stream = pieces.n_tokens + len(pieces) + 1
        T = min(self.block_size, n_stream - 1)
        n_win = (n_stream - 1) // T
        per_epoch = math.ceil(n_win / self.batch_size)
        total = math.ceil(self.epochs * per_epoch - 1e-9)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, betas=(0.9, 0.95), weight_decay=0.01,
                                fused=True)
        warmup = max(1, total // 20)
        losses = np.zeros(total)
        step = 0
        while step < total:
            stream = torch.from_numpy(packed(pieces.take(rng.permutation(len(pieces)))))
            x = stream[: n_win * T].view(n_win, T).to(device)
            y = stream[1: n_win * T + 1].view(n_win, T).to(device)
            for b in range(0, n_win, self.batch_size):
                if step == total:
                    break
                decay = 0.1 + 0.45 * (1 + math.cos(math.pi * step / total))
                for group in opt.param_groups:
                    group["lr"] = self.lr * min(1.0, (step + 1) / warmup) * decay
                loss = net.loss(x[b: b + self.batch_size], y[b: b + self.batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                losses[step] = loss.item()
                step += 1
        return losses

    # ------------------------------------------------------------------ scoring
    def token_log_probs(self, data: TokenSequences) -> tuple[np.ndarray, np.ndarray]:
        """Natural-log probability of every scored piece (each item's pieces and its ``</s>``),
        and the item each belongs to, in item order. ``log_likelihood``, ``n_scored`` (words + 1) and
        ``perplexity`` (per word) follow from it (:class:`~collapselab.models.scoring.WordScores`)."""
        import torch
        import torch.nn.functional as F

        self._check_fitted()
        if len(data) == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        pieces = self.bpe_.encode(data)
        stream = packed(pieces)
        n_t = pieces.lengths + 1  # targets per item
        B = self.net_.config.block_size
        S = max(1, B // 2)
        n_w = 1 + np.maximum(0, -(-(n_t - B) // S))  # windows per item
        w_item = np.repeat(np.arange(len(data)), n_w)
        k = np.arange(int(n_w.sum())) - np.repeat(np.cumsum(n_w) - n_w, n_w)
        start = (pieces.offsets[:-1] + np.arange(len(data)))[w_item] + k * S
        length = np.minimum(B, n_t[w_item] - k * S)
        skip = np.where(k == 0, 0, B - S)  # targets the previous window already scored
        order = np.argsort(-length, kind="stable")
        rows_per = max(1, EVAL_LOGITS // self.bpe_.n_pieces)
        logp, item = [], []
        with torch.no_grad():
            i = 0
            while i < len(order):
                L = int(length[order[i]])
                rows = order[i: i + max(1, rows_per // L)]
                idx = np.minimum(start[rows, None] + np.arange(L), len(stream) - 2)
                x = torch.from_numpy(stream[idx]).to(self.device_)
                y = torch.from_numpy(stream[idx + 1]).to(self.device_)
                logits = self.net_(x)
                lp = -F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="none")
                cols = np.arange(L)
                keep = (cols >= skip[rows, None]) & (cols < length[rows, None])
                logp.append(lp.view(len(rows), L).cpu().numpy()[keep])
                item.append(np.broadcast_to(w_item[rows, None], keep.shape)[keep])
                i += len(rows)
        logp, item = np.concatenate(logp).astype(np.float64), np.concatenate(item)
        back = np.argsort(item, kind="stable")  # item order (batches ran longest window first)
        return logp[back], item[back]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, rng: np.random.Generator, watermark=None) -> TokenSequences:
        """``n`` items of word ids (see the module docstring); ``watermark``: a scheme to sample with."""
        from collapselab.models.torch_utils import torch_generator

        self._check_fitted()
        self._check_params()
        if watermark is not None and self.decoding != "sample":
            raise UserError("gpt: a watermark needs decoding 'sample'; beam search takes none (the schemes' "
                            "generation rules are sampling rules).")
        if self.decoding == "sample":
            starts = TokenSequences(np.full(n, EOS_PIECE, dtype=np.int32), np.arange(n + 1))
            return self.bpe_.decode(self._generate(starts, self.max_len, torch_generator(rng, self.device_),
                                                   watermark=watermark))
        prompts = training_prompts(self.train_data_, n, self.prompt_len, rng)
        pieces = self._generate(self._start(prompts), self.max_len, None, beam=True)
        return join(prompts, self.bpe_.decode(pieces))

    def watermark_tokens(self, data: TokenSequences) -> TokenSequences:
        """The token ids a watermark scheme reads in word-id items: their BPE pieces."""
        self._check_fitted()
        return self.bpe_.encode(data)

    def watermark_vocab_size(self) -> int:
        """The id space the watermark lives in: the model's logits width, its BPE pieces."""
        self._check_fitted()
        return int(self.net_.config.vocab_size)

    def complete(self, prompts: TokenSequences, n_new: int, *, rng: np.random.Generator,
                 top_k: int | None = None, temperature: float | None = None) -> TokenSequences:
        """Continue each prompt by at most ``n_new`` words, sampled with the model's knobs
        (``top_k`` / ``temperature`` override them for this call; ``top_k=1`` is greedy). Item
        ``i`` holds only the continuation of ``prompts[i]``, up to and excluding ``</s>``."""
        from collapselab.models.torch_utils import torch_generator

        self._check_fitted()
        pieces = self._generate(self._start(prompts), n_new, torch_generator(rng, self.device_),
                                top_k=top_k, temperature=temperature)
        return self.bpe_.decode(pieces)

    def _start(self, prompts: TokenSequences) -> TokenSequences:
        """Word prompts as pieces, each after a ``</s>``."""
        eos = TokenSequences(np.full(len(prompts), EOS_PIECE, dtype=np.int32), np.arange(len(prompts) + 1))
        return join(eos, self.bpe_.encode(prompts))

    def _generate(self, prompts: TokenSequences, max_words: int, generator, *, beam: bool = False,
                  top_k: int | None = None, temperature: float | None = None, use_cache: bool = True,
                  watermark=None) -> TokenSequences:
        """Generated pieces per prompt, in chunks whose key/value cache fits ``GEN_BYTES`` (each chunk
        with a fresh watermark processor)."""
        import torch

        from collapselab.models import decoding

        cfg = self.net_.config
        row_bytes = 4 * (2 * cfg.n_layer * cfg.block_size * cfg.n_embd + 4 * cfg.vocab_size)
        chunk = max(1, GEN_BYTES // row_bytes // (self.num_beams if beam else 1))
        ends_word = torch.as_tensor(self.bpe_.ends_word_, device=self.device_)
        common = dict(max_words=max_words, max_tokens=PIECES_PER_WORD * (max_words + 1), ends_word=ends_word,
                      repetition_penalty=self.repetition_penalty, use_cache=use_cache)
        parts = []
        with torch.no_grad():
            for lo in range(0, len(prompts), chunk):
                part = prompts.take(np.arange(lo, min(lo + chunk, len(prompts))))
                if beam:
                    parts.append(decoding.beam_search(self.net_, part, num_beams=self.num_beams, **common))
                else:
                    parts.append(decoding.sample(
                        self.net_, part, generator=generator,
                        temperature=self.temperature if temperature is None else temperature,
                        top_k=self.top_k if top_k is None else top_k, top_p=self.top_p, watermark=watermark, **common))
        return TokenSequences.concat(parts) if parts else TokenSequences.empty()

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError("GPTModel is not fitted: call fit() first")
