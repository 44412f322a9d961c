"""How often ``collapselab audit`` fires, by sample size, where the truth is known.

Data: the default corpus (the State of the Union addresses). One self-consuming loop per seed:
generation 0 (an order-3 n-gram) learns ``--train-items`` human sentences and writes as many;
generation 1 learns from them under ``replace`` (only generation 0's text) and ``accumulate``
(the human sentences and generation 0's). Per seed and sample size n (sentences a side), four audits:

- replace gen 1 vs gen 0: SAMPLES = generation 1's outputs, REF = generation 0's (the model
  changed: the detection rate);
- accumulate gen 1 vs gen 0: the same for accumulate (it changed less; for information);
- gen 0 vs gen 0: generation 0's outputs cut in two at random, a third as SAMPLES and the rest as
  REF: two independent samples of one model, nothing changed (a false alarm if it fires);
- human vs human: the human sentences cut in two at random the same way (a false alarm if it fires).

A rate is the share of seeds where the verdict is "early signs" or "collapse", with its binomial
standard error; "collapse" alone is in brackets. The audit's own seed is the loop's.

Run: ``python bench/audit_power.py`` (writes the table into docs/audit.md between the
``audit`` markers and bench/out/audit_power.json). Defaults: ``--seeds 0-9 --sizes 200,400,800,1600
--train-items 5000 --permutations 499``; about 12 minutes on two cores (with the loops of an earlier call kept in --work).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, print_table, seeds_arg, write_json, write_section  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "audit.md"
CASES = ("replace gen 1 vs gen 0", "accumulate gen 1 vs gen 0", "gen 0 vs gen 0", "human vs human")


def write_split(texts: list[str], rng: np.random.Generator, folder: Path, name: str) -> tuple[Path, Path]:
    """``texts`` cut at random: a third as SAMPLES, the rest as REF (Parquet, column text)."""
    order = rng.permutation(len(texts))
    cut = len(texts) // 3
    paths = folder / f"{name}_a.parquet", folder / f"{name}_b.parquet"
    for path, idx in zip(paths, (order[:cut], order[cut:])):
        pd.DataFrame({"text": [texts[i] for i in idx]}).to_parquet(path)
    return paths


@lru_cache(maxsize=1)
def human_sentences() -> list[str]:
    """Every sentence of the default corpus (tokenised, joined by spaces)."""
    from collapselab.corpus.text_corpus import sotu_documents
    from collapselab.corpus.tokenize import sentences, tokenize

    return [" ".join(s) for _, text in sotu_documents() for s in sentences(tokenize(text), 128)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=list(range(10)))
    ap.add_argument("--sizes", default="200,400,800,1600", help="sentences a side, comma-separated")
    ap.add_argument("--train-items", type=int, default=5000)
    ap.add_argument("--permutations", type=int, default=499)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "out" / "audit_power")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/audit.md")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    announce()
    import collapselab as cl
    from collapselab.report.audit import audit

    args.work.mkdir(parents=True, exist_ok=True)
    fired = {case: {n: [] for n in sizes} for case in CASES}  # per seed: the verdict
    t0 = time.perf_counter()
    for seed in args.seeds:
        run_dir = args.work / f"run_seed{seed}"
        if not (run_dir / "summary.json").exists():
            cl.run_experiment({"corpus": "sotu", "generations": 1, "policies": ["replace", "accumulate"], "seeds": [seed],
                               "train_items": args.train_items, "holdout_items": 200}, out=run_dir, jobs=1)
        shards = run_dir / "samples"
        rng = np.random.default_rng(seed)
        human = human_sentences()
        gen0 = pd.read_parquet(shards / "replace" / f"seed{seed}" / "gen00.parquet")["text"].tolist()
        pairs = {
            "replace gen 1 vs gen 0": (shards / "replace" / f"seed{seed}" / "gen01.parquet", shards / "replace" / f"seed{seed}" / "gen00.parquet"),
            "accumulate gen 1 vs gen 0": (shards / "accumulate" / f"seed{seed}" / "gen01.parquet", shards / "accumulate" / f"seed{seed}" / "gen00.parquet"),
            "gen 0 vs gen 0": write_split(gen0, rng, args.work, f"gen0_seed{seed}"),
            "human vs human": write_split([human[i] for i in rng.choice(len(human), 3 * max(sizes) + 3, replace=False)],
                                          rng, args.work, f"human_seed{seed}"),
        }
        for case, (samples, reference) in pairs.items():
            for n in sizes:
                r = audit(samples, reference, seed=seed, n=n, permutations=args.permutations)
                fired[case][n].append(r.verdict)
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)

    R = len(args.seeds)

    def rate(verdicts: list[str]) -> str:
        k = sum(v != "no evidence" for v in verdicts)
        c = sum(v == "collapse" for v in verdicts)
        p = k / R
        return f"{p:.0%} ± {np.sqrt(p * (1 - p) / R):.0%} ({c / R:.0%})"

    heads = ["n (sentences a side)", *CASES]
    rows = [[str(n), *(rate(fired[case][n]) for case in CASES)] for n in sizes]
    print_table("audit: share of seeds flagged (early signs or collapse) ± SE (collapse alone)", heads, rows)
    md = "\n".join([
        f"Share of {R} seeds (loops) where the verdict is *early signs* or *collapse*, ± its binomial standard error; "
        "*collapse* alone in brackets. Left two columns: the model changed (detection rate); right two: nothing changed "
        f"(false-alarm rate, at most alpha = 5% by construction). Default corpus, {args.train_items} training sentences, "
        f"order-3 n-gram, {args.permutations} permutations. Made by `python bench/audit_power.py` "
        f"(seeds {args.seeds[0]}-{args.seeds[-1]}, sizes {args.sizes}).",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
        *("| " + " | ".join(r) + " |" for r in rows),
    ])
    if not args.no_doc:
        write_section(DOC, "audit", md)
        print(f"table written to {DOC}")
    write_json("audit_power", {"seeds": args.seeds, "sizes": sizes, "train_items": args.train_items,
                               "permutations": args.permutations, "verdicts": fired})


if __name__ == "__main__":
    main()
