"""Batched generation with the transformer's key/value cache: sampling and beam search.

Every row (a prompt, or a prompt's beam) advances one piece per model call; a row stops at ``</s>``
(which is not returned), when it has written ``max_words`` whole words, or after ``max_tokens``
pieces. Prompts are left-padded to one width, so their last pieces line up; padding is masked
out and positions are counted per row (:mod:`collapselab.models.transformer`). Rows that stop
leave the batch with their cache rows: a beam search's finished prompts at once, sampled rows in
groups (once an eighth of the batch has stopped), since every leave copies the cache.

The model sees at most ``block_size`` positions. When a row grows past that, the window keeps its
last ``block_size // 2`` pieces and the cache is rebuilt over them (one full forward), the same
context that :meth:`collapselab.models.gpt.GPTModel.log_likelihood` gives long items when it
scores them.

``use_cache=False`` recomputes the whole window at every step: the same tokens, much slower; it
exists for the tests and the benchmark.

Sampling follows Hugging Face's order: repetition penalty, temperature, top-k, then top-p (keep
the smallest heaviest-first set of pieces whose mass reaches ``p``), then, when sampling with a
text watermark (``watermark=``: a :class:`~collapselab.detect.schemes.Scheme`), the scheme's
logits processor, last, as ``generate`` places it (:func:`new_processor`: a fresh one per call;
it sees ``input_ids``, each row's whole prompt and pieces so far, not the model's sliding window).
Rows that leave the batch leave the processor's per-row state too (:func:`select_rows`). Beam
search takes no watermark (the schemes' generation rules are sampling rules).

Beam search is Hugging Face's vectorised beam search (``transformers`` ``GenerationMixin._beam_search``, ``early_stopping=False``):
the best ``2 * num_beams`` continuations of all beams are ranked; those among the first
``num_beams`` that end become finished hypotheses scored ``sum log p / length ** length_penalty``;
the best ``num_beams`` unfinished ones continue; a prompt is done when its ``num_beams`` finished
hypotheses cannot be beaten by its best running beam. The repetition penalty (CTRL's: divide a
positive score, multiply a negative one) applies to every piece seen in the row except ``</s>``
(the prompt starts with one), as it does in ``transformers``.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from collapselab.corpus.sequences import TokenSequences
from collapselab.models.transformer import GPT, KVCache

EOS = 0
NEG = -1.0e9  # "impossible", as in transformers' beam search (finite, so sums stay ordered)


def left_pad(prompts: TokenSequences, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one (rows, width) tensor, right-aligned, and the mask of real positions."""
    lengths = torch.as_tensor(prompts.lengths)
    width = int(lengths.max()) if len(prompts) else 0
    item = torch.as_tensor(prompts.item_index())
    within = torch.arange(prompts.n_tokens) - torch.as_tensor(prompts.offsets[:-1])[item]
    col = width - lengths[item] + within
    ids = torch.full((len(prompts), width), EOS, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    ids[item, col] = torch.as_tensor(prompts.tokens, dtype=torch.long)
    valid[item, col] = True
    return ids.to(device), valid.to(device)


class _Window:
    """Rows being generated: the pieces the model sees (at most ``block_size``), the cache over
    them, and the logits of each row's next piece."""

    def __init__(self, net: GPT, ids: torch.Tensor, valid: torch.Tensor, use_cache: bool) -> None:
        self.net, self.use_cache = net, use_cache
        block = net.config.block_size  # a longer prompt: the model sees its last block_size pieces
        self.ids, self.valid = ids[:, -block:], valid[:, -block:]
        self._refill()

    def _refill(self) -> None:
        """Run the model over the whole window (and rebuild the cache)."""
        ids, valid = self.ids, self.valid
        pos = (valid.cumsum(1) - 1).clamp_min(0)
        self.next_pos = pos[:, -1] + 1
        self.padded = not bool(valid.all())
        mask = None
        if self.padded:  # causal, real keys only; a padding query sees itself (no empty softmax)
            w = ids.shape[1]
            causal = torch.ones(w, w, dtype=torch.bool, device=ids.device).tril()
            eye = torch.eye(w, dtype=torch.bool, device=ids.device)
            mask = (causal & valid[:, None, None, :]) | eye
        self.cache = None
        if self.use_cache:
            self.cache = KVCache(self.net.config, len(ids), dtype=self.net.wte.weight.dtype, device=ids.device)
        self.logits = self.net(ids, pos=pos, cache=self.cache, mask=mask, last_only=True).float()

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) rows."""
        self.ids, self.valid, self.next_pos, self.logits = (t[rows] for t in (self.ids, self.valid, self.next_pos, self.logits))
        if self.cache is not None:
            self.cache.select(rows)

    def push(self, tok: torch.Tensor) -> None:
        """Append one piece to every row and compute the next logits."""
        self.ids = torch.cat([self.ids, tok[:, None]], dim=1)
        self.valid = torch.cat([self.valid, torch.ones_like(self.valid[:, :1])], dim=1)
        block = self.net.config.block_size
        if self.ids.shape[1] > block:
            keep = max(1, block // 2)
            self.ids, self.valid = self.ids[:, -keep:], self.valid[:, -keep:]
            return self._refill()
        if not self.use_cache:
            return self._refill()
        mask = self.valid[:, None, None, :] if self.padded else None
        self.logits = self.net(tok[:, None], pos=self.next_pos[:, None], cache=self.cache, mask=mask, last_only=True).float()
        self.next_pos = self.next_pos + 1


def _penalize(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty on every piece marked in ``seen``."""
    hit = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, hit, scores)


def _seen(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    seen = torch.zeros(len(ids), vocab_size, dtype=torch.bool, device=ids.device)
    seen.scatter_(1, ids, True)
    seen[:, EOS] = False
    return seen


def _warp(logits, temperature, top_k, top_p) -> torch.Tensor:
    """Temperature, top-k, then top-p (``generate``'s warpers, in its order)."""
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.shape[1]:
        kth = logits.topk(top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=1, descending=True)
        p = sorted_logits.softmax(dim=1)
        drop = p.cumsum(dim=1) - p >= top_p  # the mass before it already reaches top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def _choose(logits, generator, temperature, top_k, top_p, processor=None, input_ids=None) -> torch.Tensor:
    """One piece per row; ``processor`` (a watermark's) acts on the warped logits, last."""
    if top_k == 1 and processor is None:
        return logits.argmax(dim=1)
    logits = _warp(logits, temperature, top_k, top_p)
    if processor is not None:
        logits = processor(input_ids, logits)
        if top_k == 1:
            return logits.argmax(dim=1)
    # inverse CDF, one uniform number per row (torch.multinomial draws one exponential per entry);
    # the running sum in float64 keeps the share of rare pieces exact
    cdf = logits.softmax(dim=1).double().cumsum_(dim=1)
    u = torch.rand(len(cdf), 1, generator=generator, device=cdf.device, dtype=torch.float64) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max_(cdf.shape[1] - 1)


# ------------------------------------------------------------------------------- watermarks
class GreenListProcessor:
    """The ``collapselab`` scheme's generation rule as a logits processor: ``delta`` added to the
    logits of the green candidates (:class:`~collapselab.provenance.watermark.Watermark`) after
    the last ``h`` ids of each row, a row shorter than ``h`` padded on the left with id 0 (the
    detector's ``pad``: ``<s>``, ``</s>`` or ``<|endoftext|>``, each family's start id). Green
    lists are computed once per context (kept for up to ``cache`` contexts)."""

    def __init__(self, watermark, cache: int = 4096) -> None:
        self.watermark, self.cache = watermark, cache
        self._green: dict[tuple, np.ndarray] = {}

    def green(self, context: tuple, vocab_size: int) -> np.ndarray:
        row = self._green.get(context)
        if row is None or len(row) != vocab_size:
            if len(self._green) >= self.cache:
                self._green.clear()
            row = self._green[context] = self.watermark.green(np.asarray(context)[None, :], np.arange(vocab_size))
        return row

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        h = self.watermark.h
        ctx = input_ids[:, -h:].cpu().numpy()
        if ctx.shape[1] < h:
            ctx = np.concatenate([np.zeros((len(ctx), h - ctx.shape[1]), dtype=ctx.dtype), ctx], axis=1)
        contexts, inverse = np.unique(ctx, axis=0, return_inverse=True)
        green = np.stack([self.green(tuple(int(t) for t in c), scores.shape[1]) for c in contexts])
        bias = torch.from_numpy(green[inverse.reshape(-1)]).to(device=scores.device, dtype=scores.dtype)
        return scores + self.watermark.delta * bias


def new_processor(watermark, generator: torch.Generator | None = None):
    """A fresh logits processor for one generation call: ``watermark.logits_processor()`` (a
    scheme's: transformers' for hf-kgw and synthid, ours for gumbel), or :class:`GreenListProcessor`
    for the ``collapselab`` scheme. A processor that takes a ``seed`` (gumbel-dual's key routing)
    gets one drawn from ``generator``, so every call routes afresh and deterministically."""
    make = getattr(watermark, "logits_processor", None)
    if make is not None:
        if generator is not None and "seed" in inspect.signature(make).parameters:
            seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
            return make(seed=seed)
        return make()
    inner = getattr(watermark, "watermark", None)
    if inner is not None and hasattr(inner, "green"):
        return GreenListProcessor(inner)
    raise TypeError(f"{type(watermark).__name__} has no generation rule (no logits_processor())")


def select_rows(processor, rows: torch.Tensor) -> None:
    """Keep (and reorder) the per-row state of a stateful logits processor (or of every processor in
    a list) when a batch keeps only ``rows``: a processor's own ``select_rows(rows)`` if it has
    one, else every tensor of its ``state`` (transformers' ``SynthIDTextWatermarkState``:
    ``context``, ``context_history``, one row per batch row) indexed by ``rows``. Stateless
    processors (KGW's, the green list's, gumbel's, which reads ``input_ids``) have nothing to keep."""
    if processor is None:
        return
    if isinstance(processor, (list, tuple)):
        for p in processor:
            select_rows(p, rows)
        return
    own = getattr(processor, "select_rows", None)
    if callable(own):
        own(rows)
        return
    state = getattr(processor, "state", None)
    if state is None:
        return
    for name, value in list(vars(state).items()):
        if torch.is_tensor(value) and value.dim() >= 1:
            setattr(state, name, value[rows.to(value.device)])


def _to_sequences(out: torch.Tensor, lengths: torch.Tensor) -> TokenSequences:
    keep = torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = lengths.cpu().cumsum(0)
    return TokenSequences(out[keep].cpu().numpy(), offsets.numpy())


def sample(net: GPT, prompts: TokenSequences, *, max_words: int, max_tokens: int, ends_word: torch.Tensor,
           generator: torch.Generator, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           repetition_penalty: float = 1.0, use_cache: bool = True, watermark=None,
           stop_at_eos: bool = True) -> TokenSequences:
    """The pieces each prompt is continued by (``top_k=1``: greedy); ``watermark``: a scheme whose
    generation rule the sampling follows (see the module docstring). ``stop_at_eos=False``: ``</s>``
    is a piece like any other (returned; rows run ``max_tokens`` pieces or ``max_words`` words)."""
    device = ends_word.device
    stop_tok = EOS if stop_at_eos else -1
    ids, valid = left_pad(prompts, device)
    win = _Window(net, ids, valid, use_cache)
    processor = None if watermark is None else new_processor(watermark, generator)
    hist = ids  # each row's prompt and pieces so far: the processor's input_ids
    n = len(prompts)
    out = torch.full((n, max_tokens), EOS, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_tokens, dtype=torch.long, device=device)
    words = torch.zeros(n, dtype=torch.long, device=device)
    live = torch.arange(n, device=device)  # the prompt of each row of the window
    done = torch.zeros(n, dtype=torch.bool, device=device)  # rows that stopped, until they leave
    seen = _seen(ids, win.logits.shape[1]) if repetition_penalty != 1.0 else None
    for t in range(max_tokens):
        logits = win.logits if seen is None else _penalize(win.logits, seen, repetition_penalty)
        tok = _choose(logits, generator, temperature, top_k, top_p, processor, hist)
        out[live[~done], t] = tok[~done]
        words += ends_word[tok].long()
        stop = ~done & ((tok == stop_tok) | (words >= max_words))
        lengths[live[stop]] = t + 1 - (tok[stop] == stop_tok).long()
        done |= stop
        if t + 1 == max_tokens or bool(done.all()):
            break
        if 8 * int(done.sum()) >= len(done):  # stopped rows leave in groups: fewer cache copies
            rows = (~done).nonzero().squeeze(1)
            live, tok, words, done = live[rows], tok[rows], words[rows], done[rows]
            seen = None if seen is None else seen[rows]
            win.select(rows)
            if processor is not None:
                hist = hist[rows]
                select_rows(processor, rows)
        if seen is not None:
            seen[torch.arange(len(tok), device=device), tok] = True
            seen[:, EOS] = False
        if processor is not None:
            hist = torch.cat([hist, tok[:, None]], dim=1)
        win.push(tok)
    return _to_sequences(out, lengths)


def beam_search(net: GPT, prompts: TokenSequences, *, num_beams: int, max_words: int, max_tokens: int,
                ends_word: torch.Tensor, repetition_penalty: float = 1.0, length_penalty: float = 1.0,
                use_cache: bool = True, stop_at_eos: bool = True) -> TokenSequences:
    """The pieces of each prompt's best finished hypothesis (see the module docstring);
    ``stop_at_eos=False``: ``</s>`` ends no hypothesis (as in :func:`sample`)."""
    device = ends_word.device
    stop_tok = EOS if stop_at_eos else -1
    B, n = num_beams, len(prompts)
    ids, valid = left_pad(prompts, device)
    win = _Window(net, ids.repeat_interleave(B, 0), valid.repeat_interleave(B, 0), use_cache)
    V = win.logits.shape[1]
    seen = _seen(ids.repeat_interleave(B, 0), V) if repetition_penalty != 1.0 else None
    run_score = torch.zeros(n, B, device=device)
    run_score[:, 1:] = NEG  # at first, every beam of a prompt is the same: expand only one
    run_seq = torch.full((n, B, max_tokens), EOS, dtype=torch.long, device=device)
    run_words = torch.zeros(n, B, dtype=torch.long, device=device)
    fin_score = torch.full((n, B), NEG, device=device)
    fin_seq = torch.full((n, B, max_tokens), EOS, dtype=torch.long, device=device)
    fin_len = torch.zeros(n, B, dtype=torch.long, device=device)
    improvable = torch.ones(n, dtype=torch.bool, device=device)
    first_b = torch.arange(2 * B, device=device) < B
    live = torch.arange(n, device=device)
    for t in range(max_tokens):
        m = len(live)
        logp = win.logits.log_softmax(dim=1)
        if seen is not None:
            logp = _penalize(logp, seen, repetition_penalty)
        cand = (logp.view(m, B, V) + run_score[live][:, :, None]).view(m, B * V)
        top, idx = cand.topk(2 * B, dim=1)
        parent, tok = idx // V, idx % V
        seq = run_seq[live].gather(1, parent[:, :, None].expand(-1, -1, max_tokens)).clone()
        seq[:, :, t] = tok
        words = run_words[live].gather(1, parent) + ends_word[tok].long()
        ends = (tok == stop_tok) | (words >= max_words) | (t + 1 == max_tokens)
        # finished hypotheses: the first num_beams candidates that end, merged with earlier ones
        new_fin = top / (t + 1) ** length_penalty + NEG * ~(ends & first_b & improvable[live, None])
        merged = torch.cat([fin_score[live], new_fin], dim=1)
        best = merged.topk(B, dim=1).indices
        fin_score[live] = merged.gather(1, best)
        fin_seq[live] = torch.cat([fin_seq[live], seq], dim=1).gather(1, best[:, :, None].expand(-1, -1, max_tokens))
        new_len = (t + 1 - (tok == stop_tok).long())
        fin_len[live] = torch.cat([fin_len[live], new_len], dim=1).gather(1, best)
        # running beams: the best num_beams candidates that did not end
        going = (top + NEG * ends).topk(B, dim=1).indices
        run_score[live] = (top + NEG * ends).gather(1, going)
        run_seq[live] = seq.gather(1, going[:, :, None].expand(-1, -1, max_tokens))
        run_words[live] = words.gather(1, going)
        best_running = run_score[live, 0] / (t + 1) ** length_penalty
        improvable[live] &= best_running > fin_score[live].min(dim=1).values
        keep = improvable[live] & ~ends.all(dim=1)
        if t + 1 == max_tokens or not bool(keep.any()):
            break
        rows = (torch.arange(m, device=device)[:, None] * B + parent.gather(1, going))[keep].reshape(-1)
        live = live[keep]
        win.select(rows)
        tok_next = run_seq[live, :, t].reshape(-1)
        if seen is not None:
            seen = seen[rows]
            seen[torch.arange(len(rows), device=device), tok_next] = True
            seen[:, EOS] = False
        win.push(tok_next)
    return _to_sequences(fin_seq[:, 0], fin_len[:, 0])
