"""Reproduction 1 (issue 3): the Nature paper's language-model experiment with the `gpt` family.

Generation 0 trains a small GPT on human State of the Union sentences; generation g fine-tunes from
generation 0's weights on the text generation g-1 wrote, either with none of the human data
(`replace`, the paper's "0% original data") or with 10% of each training set drawn from it
(`anchor:0.1`, the paper's "10% original data"). Over >= 3 seeds: held-out perplexity per
generation (mean ± sd), and the distribution of each generation's per-sample perplexity under
generation 0 (the paper's Fig. 1b histograms). Writes the "gpt" section of docs/results.md and
the histogram figure docs/figures/repro_gpt_hist.png.

    python bench/repro_gpt.py                    # 3 seeds x 2 policies x 10 generations: ~35 min on 2 cores
    python bench/repro_gpt.py --train-items 1000 --generations 3 --seeds 0-1   # a quick look

The run folder (bench/out/repro_gpt/ by default) is kept: rerunning the script with the same
settings resumes an unfinished run or, when it is complete, only rewrites the tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import collapselab as cl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, run_or_load, seeds_arg, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ["replace", "anchor:0.1"]
LABEL = {"replace": "0% human data (replace)", "anchor:0.1": "10% human data (anchor:0.1)"}


def per_sample(run: cl.Run, policy: str, gen: int) -> np.ndarray:
    """Per-sample perplexity under generation 0 of generation ``gen``'s output, pooled over seeds."""
    vals = [pd.read_parquet(run.folder.sample_path(policy, s, gen, True), columns=["ppl_under_gen0"])["ppl_under_gen0"].to_numpy()
            for s in run.config.seeds]
    return np.concatenate(vals)


def ppl_table(m: pd.DataFrame, gens: list[int]) -> str:
    lines = ["| generation | " + " | ".join(f"{LABEL[p]}: held-out ppl" for p in POLICIES) + " | "
             + " | ".join(f"{p}: vs gen 0" for p in POLICIES) + " |",
             "| ---: |" + " ---: |" * (2 * len(POLICIES))]
    base = {p: m[(m.policy == p) & (m.generation == 0)].set_index("seed")["ppl_holdout"] for p in POLICIES}
    for g in gens:
        cells, rel = [], []
        for p in POLICIES:
            v = m[(m.policy == p) & (m.generation == g)].set_index("seed")["ppl_holdout"]
            cells.append(f"{v.mean():.0f} ± {v.std(ddof=1):.0f}")
            r = (v / base[p]).dropna()
            rel.append(f"{r.mean():.2f}×")
        lines.append(f"| {g} | " + " | ".join(cells) + " | " + " | ".join(rel) + " |")
    return "\n".join(lines)


def hist_table(run: cl.Run, gens: list[int]) -> str:
    """Quantiles of per-sample perplexity under gen 0, and the shares beyond gen 0's own 10th and
    95th percentiles: the paper's low-perplexity peak and long high-perplexity tail."""
    lines = ["| policy | generation | p5 | p25 | median | p75 | p95 | p99 | below gen-0 p10 | above gen-0 p95 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in POLICIES:
        ref = per_sample(run, p, 0)
        lo, hi = np.percentile(ref, [10, 95])
        for g in gens:
            v = per_sample(run, p, g)
            q = np.percentile(v, [5, 25, 50, 75, 95, 99])
            lines.append(f"| {p} | {g} | " + " | ".join(f"{x:.0f}" for x in q)
                         + f" | {np.mean(v < lo):.1%} | {np.mean(v > hi):.1%} |")
    return "\n".join(lines)


def verdict(gen0: float, final: dict) -> str:
    r, a = final["replace"].mean(), final["anchor:0.1"].mean()
    if r > gen0 and a < r:
        return (f"The direction matches the paper: with no human data, perplexity on human text rises {r / gen0:.2f}-fold; "
                f"with 10% kept it rises {a / gen0:.2f}-fold, {'far ' if (a - gen0) < 0.5 * (r - gen0) else ''}closer to generation 0.")
    return (f"This run does NOT show the paper's direction (generation 0 {gen0:.0f}, replace {r:.0f}, anchor {a:.0f}): "
            "check the settings before trusting it.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=seeds_arg, default=[0, 1, 2], help="e.g. 0-2 or 0,3 (default 0-2)")
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--train-items", type=int, default=None, help="sentences per generation (default: the gpt default, 5000)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--jobs", type=int, default=2, help="chains run side by side (default 2)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "repro_gpt", help="run folder (kept; a rerun resumes it)")
    ap.add_argument("--no-docs", action="store_true", help="print the tables without writing docs/results.md")
    args = ap.parse_args(argv)

    config = {"family": "gpt", "policies": POLICIES, "seeds": args.seeds, "generations": args.generations,
              "model": {"device": args.device}}
    if args.train_items:
        config["train_items"] = args.train_items
    t0 = time.perf_counter()
    run = run_or_load(config, args.out, args.jobs)
    m = run.metrics
    G = run.config.generations
    gens = sorted({0, 1, 2, 3, 5, G} & set(range(G + 1)))
    hist_gens = sorted({0, 1, min(5, G), G})
    per_policy = {p: {g: per_sample(run, p, g) for g in hist_gens} for p in POLICIES}
    from collapselab.report.plots import plot_histograms

    fig = plot_histograms(per_policy, (args.out if args.no_docs else ROOT / "docs" / "figures") / "repro_gpt_hist.png")
    s, mp = run.summary["corpus"], run.config.model
    final = {p: m[(m.policy == p) & (m.generation == G)]["ppl_holdout"] for p in POLICIES}
    gen0 = m[m.generation == 0]["ppl_holdout"]
    doc = f"""## Reproduction 1: the Nature paper's language model, with `gpt`

Produced by `python bench/repro_gpt.py{'' if args.seeds == [0, 1, 2] else ' --seeds ' + ','.join(map(str, args.seeds))}`
({time.strftime('%Y-%m-%d')}; this invocation took {time.perf_counter() - t0:.0f} s; a full run from scratch on this 2-core machine
takes about 35 minutes). Every number below is computed from that run's folder.

Setup: `gpt` ({mp['n_layer']} layers, {mp['n_head']} heads, width {mp['n_embd']}, {mp['bpe_vocab']:,} BPE pieces, context {mp['block_size']}),
{mp['epochs']:g} epochs per generation, sampling at temperature {mp['temperature']:g}; generation 0 trains on {s['train_items']:,} State of the
Union sentences ({s['train_tokens']:,} words); each later generation fine-tunes **from generation 0's weights** on
{s['train_items']:,} sentences its predecessor wrote (`replace`) or on 90% of those plus 10% drawn afresh from the human
training set (`anchor:0.1`). Held-out perplexity is per word on {s['holdout_items']:,} sentences of addresses no
generation trains on. Seeds {', '.join(map(str, run.config.seeds))}: mean ± sd.

### Held-out perplexity per generation

{ppl_table(m, gens)}

### Per-sample perplexity under generation 0 (the paper's Fig. 1b)

Each generation's {s['train_items']:,} sentences per seed, scored by that seed's generation 0, pooled over seeds.
"below gen-0 p10" is the share of sentences more probable than the 10% most probable of generation 0's own
output (the low-perplexity peak); "above gen-0 p95" the share less probable than its 5% least probable (the tail).

{hist_table(run, hist_gens)}

![per-sample perplexity under generation 0](figures/{fig.name})

### How this compares with the paper

Shumailov et al. (Nature 2024, Fig. 1) fine-tune OPT-125m on wikitext2 (generation 0: perplexity 34 on the test
set), generate with 5-way beam search, and report that with no original data later generations lose "20 to 28
perplexity points", while keeping 10% of the original data gives "only minor degradation"; the histograms of
per-sample perplexity under generation 0 gain a peak of very probable samples and a long tail of improbable ones.

Ours: generation 0 reaches {gen0.mean():.0f} per word (a 0.6 M-parameter model trained in a minute, not a 125 M
pretrained one, so the absolute level is not comparable); at generation {G} `replace` stands at
{final['replace'].mean():.0f} ± {final['replace'].std(ddof=1):.0f} and `anchor:0.1` at {final['anchor:0.1'].mean():.0f} ± {final['anchor:0.1'].std(ddof=1):.0f}.
{verdict(gen0.mean(), final)} Differences to keep in mind: we sample (temperature 1) rather than beam-search, since beam
search over 5,000 prompts per generation is slow on 2 CPU cores (`--decoding beam` runs the paper's recipe);
the paper picks each generation's best checkpoint on validation data, we train a fixed number of epochs.
"""
    if not args.no_docs:
        write_section(ROOT / "docs" / "results.md", "gpt", doc)
    print(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
