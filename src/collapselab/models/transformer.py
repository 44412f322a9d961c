"""A decoder-only transformer (GPT-2's architecture, nanoGPT-style), with a key/value cache.

Token and learned position embeddings, ``n_layer`` pre-norm blocks (causal self-attention, then an
MLP with a tanh-GELU), a final LayerNorm, and an output layer tied to the token embedding. The
parameter names are GPT-2's (``wte``, ``h.0.attn.c_attn``, ...), so a Hugging Face GPT-2 state
dict loads after transposing its ``Conv1D`` weights: the benchmark checks that both compute the
same logits.

Generation keeps a :class:`KVCache`: per layer, the keys and values of every position so far,
preallocated to ``block_size`` positions. Rows may be left-padded (prompts of different lengths):
``valid`` marks the real positions, padding is never attended to, and positions are counted per
row (the caller passes the mask and the positions). Reordering rows (beam search) or dropping
finished ones is :meth:`KVCache.select`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int

    def n_params(self) -> int:
        C, V = self.n_embd, self.vocab_size
        return V * C + self.block_size * C + self.n_layer * (12 * C * C + 13 * C) + 2 * C


class KVCache:
    """Keys and values of ``n_rows`` sequences, for every layer, up to ``block_size`` positions."""

    def __init__(self, config: GPTConfig, n_rows: int, *, dtype: torch.dtype, device) -> None:
        hd = config.n_embd // config.n_head
        shape = (config.n_layer, n_rows, config.n_head, config.block_size, hd)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.length = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) the given rows; only the filled positions are copied."""
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty((old.shape[0], len(rows), *old.shape[2:]))
            new[:, :, :, : self.length] = old[:, rows, :, : self.length]
            setattr(self, name, new)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, mask=None):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=2))
        if cache is not None:  # write this call's positions, attend to all positions so far
            t0 = cache.length
            cache.k[layer, :, :, t0: t0 + T] = k
            cache.v[layer, :, :, t0: t0 + T] = v
            k, v = cache.k[layer, :, :, : t0 + T], cache.v[layer, :, :, : t0 + T]
        causal = mask is None and T > 1  # several new positions: only ever from an empty cache
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0, mask=None):
        x = x + self.attn(self.ln_1(x), cache, layer, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2. Build with :meth:`create` (seeded initialisation) rather than the constructor."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd ({config.n_embd}) must be a multiple of n_head ({config.n_head})")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)

    @classmethod
    def create(cls, config: GPTConfig, generator: torch.Generator, device="cpu") -> "GPT":
        """GPT-2's initialisation, all of it drawn from ``generator``: weights N(0, 0.02), the
        projections into the residual stream N(0, 0.02 / sqrt(2 n_layer)), biases 0, LayerNorm 1.
        torch's global generator is left as it was."""
        with torch.random.fork_rng(devices=[]):
            net = cls(config).to(device)
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            else:
                std = 0.02 / (2 * config.n_layer) ** 0.5 if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std, generator=generator)
        return net

    def forward(self, idx, pos=None, cache: KVCache | None = None, mask=None, last_only: bool = False):
        """Logits for token ids ``idx`` (batch, time). ``pos``: positions (default: following the
        cache); ``mask``: boolean attention mask (batch, 1, time, keys), ``None`` = causal;
        ``last_only``: logits of the last position only (batch, vocab)."""
        T = idx.shape[1]
        if pos is None:
            t0 = cache.length if cache is not None else 0
            pos = torch.arange(t0, t0 + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, mask)
        if cache is not None:
            cache.length += T
        x = self.ln_f(x[:, -1] if last_only else x)
        return F.linear(x, self.wte.weight)

    def loss(self, x, y):
        """Mean cross-entropy of next-token targets ``y`` given inputs ``x`` (both batch, time)."""
        logits = self(x)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
