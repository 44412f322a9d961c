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
from collapselab.models.prompting import block_prompts, check_decoding, continuation_items, training_prompts
from collapselab.models.scoring import WordScores

NATURE_RECIPE = dict(prompts="original", continuation=64, block_size=64, decoding="beam", num_beams=5,
                     pretrain_items=50000, pretrain_epochs=1.0, val_items=500, epochs=3.0, finetune_lr=1e-3)
"""The Nature paper's recipe (``model: {recipe: nature}``): 64-piece blocks, 5-beam continuations of
64 pieces from 64-piece prompts of the original data, a pretrained start, checkpoint selection."""
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
    prompts: where prompts come from: ``"train"``, the model's own training items (for generation
        ``g >= 1``: what ``g - 1`` wrote), or ``"original"``, generation 0's human training items
        (the Nature paper's).
    continuation: 0, or the paper's block generation: every item is cut from a ``continuation``-piece
        continuation of a ``block_size``-piece block of the prompt data (``</s>`` does not stop it).
    pretrain_items, pretrain_epochs: pretrain on this many human sentences of the corpus reserve
        (:mod:`collapselab.models.gpt_pretrain`, cached); 0 = none.
    val_items: keep the epoch with the best perplexity on this many human sentences of the corpus
        reserve (checkpoint selection); 0 = keep the last.
    finetune_lr: the learning rate when training starts from trained weights (pretrained or
        ``init_from``); ``None``: ``lr``, which pretraining and training from scratch use.
    recipe: ``"nature"`` when the settings are the recipe's (``NATURE_RECIPE``); only recorded.
    """

    def __init__(self, vocab: Vocabulary, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 block_size: int = 64, bpe_vocab: int = 8000, epochs: float = 3.0, batch_size: int = 16,
                 lr: float = 5e-3, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 decoding: str = "sample", num_beams: int = 5, repetition_penalty: float = 1.0,
                 prompt_len: int = 0, max_len: int = 100, device: str = "cpu", init: str = "gen0",
                 prompts: str = "train", continuation: int = 0, pretrain_items: int = 0, pretrain_epochs: float = 1.0,
                 val_items: int = 0, finetune_lr: float | None = None, recipe: str | None = None) -> None:
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
        self.prompts = prompts
        self.continuation = continuation
        self.pretrain_items = pretrain_items
        self.pretrain_epochs = pretrain_epochs
        self.val_items = val_items
        self.finetune_lr = finetune_lr
        self.recipe = recipe

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
        if self.prompts not in ("train", "original"):
            raise UserError(f"gpt: prompts {self.prompts!r} is not 'train' or 'original'. Set model.prompts.")
        check_decoding("gpt", self.decoding, self.prompt_len or self.continuation)

    @property
    def uses_human(self) -> bool:
        """Whether :meth:`fit` wants the run's human corpus (``human=``): for original prompts, for
        pretraining and for checkpoint selection."""
        return self.prompts == "original" or self.pretrain_items > 0 or self.val_items > 0

    def _reserve(self, human) -> tuple:
        """``(pretraining text, validation text)`` from the end of the corpus reserve (``human.pool``:
        its training documents' sentences the run does not train on); ``None`` where not asked for."""
        if not (self.pretrain_items or self.val_items):
            return None, None
        if human is None:
            raise ValueError("gpt: pretrain_items and val_items take text from the run's human corpus: fit(..., human=corpus)")
        pool, need = human.pool, self.pretrain_items + self.val_items
        if len(pool) < need:
            raise UserError(f"gpt: pretraining ({self.pretrain_items} sentences) and validation ({self.val_items}) take "
                            f"{need} sentences of the corpus reserve, which holds {len(pool)}. Lower model.pretrain_items "
                            "or model.val_items, or use fewer --train-items.")
        end = len(pool)
        val = pool.take(np.arange(end - self.val_items, end)) if self.val_items else None
        pre = pool.take(np.arange(end - need, end - self.val_items)) if self.pretrain_items else None
        return pre, val

    def fit(self, data: TokenSequences, *, rng: np.random.Generator, init_from: "GPTModel | None" = None,
            human=None) -> "GPTModel":
        """Train on ``data`` (word-id items); ``init_from``: fine-tune that model's copy; ``human``:
        the run's human corpus (``train``, ``pool``), where :attr:`uses_human`."""
        import torch

        from collapselab.models.torch_utils import check_fits, resolve_device, torch_generator
        from collapselab.models.transformer import GPT, GPTConfig

        if len(data) == 0:
            raise ValueError("cannot fit a gpt model on no items")
        self._check_params()
        device = resolve_device(self.device)
        check_fits(self.train_bytes(), f"gpt (n_layer={self.n_layer}, n_embd={self.n_embd}, "
                   f"block_size={self.block_size}, batch_size={self.batch_size}, bpe_vocab={self.bpe_vocab})", device)
        pretrain, validation = self._reserve(human)
        if init_from is None and pretrain is not None:
            from collapselab.models.gpt_pretrain import pretrained

            self.bpe_, net, self.pretrain_loss_, self.pretrain_path_, self.pretrain_reused_ = pretrained(self, pretrain, device)
            self.net_ = net.to(device)
        elif init_from is None:
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
        self.original_ = human.train if human is not None else init_from.original_ if init_from is not None else data
        with torch.enable_grad():
            tuned = init_from is not None or pretrain is not None  # from trained weights
            lr = self.finetune_lr if tuned and self.finetune_lr is not None else self.lr
            self.loss_history_ = self.train_net(self.net_, self.bpe_.encode(data), rng, self.epochs, device,
                                                None if validation is None else self._selector(validation), lr)
        if validation is not None and "state" in self._best:  # (no epoch, nothing to select: epochs=0)
            self.net_.load_state_dict(self._best.pop("state"))
            self.best_epoch_ = self._best.pop("epoch")
        self.net_.eval()
        return self

    def _selector(self, validation: TokenSequences):
        """Checkpoint selection: after every epoch, the perplexity on ``validation``
        (``val_perplexity_``); the weights of the best epoch are kept in ``_best``."""
        self.val_perplexity_ = []
        self._best = {"ppl": math.inf}

        def on_epoch(epoch: int) -> None:
            self.net_.eval()
            ppl = self.perplexity(validation)
            self.val_perplexity_.append(ppl)
            if ppl < self._best["ppl"]:
                self._best.update(ppl=ppl, epoch=epoch, state=copy.deepcopy(self.net_.state_dict()))

        return on_epoch

    def train_net(self, net, pieces: TokenSequences, rng: np.random.Generator, epochs: float, device: str,
                  on_epoch=None, lr: float | None = None) -> np.ndarray:
        """Train ``net`` on ``pieces`` for ``epochs`` epochs at peak learning rate ``lr`` (default
        ``self.lr``; see the module docstring); every step's loss. ``on_epoch(epoch)`` is called after
        each (whole or final partial) epoch."""
        import torch

        lr = self.lr if lr is None else lr
        net.train()
        n_stream = pieces.n_tokens + len(pieces) + 1
        T = min(self.block_size, n_stream - 1)
        n_win = (n_stream - 1) // T
        per_epoch = math.ceil(n_win / self.batch_size)
        total = math.ceil(epochs * per_epoch - 1e-9)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01,
                                fused=True)
        warmup = max(1, total // 20)
        losses = np.zeros(total)
        step = epoch = 0
        while step < total:
            stream = torch.from_numpy(packed(pieces.take(rng.permutation(len(pieces)))))
            x = stream[: n_win * T].view(n_win, T).to(device)
            y = stream[1: n_win * T + 1].view(n_win, T).to(device)
            for b in range(0, n_win, self.batch_size):
                if step == total:
                    break
                decay = 0.1 + 0.45 * (1 + math.cos(math.pi * step / total))
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / warmup) * decay
                loss = net.loss(x[b: b + self.batch_size], y[b: b + self.batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                losses[step] = loss.item()
                step += 1
            epoch += 1
            if on_epoch is not None:
                on_epoch(epoch)
                net.train()
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
        if self.continuation:
            return self._continue_blocks(n, rng, watermark)
        if self.decoding == "sample":
            starts = TokenSequences(np.full(n, EOS_PIECE, dtype=np.int32), np.arange(n + 1))
            return self.bpe_.decode(self._generate(starts, self.max_len, torch_generator(rng, self.device_),
                                                   watermark=watermark))
        prompts = training_prompts(self._prompt_data(), n, self.prompt_len, rng)
        pieces = self._generate(self._start(prompts), self.max_len, None, beam=True)
        return join(prompts, self.bpe_.decode(pieces))

    def _prompt_data(self) -> TokenSequences:
        return self.original_ if self.prompts == "original" else self.train_data_

    def _continue_blocks(self, n: int, rng: np.random.Generator, watermark=None) -> TokenSequences:
        """The paper's generation: ``continuation`` pieces after each of as many ``block_size``-piece
        blocks of the prompt data as ``n`` of its items fill, beam-searched or sampled; the items
        are the continuations' sentences (:func:`~collapselab.models.prompting.continuation_items`)."""
        from collapselab.models.torch_utils import torch_generator

        source = self._prompt_data()
        prompts = block_prompts(packed(self.bpe_.encode(source)), self.block_size, n, len(source), rng)
        beam = self.decoding == "beam"
        generator = None if beam else torch_generator(rng, self.device_)
        pieces = self._generate(prompts, self.continuation + 1, generator, beam=beam, max_tokens=self.continuation,
                                stop_at_eos=False, watermark=watermark)
        return self.bpe_.decode(continuation_items(prompts, pieces, self.bpe_.ends_word_))

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
                  watermark=None, max_tokens: int | None = None, stop_at_eos: bool = True) -> TokenSequences:
        """Generated pieces per prompt, in chunks whose key/value cache fits ``GEN_BYTES`` (each chunk
        with a fresh watermark processor)."""
        import torch

        from collapselab.models import decoding

        cfg = self.net_.config
        row_bytes = 4 * (2 * cfg.n_layer * cfg.block_size * cfg.n_embd + 4 * cfg.vocab_size)
        chunk = max(1, GEN_BYTES // row_bytes // (self.num_beams if beam else 1))
        ends_word = torch.as_tensor(self.bpe_.ends_word_, device=self.device_)
        common = dict(max_words=max_words, max_tokens=max_tokens or PIECES_PER_WORD * (max_words + 1), ends_word=ends_word,
                      repetition_penalty=self.repetition_penalty, use_cache=use_cache, stop_at_eos=stop_at_eos)
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
