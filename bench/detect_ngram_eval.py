"""The n-gram-based detectors on the State of the Union corpus, written into docs/detect.md.

    python bench/detect_ngram_eval.py [--seed 0] [--n 5000] [--no-write]

Runs :func:`collapselab.detect.evaluation.run` (set-up in that module: generator, reference models
and classifier fitted on disjoint human splits; test on held-out documents vs fresh samples; every
threshold set on one half of the human test items, its FPR measured on the other) and the watermark
detector's calibration check, and writes both into the section ``ngram-detectors`` of docs/detect.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "detect.md"


def markdown(df, cal: list[dict], seed: int, n: int) -> str:
    lines = [f"Command: `python bench/detect_ngram_eval.py --seed {seed} --n {n}`.", "",
             "| unit | detector | AUROC | TPR@0.1% | TPR@1% | FPR@1% (half B) | TPR@5% | FPR@5% (half B) | n human / synth |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in df.to_dict("records"):
        lines.append(f"| {r['unit']} | {r['detector']} | {r['auroc']:.3f} | {r['tpr@0.1%']:.3f} | {r['tpr@1%']:.3f} | "
                     f"{r['fpr@1%']:.3f} | {r['tpr@5%']:.3f} | {r['fpr@5%']:.3f} | {r['n_human']} / {r['n_synthetic']} |")
    n_half = min(df["n_human"]) // 2
    lines += ["", f"TPR@0.1% is set on a half of at most {max(df['n_human']) // 2} human items (the chunk rows' "
              f"{n_half}: there it is the TPR at FPR 0).", ""]
    lines.append("Calibration of the watermark detector on {} human sentences of pool B, checked on the {} held-out "
                 "sentences: ".format(cal[0]["n_calibration"], cal[0]["n_check"])
                 + "; ".join(f"target {c['target']:.0%} → threshold z = {c['threshold']:.2f}, measured FPR "
                             f"{c['fpr']:.2%}, TPR {c['tpr']:.1%}" for c in cal) + ".")
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    from collapselab.detect.evaluation import run, setup, watermark_calibration

    data = setup(seed=a.seed, n=a.n)  # built once: the corpus, the models and the samples both parts use
    text = markdown(run(seed=a.seed, n=a.n, data=data), watermark_calibration(seed=a.seed, n=a.n, data=data), a.seed, a.n)
    print(text)
    if not a.no_write:
        write_section(DOC, "ngram-detectors", text)
        print(f"wrote the section 'ngram-detectors' of {DOC}")
    return text


if __name__ == "__main__":
    main()
