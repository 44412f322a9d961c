"""Why n-gram `accumulate` is not bounded: a test of the smoothing suspect.

Gerstgrasser et al. (2024) bound the error of `accumulate` at pi^2/6 x the real-data error for linear
models (our `linreg` family reproduces it, docs/theory.md). The n-gram loop's held-out perplexity under
`accumulate` keeps rising instead. The suspect: Kneser-Ney smoothing gives mass to continuations the
training data never had, so every generation's output holds trigrams no human wrote; under
`accumulate` they are never removed, and in Kneser-Ney every new distinct continuation of a context
raises that context's back-off weight (D x N1+(context) / c(context)) and takes mass from the human
continuations. Distinct synthetic trigram types pile up generation after generation (a bias added
each time, not noise that averages out as data accumulates, as in linear regression).

The script measures, over seeds (95% t intervals):
1. the junk share of each generation's output (tokens: trigrams absent from the human training set)
   and the number of distinct such trigram types in each generation's *training set*;
2. held-out perplexity, and two descriptions of it fitted on generations 1-10 and scored on 11-20,
   which the fits never saw: log(ppl) linear in log(novel types in the training set), and
   log(ppl_g / ppl_0) = c (H(g+1) - 1) with H the harmonic numbers (the shape of a bias that each
   generation adds and accumulation averages with weight 1/(g+1));
3. two interventions: the same loop sampling with top-p 0.9, which cuts the smoothed tail out of
   sampling (if junk sampled from the tail drives the rise, it should slow), and with a fixed small
   discount D = 0.1 instead of Ney's estimate (~0.6-0.9), which moves less mass from seen to unseen
   continuations at every refit (if the discount's bias, compounded by refitting, drives the rise,
   it should slow). Their slopes of log perplexity over the second half are compared with the
   default's (95% intervals; "no different" when they overlap).

    python bench/ngram_accumulate.py                   # 5 seeds x 20 generations x 3 variants (~10 min)
    python bench/ngram_accumulate.py --seeds 0-1 --generations 6   # a quick look

Writes the "ngram-accumulate" section of docs/results.md; run folders are kept under
bench/out/ngram_accumulate/ (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, announce, ci, fmt_ci, publish, run_or_load, seeds_arg  # noqa: E402

SAMPLERS = {"kn": {}, "top-p 0.9": {"top_p": 0.9}, "discount 0.1": {"discount": 0.1}}
POLICIES = ["accumulate", "replace"]
FIT_GENS = range(1, 11)  # the perplexity slope is fitted here and scored on the generations after


def harmonic(k: int) -> float:
    return float(np.sum(1.0 / np.arange(1, k + 1)))


def junk(run, corpus_of) -> pd.DataFrame:
    """Per generation: the junk share of its output (trigram tokens absent from the human training
    set) and the distinct junk trigram types in its training set (accumulate: the union of the
    earlier outputs; replace: the previous output)."""
    from collapselab.corpus import ngrams

    rows = []
    m = run.metrics
    for (policy, seed), d in m.groupby(["policy", "seed"]):
        corpus = corpus_of(int(seed))  # each seed its own human data (resample_data)
        V = len(corpus.vocab)
        human = pd.Index(pd.unique(ngrams.keys(corpus.train, 3, V)))
        seen: set = set()
        last: set = set()
        for g in sorted(d.generation.astype(int)):
            k = ngrams.keys(run.folder.read_samples(policy, int(seed), g, True), 3, V)
            novel = k[human.get_indexer(k) < 0]
            rows.append({"policy": policy, "seed": int(seed), "generation": g,
                         "junk": float(len(novel) / len(k)) if len(k) else 0.0,
                         "train_novel_types": float(len(seen) if policy == "accumulate" else len(last))})
            last = set(np.unique(novel).tolist())
            seen |= last
    return pd.DataFrame(rows)


def _fit_and_score(x: np.ndarray, y: np.ndarray, gens: np.ndarray, *, intercept: bool) -> tuple[np.ndarray, float]:
    """Least squares of y on x over the fit generations; (predictions, mean |ppl error| on the later ones)."""
    fit = np.isin(gens, list(FIT_GENS))
    later = gens > max(FIT_GENS)
    A = np.c_[x, np.ones_like(x)] if intercept else x[:, None]
    coef, *_ = np.linalg.lstsq(A[fit], y[fit], rcond=None)
    pred = A @ coef
    err = float(np.mean(np.abs(np.exp(pred[later] - y[later]) - 1))) if later.any() else float("nan")
    return pred, err


def analyse(m: pd.DataFrame, G: int) -> dict:
    """Per policy: per-generation means with CIs, and the two fits scored on later generations."""
    out = {}
    for policy in POLICIES:
        d = m[m.policy == policy].sort_values(["seed", "generation"]).reset_index(drop=True)
        gens = d.generation.to_numpy()
        base = d[d.generation == 0].set_index("seed")["ppl_holdout"]
        log_ratio = np.log(d.ppl_holdout.to_numpy() / base.loc[d.seed].to_numpy())
        h = np.array([harmonic(g + 1) - 1 for g in gens])
        harm, harm_err = _fit_and_score(h, log_ratio, gens, intercept=False)
        ok = gens >= 1
        types_pred = np.full(len(d), np.nan)
        tp, types_err = _fit_and_score(np.log(d.train_novel_types.to_numpy()[ok]), np.log(d.ppl_holdout.to_numpy()[ok]),
                                       gens[ok], intercept=True)
        types_pred[ok] = tp
        d = d.assign(ppl_harmonic=base.loc[d.seed].to_numpy() * np.exp(harm), ppl_types=np.exp(types_pred))
        per_gen = {g: {"junk": ci(e.junk), "types": ci(e.train_novel_types), "ppl": ci(e.ppl_holdout),
                       "ppl_harmonic": float(e.ppl_harmonic.mean()), "ppl_types": float(e.ppl_types.mean()),
                       "train_items": float(e.train_items_used.mean()) if "train_items_used" in e else float("nan")}
                   for g, e in d.groupby("generation")}
        late = d[d.generation >= G // 2]  # is it still rising? the slope of log ppl over the second half, per seed
        slopes = [np.polyfit(e.generation, np.log(e.ppl_holdout), 1)[0] for _, e in late.groupby("seed")]
        out[policy] = {"harmonic_err": harm_err, "types_err": types_err, "per_gen": per_gen, "late_slope": ci(slopes)}
    return out


def section(results: dict, seeds: list[int], G: int, n: int, cmd: str) -> str:
    lines = ["## Why n-gram `accumulate` is not bounded (issue 13)", "",
             "Gerstgrasser et al. bound `accumulate`'s error in linear models (reproduced by the `linreg` family, "
             "docs/theory.md); the n-gram loop's held-out perplexity kept rising. The suspect was Kneser-Ney "
             "smoothing: it gives mass to continuations no human wrote, a share of every output is such "
             "\"junk\" trigrams, and under `accumulate` they stay in the training data for good. The tables "
             "follow the junk and test two interventions; the reading at the end is chosen by the numbers.", "",
             f"Made by `{cmd}` (seeds {seeds[0]}-{seeds[-1]}, {G} generations, {n:,} training sentences, "
             "order-3 Kneser-Ney n-gram on the default corpus; every seed draws its own training and held-out sentences, `--resample-data`). Mean ± half-width of the 95% t interval over "
             "seeds. *Junk*: share of the output's trigrams that the human training set does not have. "
             "*Novel types in training set*: distinct such trigrams in what the generation trained on. "
             "*Fit (types)*: log ppl linear in log(novel types); *fit (harmonic)*: ppl_0 x exp(c (H(g+1) - 1)); "
             f"both fitted on generations {FIT_GENS.start}-{FIT_GENS.stop - 1} only.", ""]
    shown = sorted({0, 1, 2, 5, 10, 15, G} & set(range(G + 1)))
    for sampler, res in results.items():
        acc, rep = res["accumulate"], res["replace"]
        lines += [f"**Sampler: {sampler}**", "",
                  "| generation | accumulate: training items | junk | novel types in training set | held-out ppl "
                  "| fit (types) | fit (harmonic) | replace: junk | held-out ppl |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for g in shown:
            a, r = acc["per_gen"][g], rep["per_gen"][g]
            lines.append(f"| {g} | {a['train_items']:,.0f} | {fmt_ci(a['junk'], '.3f')} | {fmt_ci(a['types'], ',.0f')} | "
                         f"{fmt_ci(a['ppl'], '.0f')} | {a['ppl_types']:.0f} | {a['ppl_harmonic']:.0f} | "
                         f"{fmt_ci(r['junk'], '.3f')} | {fmt_ci(r['ppl'], '.0f')} |")
        later = f"generations {max(FIT_GENS) + 1}-{G}" if G > max(FIT_GENS) else "(no later generation: run more)"
        s_lo = acc["late_slope"][0] - acc["late_slope"][1]
        rising = "still rising" if s_lo > 0 else "not shown to rise"
        lines += ["", f"`accumulate`, {later}: the types fit misses the measured perplexity by {acc['types_err']:.1%} "
                  f"on average, the harmonic fit by {acc['harmonic_err']:.1%}. Slope of log ppl per generation over "
                  f"generations {G // 2}-{G}: {fmt_ci(acc['late_slope'], '.4f')} ({rising}).", ""]
    return "\n".join(lines)


def verdict(results: dict, name: str) -> str:
    """'slower', 'faster' or 'no different' than the default's late slope (95% intervals)."""
    ref = results["kn"]["accumulate"]["late_slope"]
    m, hw = results[name]["accumulate"]["late_slope"]
    if m + hw < ref[0] - ref[1]:
        return "slower"
    if m - hw > ref[0] + ref[1]:
        return "faster"
    return "no different"


def reading(results: dict, G: int) -> str:
    """What the measurements say about the suspect, in words chosen by the measurements."""
    acc = results["kn"]["accumulate"]
    lo = acc["late_slope"][0] - acc["late_slope"][1]
    out = [("Under `accumulate` the held-out perplexity is still rising at the last generation (the slope's "
            "95% interval is above 0)." if lo > 0 else "Under `accumulate` the held-out perplexity is not shown "
            "to be rising at the end (the slope's interval reaches 0).")]
    if G > max(FIT_GENS):
        out.append("A curve of the harmonic shape, fitted on the first ten generations only, predicts the later ones "
                   + ("closely" if acc["harmonic_err"] < 0.05 else "poorly")
                   + ": growth like the logarithm of the generation, slowing but unbounded, the shape of a bias that "
                   "every generation adds and accumulation averages with weight 1/(g+1).")
    if "top-p 0.9" in results:
        v = verdict(results, "top-p 0.9")
        out.append("Cutting the smoothed tail out of sampling (top-p 0.9) "
                   + ("slowed the rise, as the suspect (junk sampled from the smoothing mass) predicts."
                      if v == "slower" else f"made the rise {v}: junk sampled from the tail is not what drives it."))
    if "discount 0.1" in results:
        v = verdict(results, "discount 0.1")
        out.append("A smaller Kneser-Ney discount (less mass moved from seen to unseen continuations at each refit) "
                   + ("slowed the rise: the driver is the smoothing's bias itself, compounded by refitting on "
                      "smoothed samples, not only the junk it lets be sampled." if v == "slower"
                      else f"made the rise {v}, not slower."))
    slowed = [n for n in ("top-p 0.9", "discount 0.1") if n in results and verdict(results, n) == "slower"]
    if not slowed and "discount 0.1" in results:
        cut = results["discount 0.1"]["accumulate"]["per_gen"][G]["junk"][0] / acc["per_gen"][G]["junk"][0]
        out.append(f"Neither intervention slowed the rise, though the smaller discount cut the junk share of the output "
                   f"to {cut:.0%} of the default's: junk trigrams do not drive it, and the smoothing suspect is not "
                   "confirmed. Still open: what does. A candidate not tested here is the tail: each synthetic sample "
                   "under-represents rare n-grams, and under `accumulate` the human data, the only full record of them, "
                   "is a share 1/(g+1) of the training set.")
    return " ".join(out) + "\n"


def summary(results: dict, G: int) -> str:
    """Each variant's `accumulate` at the last generation and its late slope, against the default's."""
    lines = [f"**Summary, `accumulate`** (slope: of log held-out perplexity per generation over generations {G // 2}-{G}; "
             "compared with the default sampler by 95% intervals)", "",
             "| variant | held-out ppl at generation %d | junk | novel types in training set | slope | vs default |" % G,
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, res in results.items():
        a = res["accumulate"]
        last = a["per_gen"][G]
        lines.append(f"| {name} | {fmt_ci(last['ppl'], '.0f')} | {fmt_ci(last['junk'], '.3f')} | {fmt_ci(last['types'], ',.0f')} | "
                     f"{fmt_ci(a['late_slope'], '.4f')} | {'(the default)' if name == 'kn' else verdict(results, name)} |")
    return "\n".join(lines) + "\n\n" + reading(results, G)


def main() -> None:
    announce()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-4"))
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--train-items", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the section, leave docs/results.md alone")
    args = ap.parse_args()
    from collapselab.config import ExperimentConfig
    from collapselab.corpus import load_corpus

    results = {}
    for name, model in SAMPLERS.items():
        cfg = {"family": "ngram", "train_items": args.train_items, "generations": args.generations,
               "policies": POLICIES, "seeds": args.seeds, "resample_data": True, **({"model": model} if model else {})}
        out = OUT_DIR / "ngram_accumulate" / f"{name.replace(' ', '')}-n{args.train_items}-g{args.generations}-s{len(args.seeds)}-r"
        run = run_or_load(cfg, out, args.jobs)
        config = ExperimentConfig(**{k: v for k, v in cfg.items() if k != "model"})
        m = run.metrics.merge(junk(run, lambda seed: load_corpus(config, seed)), on=["policy", "seed", "generation"])
        results[name] = analyse(m, args.generations)
    text_summary = summary(results, args.generations)
    seeds = ",".join(map(str, args.seeds))
    cmd = "python bench/ngram_accumulate.py" + ("" if (seeds, args.generations) == ("0,1,2,3,4", 20) else
                                                f" --seeds {args.seeds[0]}-{args.seeds[-1]} --generations {args.generations}")
    text = section(results, args.seeds, args.generations, args.train_items, cmd) + "\n" + text_summary
    publish("ngram-accumulate", text, write=not args.no_write)


if __name__ == "__main__":
    main()
