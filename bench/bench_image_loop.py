"""One generation of the visual-collapse loop on digits, per image family: fit, sample, metrics.

For each family (``gmm`` on 32 PCA features, ``vae``, ``ddpm``; default hyper-parameters) in one
process on the same data: fit on the training images, sample 1,000 images, and score them with
:class:`~collapselab.metrics.image_suite.ImageEvaluator` (FID, precision/recall/density/coverage,
class metrics, sharpness, and the real holdout's negative log-likelihood under the model, which
calls ``log_likelihood``). The evaluator is built once beforehand, as a run builds it once per
experiment; its classifier comes from the cache when present.

Reported: wall and CPU seconds of each phase, the total against the target (30 s for gmm and
vae), and the quality figures beside those of real images (the training images standing in as
samples). Each family's first 100 samples are written as a PNG grid to ``bench/out/``.

Run: ``python bench/bench_image_loop.py [--train 1000] [--samples 1000] [--families gmm vae ddpm]``
(writes bench/out/bench_image_loop.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, announce, print_table, write_json  # noqa: E402

TARGET_S = {"gmm": 30.0, "vae": 30.0}
QUALITY = ["fid", "precision", "recall", "coverage", "class_entropy", "sharpness", "nll_holdout"]


def phase(fn):
    """(wall seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=1000, help="training images (the rest of the 1,797 are the holdout)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--families", nargs="+", default=["gmm", "vae", "ddpm"], choices=["gmm", "vae", "ddpm"])
    args = ap.parse_args()
    announce()

    from collapselab.corpus.images import build_image_corpus
    from collapselab.metrics.image_suite import ImageEvaluator
    from collapselab.models import model_class
    from collapselab.report.grid import save_grid

    corpus = build_image_corpus("digits", n_train=args.train, n_pool=0, n_holdout=1797 - args.train, split_seed=0)
    wall, cpu, evaluator = phase(lambda: ImageEvaluator(corpus))
    print(f"digits: {len(corpus.train)} training images, {len(corpus.holdout)} held out; evaluator built in {wall:.1f} s "
          f"(classifier accuracy {evaluator.classifier.accuracy_:.3f})")

    class Real:  # the training images as "samples": the quality a perfect model would reach
        def log_likelihood(self, data):
            return np.full(len(data), np.nan)

    real_row, _ = evaluator.evaluate(Real(), corpus.train[: args.samples])
    results = {"real": {"metrics": real_row}}
    for family in args.families:
        model = model_class(family, image=True)()
        fit = phase(lambda: model.fit(corpus.train, rng=np.random.default_rng(0)))
        sample = phase(lambda: model.sample(args.samples, rng=np.random.default_rng(1)))
        metrics = phase(lambda: evaluator.evaluate(model, sample[2]))
        total = fit[0] + sample[0] + metrics[0]
        save_grid(sample[2][:100], OUT_DIR / f"bench_image_loop_{family}.png")
        results[family] = {
            "params": {k: v for k, v in vars(model).items() if not k.endswith("_")},
            "fit_s": fit[0], "fit_cpu_s": fit[1], "sample_s": sample[0], "sample_cpu_s": sample[1],
            "metrics_s": metrics[0], "metrics_cpu_s": metrics[1], "total_s": total,
            "total_cpu_s": fit[1] + sample[1] + metrics[1],
            "target_s": TARGET_S.get(family), "metrics": metrics[2][0],
        }
        print(f"{family}: fit {fit[0]:.1f} s, sample {sample[0]:.2f} s, metrics {metrics[0]:.2f} s, total {total:.1f} s")

    rows = []
    for name, r in results.items():
        target = r.get("target_s")
        times = [f"{r[k]:.2f}" if k in r else "-" for k in ("fit_s", "sample_s", "metrics_s", "total_s", "total_cpu_s")]
        share = f"{r['total_s'] / target:.2f}" if target else "-"
        rows.append([name, *times, share, *(f"{r['metrics'][q]:.3f}" for q in QUALITY)])
    print_table(
        f"One image-loop generation on digits ({args.train} training images, {args.samples} samples); seconds",
        ["family", "fit", "sample", "metrics", "total", "total CPU", "total / 30 s", *QUALITY],
        rows,
    )
    write_json("bench_image_loop", {"train": args.train, "samples": args.samples, "results": results})


if __name__ == "__main__":
    main()
