"""The Binoculars performer: SmolLM2-135M fine-tuned by our own loop's ``smollm2`` family.

    python bench/lm_performer.py [--sentences 1000] [--seed 0] [--out bench/out/lm-performer]

Generation 0 of a ``collapselab run --family smollm2`` fine-tunes the pretrained SmolLM2 on the run's
human training sentences (``SmolLM2Model.fit``: 64-token blocks, AdamW, lr 5e-5, one epoch). This
script does exactly that step on the **odd-numbered** State of the Union addresses (the evaluation
set, ``bench/lm_evalset.py``, takes its SOTU passages from the even-numbered ones, so the performer has
never read a text it judges), with the loop's corpus builder (``build_text_corpus``: sentences of
lower-cased words, the first ``--sentences`` of them in the split seed's order), and saves the model
as a folder ``detect.lm.load_model`` reads, with a ``collapselab.json`` saying how it was made.

What that means for Binoculars: the paper's performer is an instruction-tuned sibling of the
observer; ours is the observer adapted to the loop's text (State of the Union sentences written as
the loop writes them: lower-case words joined by spaces, a capital first letter). Its cross-perplexity
against the pretrained observer measures how far a text sits from that adaptation as well as from
the observer, which is the loop's own notion of "human" text, not the general web's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR  # noqa: E402


def odd_addresses():
    from collapselab.corpus.text_corpus import sotu_documents

    for i, doc in enumerate(sotu_documents()):
        if i % 2:
            yield doc


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=1000, help="human training sentences (generation 0's training set)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "lm-performer")
    a = ap.parse_args(argv)
    import torch

    from collapselab.corpus.text_corpus import build_text_corpus
    from collapselab.detect.lm import save_model
    from collapselab.models.smollm2 import SmolLM2Model

    torch.set_num_threads(1)
    corpus = build_text_corpus(odd_addresses(), name="sotu-odd", n_train=a.sentences, split_seed=a.seed)
    t = time.time()
    model = SmolLM2Model(corpus.vocab, epochs=a.epochs).fit(corpus.train, rng=np.random.default_rng(a.seed))
    took = time.time() - t
    loss = model.loss_history_
    note = {"made_by": "bench/lm_performer.py", "family": "smollm2", "step": "generation 0 (SmolLM2Model.fit)",
            "corpus": "sotu, odd-numbered addresses", "sentences": len(corpus.train), "epochs": a.epochs,
            "seed": a.seed, "steps": len(loss), "loss_first": float(loss[0]), "loss_last_10": float(loss[-10:].mean()),
            "seconds": round(took, 1)}
    save_model(model.model_, model.tokenizer_, a.out, note=note)
    print(f"performer: {len(corpus.train)} sentences, {len(loss)} steps in {took:.0f} s, "
          f"loss {loss[0]:.3f} -> {loss[-10:].mean():.3f} (last 10 steps) -> {a.out}")
    return a.out


if __name__ == "__main__":
    main()
