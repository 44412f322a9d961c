"""``gpt`` family: training and generation speed against Hugging Face ``transformers`` GPT-2.

Data: the default corpus slice the ``gpt`` family learns from (5,000 State of the Union sentences,
``build_text_corpus(sotu_documents(), n_train=5000)``), in BPE pieces of the model's own tokenizer
(``GPTModel`` defaults: 8,000 pieces, windows of 64), packed and shuffled exactly as
``GPTModel.fit`` packs them.

- **training**: our transformer (:mod:`collapselab.models.transformer`) against
  ``transformers.GPT2LMHeadModel`` of the same size (``n_layer``, ``n_head``, ``n_embd``,
  ``n_positions = block_size``, vocabulary, no dropout), **with the same weights** (ours copied into
  it, so both compute the same function: the script checks the logits agree), the same batches,
  the same loss (cross-entropy of the logits, computed outside both models), the same optimizer
  (fused AdamW, gradient clipping at 1). Steps alternate ours / theirs, one at a time; tokens/s is
  the median over the steps, the ratio the median of the per-pair ratios (a pair runs within a
  fraction of a second, so load changes hit both sides alike).
- **generation**: greedy continuation of the same prompts (8 pieces of training items) by 56
  pieces (the window is 64), with the same weights: ours with the key/value cache
  (:func:`collapselab.models.decoding.sample`), ours recomputing the window every step, and
  ``GPT2LMHeadModel.generate`` with and without its cache. The script checks that ours and
  ``generate`` write the same pieces. Median of repeats.
  Training is also compared at a second size (``n_embd`` 128, 2,000 pieces) where the transformer
  body, not the output layer, does most of the work.
- **one loop generation**: ``GPTModel`` (defaults) fit on the 5,000 sentences, 5,000 sentences
  sampled, the held-out perplexity scored: wall time of each (1 thread only).

The comparisons run at 1 torch thread and at one thread per core: on a small machine shared with
other work, threads that wait on each other make the two-thread timings slow and noisy.

Run: ``python bench/bench_gpt.py`` (writes bench/out/bench_gpt.json). About 5-10 minutes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, fmt_rate, print_table, write_json  # noqa: E402

from collapselab.corpus.sequences import TokenSequences  # noqa: E402
from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents  # noqa: E402
from collapselab.models import decoding  # noqa: E402
from collapselab.models.bpe import WordBPE  # noqa: E402
from collapselab.models.gpt import GPTModel, packed  # noqa: E402
from collapselab.models.transformer import GPT, GPTConfig  # noqa: E402

N_TRAIN = 5000
TRAIN_PAIRS = 30  # timed steps per side
WARMUP = 3
GEN_ROWS, PROMPT, NEW = 128, 8, 56
GEN_REPEAT = 3
CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # GPT-2 stores these transposed


def hf_twin(net: GPT):
    """``GPT2LMHeadModel`` of the same size, holding ``net``'s weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = net.config
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0))
    sd = {k: v.t() if k.endswith(CONV1D) else v for k, v in net.state_dict().items()}
    missing, unexpected = hf.transformer.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith(".attn.bias") for k in missing), (missing, unexpected)
    return hf


def trainer(model, logits_of):
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.95), weight_decay=0.01, fused=True)

    def step(x, y) -> float:
        logits = logits_of(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def bench_training(config: GPTConfig, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict:
    ours = GPT.create(config, torch.Generator().manual_seed(0))
    hf = hf_twin(ours)
    with torch.no_grad():
        diff = (hf(x[:4]).logits - ours(x[:4])).abs().max().item()
    step_ours = trainer(ours, ours)
    step_hf = trainer(hf, lambda t: hf(t).logits)
    first = step_ours(x[:batch], y[:batch]), step_hf(x[:batch], y[:batch])
    rate_ours, rate_hf, ratio = [], [], []
    n_batches = len(x) // batch
    for i in range(1, WARMUP + TRAIN_PAIRS + 1):
        b = slice((i % n_batches) * batch, (i % n_batches + 1) * batch)
        t0 = time.perf_counter()
        step_ours(x[b], y[b])
        t1 = time.perf_counter()
        step_hf(x[b], y[b])
        t2 = time.perf_counter()
        if i > WARMUP:
            rate_ours.append(batch * x.shape[1] / (t1 - t0))
            rate_hf.append(batch * x.shape[1] / (t2 - t1))
            ratio.append((t2 - t1) / (t1 - t0))
    return {"logits_max_abs_diff": diff, "first_loss_ours": first[0], "first_loss_hf": first[1],
            "ours_tok_s": statistics.median(rate_ours), "hf_tok_s": statistics.median(rate_hf),
            "ratio": statistics.median(ratio), "ratio_q1_q3": np.percentile(ratio, [25, 75]).tolist()}


def bench_generation(config: GPTConfig, prompts: TokenSequences) -> dict:
    net = GPT.create(config, torch.Generator().manual_seed(1)).eval()
    hf = hf_twin(net).eval()
    ends = torch.zeros(config.vocab_size, dtype=torch.bool)  # no word budget: NEW pieces or </s>
    ids = torch.as_tensor(np.stack([prompts.item(i) for i in range(len(prompts))]), dtype=torch.long)

    def ours(use_cache):
        return decoding.sample(net, prompts, max_words=10**9, max_tokens=NEW, ends_word=ends, generator=None,
                               top_k=1, use_cache=use_cache)

    def theirs(use_cache):
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
                          num_beams=1, use_cache=use_cache, eos_token_id=0, pad_token_id=0)
        return out[:, PROMPT:]

    runs = {"ours, KV cache": lambda: ours(True), "ours, no cache": lambda: ours(False),
            "transformers generate, cache": lambda: theirs(True),
            "transformers generate, no cache": lambda: theirs(False)}
    times = {k: [] for k in runs}
    outputs = {}
    with torch.no_grad():
        for _ in range(GEN_REPEAT):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                outputs[name] = fn()
                times[name].append(time.perf_counter() - t0)
    mine, hf_out = outputs["ours, KV cache"].to_lists(), outputs["transformers generate, cache"]
    same = all(hf_out[i, : len(m)].tolist() == m and (len(m) == NEW or int(hf_out[i, len(m)]) == 0)
               for i, m in enumerate(mine))
    n_tokens = sum(map(len, mine))
    rates = {k: n_tokens / statistics.median(v) for k, v in times.items()}
    return {"rows": len(prompts), "new_tokens": n_tokens, "same_tokens_as_transformers": bool(same),
            "same_tokens_without_cache": outputs["ours, no cache"] == outputs["ours, KV cache"], "tok_s": rates,
            "cache_speedup": rates["ours, KV cache"] / rates["ours, no cache"],
            "vs_transformers_cache": rates["ours, KV cache"] / rates["transformers generate, cache"]}


def bench_loop_generation(corpus) -> dict:
    model = GPTModel(corpus.vocab)
    t0 = time.perf_counter()
    model.fit(corpus.train, rng=np.random.default_rng(0))
    t1 = time.perf_counter()
    samples = model.sample(N_TRAIN, rng=np.random.default_rng(1))
    t2 = time.perf_counter()
    ppl = model.perplexity(corpus.holdout)
    t3 = time.perf_counter()
    steps = len(model.loss_history_)
    return {"fit_s": t1 - t0, "sample_s": t2 - t1, "score_s": t3 - t2, "steps": steps,
            "train_tok_s": steps * model.batch_size * model.block_size / (t1 - t0),
            "sample_words_s": (samples.n_tokens + len(samples)) / (t2 - t1), "ppl_holdout": ppl,
            "holdout_sentences": len(corpus.holdout), "final_loss": float(model.loss_history_[-20:].mean()),
            "unk_share_in_samples": float(np.mean(samples.tokens == 2)), "mean_sample_words": float(samples.lengths.mean())}


def main() -> None:
    announce()
    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=N_TRAIN)
    d = GPTModel(corpus.vocab)
    bpe = WordBPE(corpus.vocab, d.bpe_vocab).fit(corpus.train)
    config = GPTConfig(bpe.n_pieces, d.block_size, d.n_layer, d.n_head, d.n_embd)
    pieces = bpe.encode(corpus.train)
    stream = torch.from_numpy(packed(pieces.take(np.random.default_rng(0).permutation(len(pieces)))))
    T = config.block_size
    n_win = (len(stream) - 1) // T
    x, y = stream[: n_win * T].view(n_win, T), stream[1: n_win * T + 1].view(n_win, T)
    rng = np.random.default_rng(2)
    long_enough = np.flatnonzero(pieces.lengths >= PROMPT)
    rows = rng.choice(long_enough, GEN_ROWS, replace=False)
    prompts = TokenSequences(pieces.tokens[(pieces.offsets[rows][:, None] + np.arange(PROMPT)).ravel()],
                             np.arange(GEN_ROWS + 1) * PROMPT)
    # a second size, where the transformer body rather than the 8,000-piece output layer dominates
    wide = GPTConfig(2000, d.block_size, d.n_layer, d.n_head, 128)
    print(f"model: {config}; {config.n_params():,} parameters; batch {d.batch_size} x {T} pieces")
    results = {"config": config.__dict__, "wide_config": wide.__dict__, "batch_size": d.batch_size, "threads": {}}
    for threads in (1, len(os.sched_getaffinity(0))):
        torch.set_num_threads(threads)
        print(f"--- {threads} thread(s)")
        res = results["threads"][threads] = {}
        for name, cfg in (("training", config), ("training_wide", wide)):
            tr = res[name] = bench_training(cfg, x % cfg.vocab_size, y % cfg.vocab_size, d.batch_size)
            print(f"{name} ({cfg.n_params():,} parameters, vocabulary {cfg.vocab_size}): ours {fmt_rate(tr['ours_tok_s'])} tok/s, "
                  f"transformers {fmt_rate(tr['hf_tok_s'])} tok/s, ratio {tr['ratio']:.2f}x "
                  f"(quartiles {tr['ratio_q1_q3'][0]:.2f}-{tr['ratio_q1_q3'][1]:.2f}); logits max diff {tr['logits_max_abs_diff']:.1e}")
        gen = res["generation"] = bench_generation(config, prompts)
        print_table(f"greedy generation, {GEN_ROWS} rows x {NEW} pieces, {threads} thread(s)", ["run", "tok/s"],
                    [[k, fmt_rate(v)] for k, v in gen["tok_s"].items()])
        print(f"KV cache speed-up {gen['cache_speedup']:.1f}x; vs transformers generate {gen['vs_transformers_cache']:.2f}x; "
              f"same tokens as transformers: {gen['same_tokens_as_transformers']}")
        if threads == 1:  # minutes at two threads on a shared machine; the training rates above tell the story
            loop = res["loop_generation"] = bench_loop_generation(corpus)
            print(f"one loop generation: fit {loop['fit_s']:.1f} s ({loop['steps']} steps, "
                  f"{fmt_rate(loop['train_tok_s'])} tok/s), sample {N_TRAIN} in {loop['sample_s']:.1f} s, "
                  f"held-out perplexity {loop['ppl_holdout']:.0f} in {loop['score_s']:.1f} s "
                  f"({loop['holdout_sentences']} sentences); <unk> share of sampled words {loop['unk_share_in_samples']:.3f}")
    write_json("bench_gpt", results)


if __name__ == "__main__":
    main()
