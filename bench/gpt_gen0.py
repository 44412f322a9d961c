"""The `gpt` recipe's generation 0 against the order-3 n-gram (docs/gpt.md, "The Nature recipe").

Builds the default corpus slice (split seed 0), fits the order-3 n-gram on the training sentences,
and on those plus the gpt's pretraining text, then the gpt with the recipe's pretraining, fine-tune
and checkpoint selection (``model: {recipe: nature}``'s settings, any given here override them);
prints held-out perplexities per word on the same held-out sentences and the times.

    OMP_NUM_THREADS=1 python bench/gpt_gen0.py                        # 5,000 sentences, 5,000 held out
    OMP_NUM_THREADS=1 python bench/gpt_gen0.py --train-items 1000 --pretrain-items 30000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import torch

    from collapselab.corpus.sequences import TokenSequences
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.models.gpt import NATURE_RECIPE, GPTModel
    from collapselab.models.ngram import NGramModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-items", type=int, default=5000)
    ap.add_argument("--holdout-items", type=int, default=5000)
    ap.add_argument("--pretrain-items", type=int, default=NATURE_RECIPE["pretrain_items"])
    ap.add_argument("--pretrain-epochs", type=float, default=NATURE_RECIPE["pretrain_epochs"])
    ap.add_argument("--finetune-lr", type=float, default=NATURE_RECIPE["finetune_lr"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    c = build_text_corpus(sotu_documents(), name="sotu", n_train=args.train_items, max_holdout_items=args.holdout_items)
    settings = {**NATURE_RECIPE, "pretrain_items": args.pretrain_items, "pretrain_epochs": args.pretrain_epochs,
                "finetune_lr": args.finetune_lr}
    gpt = GPTModel(c.vocab, **settings)
    pre, val = gpt._reserve(c)
    rng = np.random.default_rng(0)
    tri = NGramModel(vocab_size=len(c.vocab), order=3).fit(c.train, rng=rng).perplexity(c.holdout)
    tri_plus = NGramModel(vocab_size=len(c.vocab), order=3).fit(TokenSequences.concat([c.train, pre]), rng=rng).perplexity(c.holdout)
    t = time.perf_counter()
    only = GPTModel(c.vocab, **{**settings, "epochs": 0}).fit(c.train, rng=np.random.default_rng(0), human=c)
    t_pre = time.perf_counter() - t
    t = time.perf_counter()
    gpt.fit(c.train, rng=np.random.default_rng(0), human=c)
    t_fit = time.perf_counter() - t
    print(f"{len(c.train):,} training sentences ({c.train.n_tokens:,} words), {len(c.holdout):,} held out; "
          f"pretraining text: {len(pre):,} reserve sentences ({pre.n_tokens:,} words), validation {len(val):,}")
    print(f"trigram, the training sentences:                 {tri:.1f}")
    print(f"trigram, the training sentences + pretraining text: {tri_plus:.1f}")
    print(f"gpt pretrained only (no fine-tune):              {only.perplexity(c.holdout):.1f}  "
          f"({'from the cache' if only.pretrain_reused_ else 'pretrained'} in {t_pre:.0f} s)")
    print(f"gpt generation 0 (pretrained + fine-tuned):      {gpt.perplexity(c.holdout):.1f}  (fine-tune {t_fit:.0f} s; "
          f"validation perplexity per epoch {', '.join(f'{v:.1f}' for v in gpt.val_perplexity_)}; kept epoch {gpt.best_epoch_})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
