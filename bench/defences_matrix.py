"""The mitigation matrix over several seeds, with a combination selected on other seeds.

Two runs of `collapselab run --preset defences`, smaller (``--train-items``, default 1,000 sentences):

1. **selection**, on ``--select-seeds`` (default 0-1): the candidate combinations
   (:data:`CANDIDATES`) side by side; the one with the best mean rank over the outcome columns is
   *the selected combination*.
2. **report**, on ``--seeds`` (default 2-6, none of them a selection seed): the preset's defences,
   two controls (a random half: curation's size cost without its judgement; ``accumulate-subsample``:
   accumulation's pool at the budget of one generation, Kazdan et al. 2024) and the selected
   combination.

Writes the section ``matrix`` of docs/defences.md: every number there comes from these two runs.

    python bench/defences_matrix.py                    # ~15-20 minutes on 2 shared cores
    python bench/defences_matrix.py --seeds 2 --select-seeds 0 --out runs/m   # rerun to resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import collapselab as cl
from _common import write_section
from collapselab.presets import COLUMNS, DEFENCES, OUTCOMES, WEB, format_matrix, label_of, mitigation_matrix, preset_config

ROOT = Path(__file__).resolve().parent.parent
CONTROL = f"{WEB}+curate:random:0.5"
SUBSAMPLE = f"{WEB}+accumulate-subsample"
CONTROLS = {CONTROL: "random half (control)", SUBSAMPLE: "accumulate, size-matched (control)"}
CANDIDATES = [f"{WEB}+{c}" for c in (  # combinations of the defences that help alone
    "filter:watermark:0.01+filter:classifier:0.01+accumulate+anchor:0.1",
    "filter:watermark:0.01+filter:classifier:0.01+accumulate",
    "filter:watermark:0.01+filter:classifier:0.01+anchor:0.1+accumulate",
    "filter:watermark:0.01+accumulate",
    "filter:classifier:0.01+accumulate",
    "accumulate",
)]
SELECTED_LABEL = "selected combination"
GENS_SHOWN = (1, 3, 5, 7, 10)

_selected = ""  # the selection's winner, once known


def _label(policy: str) -> str:
    if policy in CONTROLS:
        return CONTROLS[policy]
    if policy == _selected and label_of(policy) == policy:
        return SELECTED_LABEL
    return label_of(policy)


def _markdown(heads: list[str], rows: list[list[str]], text_column: int = 0) -> str:
    """A markdown table; numbers right-aligned, ``text_column`` left-aligned."""
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(" --- " if i == text_column else " ---: " for i in range(len(heads))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _trajectory(m: pd.DataFrame, policies: list[str], column: str, fmt: str) -> str:
    """Mean over seeds of ``column`` per policy and generation."""
    mean = m.groupby(["policy", "generation"])[column].mean()
    gens = sorted({g for g in GENS_SHOWN if g <= m["generation"].max()} | {int(m["generation"].max())})
    heads = ["defence"] + [f"gen {g}" for g in gens]
    rows = [[_label(p)] + [format(mean[(p, g)], fmt) for g in gens] for p in policies]
    return _markdown(heads, rows)


def _detection(m: pd.DataFrame, policies: list[str]) -> str:
    """What each filter really flagged (the origins tell): false- and true-positive rates."""
    rows = []
    for p in policies:
        if "+filter:" not in p:
            continue
        d = m[(m["policy"] == p) & (m["generation"] > 0)]
        first, last = d[d["generation"] == 1], d[d["generation"] == d["generation"].max()]
        rows.append([_label(p), f"{d['human_flagged_share'].mean():.1%}", f"{first['synthetic_flagged_share'].mean():.1%}",
                     f"{last['synthetic_flagged_share'].mean():.1%}", f"{last['train_items_used'].mean():,.0f}"])
    return _markdown(["defence (last filter)", "human flagged (FPR, mean)", "synthetic flagged, gen 1 (TPR)",
                      "synthetic flagged, last gen (TPR)", "training items, last gen"], rows)


def _verdicts(t: pd.DataFrame) -> str:
    """Who wins, and where each defence does worse than no defence (beyond the seeds' spread)."""
    rows = t[t["policy"] != ""].set_index("policy")
    base = rows.loc[WEB]
    out = [f"* **Winner: {_label(rows.index[0])}**, the best mean rank over the four outcome columns."]
    for p, r in rows.iterrows():
        if p == WEB:
            continue
        worse, better = [], []
        for c, (head, higher) in OUTCOMES.items():
            if pd.isna(r[c]):
                continue
            gap = (r[c] - base[c]) * (1 if higher else -1)
            noise = max(r[c + "_sd"], base[c + "_sd"], 1e-12)
            (worse if gap < -noise else better if gap > noise else []).append(head)
        share = f"synthetic share in training {r['synthetic_share']:.0%} (no defence {base['synthetic_share']:.0%})"
        verdict = f"worse than no defence on {', '.join(worse)}" if worse else "no worse than no defence anywhere"
        gain = f"; better on {', '.join(better)}" if better else "; better on nothing"
        out.append(f"* {_label(p)}: {verdict}{gain}; {share}.")
    return "\n".join(out)


def _run(cfg: dict, out: Path, jobs: int) -> "cl.Run":
    """The run in ``out``: read if finished, resumed if started, else made."""
    if (out / "summary.json").exists():
        return cl.Run(out)
    started = (out / "config.yaml").exists()
    return cl.run_experiment(None if started else cfg, out=out, resume=started, jobs=jobs)


def _matrix(run) -> tuple[pd.DataFrame, str]:
    """The mitigation matrix of ``run`` and its markdown (training items included)."""
    m = run.metrics.sort_values(["policy", "seed", "generation"])
    t = mitigation_matrix(m, run.config.policies, run.config.diversity_metric)
    t["defence"] = [_label(p) if p else d for p, d in zip(t["policy"], t["defence"])]
    heads, rows = format_matrix(t)
    return t, _markdown(heads, rows, text_column=1)


def _at(m: pd.DataFrame, policy: str, g: int, column: str) -> float:
    return float(m[(m["policy"] == policy) & (m["generation"] == g)][column].mean())


def _findings(m: pd.DataFrame, t: pd.DataFrame, G: int) -> str:
    """A few readings, each a number from the report run and its comparison."""
    r = t[t["policy"] != ""].set_index("policy")
    acc, sub, web = f"{WEB}+accumulate", SUBSAMPLE, WEB

    def cell(p, c, fmt):
        return format(r.loc[p, c], fmt)

    out = [f"* **Size-matched control.** `accumulate` ends at diversity {cell(acc, 'diversity', '.0%')}, held-out perplexity "
           f"{cell(acc, 'ppl_holdout', ',.0f')} and rare-fact recall {cell(acc, 'rare_fact_recall', '.0%')} on "
           f"{cell(acc, 'train_items_used', ',.0f')} training items; `accumulate-subsample`, the same pool at "
           f"{cell(sub, 'train_items_used', ',.0f')} items, ends at {cell(sub, 'diversity', '.0%')}, "
           f"{cell(sub, 'ppl_holdout', ',.0f')} and {cell(sub, 'rare_fact_recall', '.0%')}; no defence at "
           f"{cell(web, 'diversity', '.0%')}, {cell(web, 'ppl_holdout', ',.0f')} and {cell(web, 'rare_fact_recall', '.0%')}."]
    for p in [p for p in r.index if "+filter:" in p and p.count("+") == 1]:
        d = m[(m["policy"] == p) & (m["generation"] > 0)]
        out.append(f"* **{_label(p)}**: flags {_at(m, p, 1, 'synthetic_flagged_share'):.1%} of the synthetic items at generation 1 and "
                   f"{_at(m, p, G, 'synthetic_flagged_share'):.1%} at generation {G} (items it never saw), and "
                   f"{d['human_flagged_share'].mean():.1%} of the human ones (target 1%); the synthetic share in training at "
                   f"generation {G} goes from {r.loc[web, 'synthetic_share']:.0%} to {r.loc[p, 'synthetic_share']:.0%}.")
    cur = f"{WEB}+curate:reward:0.5"
    if cur in r.index:
        out.append(f"* **Reward-model curation**: of a scrape {_at(m, cur, 1, 'curated_synthetic_share'):.0%} synthetic at generation 1 "
                   f"it keeps a set {_at(m, cur, 1, 'synthetic_share'):.0%} synthetic; at generation {G}, "
                   f"{_at(m, cur, G, 'curated_synthetic_share'):.0%} before and {_at(m, cur, G, 'synthetic_share'):.0%} after. "
                   f"The random half (control) ends at diversity {cell(CONTROL, 'diversity', '.0%')} and perplexity "
                   f"{cell(CONTROL, 'ppl_holdout', ',.0f')}; the reward model at {cell(cur, 'diversity', '.0%')} and "
                   f"{cell(cur, 'ppl_holdout', ',.0f')}.")
    return "\n".join(out)


def _readme(t: pd.DataFrame, G: int, train_items: int, seeds: str, select_seeds: str) -> str:
    """The README's bullet, every number and every comparison word from the report run's table."""
    r = t[t["policy"] != ""].set_index("policy")
    acc, sub, web, cur = f"{WEB}+accumulate", SUBSAMPLE, WEB, f"{WEB}+curate:reward:0.5"
    lo, hi = (float(x) for x in WEB.split(":")[1].split("-"))

    def v(p, c, fmt):
        return format(r.loc[p, c], fmt)

    out = (f"- **Defences against a contaminated web** (`python bench/defences_matrix.py`, tables in docs/defences.md; "
           f"{train_items:,} SOTU sentences plus the fact probe, the scrape's synthetic share rising {lo:.0%} → {hi:.0%} over "
           f"{G} generations, every judge fitted and calibrated on data it never judges, the combination selected on seeds "
           f"{select_seeds} and reported on seeds {seeds}): at generation {G} `accumulate` keeps {v(acc, 'diversity', '.0%')} of "
           f"generation 0's word types and held-out perplexity {v(acc, 'ppl_holdout', ',.0f')} against no defence's "
           f"{v(web, 'diversity', '.0%')} and {v(web, 'ppl_holdout', ',.0f')}, but it trains on {v(acc, 'train_items_used', ',.0f')} "
           f"items")
    if sub in r.index:
        size = ("so part of the gain is size" if r.loc[sub, "diversity"] < r.loc[acc, "diversity"]
                else "so the gain is not size")
        out += (f"; its size-matched control `accumulate-subsample` ({v(sub, 'train_items_used', ',.0f')} items, no defence: "
                f"{v(web, 'train_items_used', ',.0f')}) keeps {v(sub, 'diversity', '.0%')} and {v(sub, 'ppl_holdout', ',.0f')}, {size}")
    filters = [p for p in r.index if "+filter:" in p and p.count("+") == 1]
    if filters:
        shares = [r.loc[p, "synthetic_share"] for p in filters]
        how = ("barely change" if max(abs(x - r.loc[web, "synthetic_share"]) for x in shares) < 0.05 else "change")
        out += (f". Filters at a 1% false-positive rate {how} the mix: the synthetic share at generation {G} goes from "
                f"{v(web, 'synthetic_share', '.0%')} to " + ", ".join(
                    f"{r.loc[p, 'synthetic_share']:.0%} ({p.split('+filter:')[1].split(':')[0]})" for p in filters))
    if cur in r.index:
        more = "more" if r.loc[cur, "synthetic_share"] > r.loc[web, "synthetic_share"] else "less"
        worse = "worse" if r.loc[cur, "ppl_holdout"] > r.loc[web, "ppl_holdout"] else "better"
        out += (f". Reward-model curation ends with {more} synthetic text than no defence ({v(cur, 'synthetic_share', '.0%')} "
                f"vs {v(web, 'synthetic_share', '.0%')}) and a {worse} held-out perplexity ({v(cur, 'ppl_holdout', ',.0f')})")
    return out + "."


def main() -> int:
    global _selected
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="2-6", help="seeds the page reports (default 2-6)")
    ap.add_argument("--select-seeds", default="0-1", help="seeds the combination is selected on (default 0-1)")
    ap.add_argument("--train-items", type=int, default=1000, help="human training sentences (the preset's 3,000 is slower)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "defences-matrix-honest")
    args = ap.parse_args()
    from collapselab.cli.run import _parse_seeds
    from collapselab.errors import UserError

    seeds, select_seeds = _parse_seeds(args.seeds), _parse_seeds(args.select_seeds)
    if set(seeds) & set(select_seeds):
        raise UserError(f"--seeds {args.seeds} and --select-seeds {args.select_seeds} share seeds: report on seeds the selection never saw.")
    base = preset_config("defences") | {"train_items": args.train_items}
    selection = _run(base | {"seeds": select_seeds, "policies": CANDIDATES}, args.out / "selection", args.jobs)
    ts, selection_table = _matrix(selection)
    _selected = ts[ts["policy"] != ""]["policy"].iloc[0]  # rank 1 (ties: the earlier candidate)
    policies = base["policies"] + list(CONTROLS) + ([_selected] if _selected not in base["policies"] else [])
    run = _run(base | {"seeds": seeds, "policies": policies}, args.out / "report", args.jobs)
    t, table = _matrix(run)
    m = run.metrics.sort_values(["policy", "seed", "generation"])
    G = run.config.generations
    specs = "\n".join(f"| {_label(p)} | `{p}` |" for p in run.config.policies)
    s = run.summary
    same = "the preset's own *best combination*" if _selected == DEFENCES["best combination"] else "not the preset's *best combination*"
    rel = m.assign(rel=m[run.config.diversity_metric] / m.groupby(["policy", "seed"])[run.config.diversity_metric].transform("first"))
    doc = f"""## The matrix, measured

Produced by `python bench/defences_matrix.py --seeds {args.seeds} --select-seeds {args.select_seeds} --train-items {args.train_items}`
(on this shared 2-core machine the selection run took {selection.summary['seconds']:.0f} s and the report run
{s['seconds']:.0f} s; a rerun reads finished runs from `--out` and only rewrites this page). **A smaller configuration than the preset**, to fit
the shared machine: {args.train_items:,} human training sentences instead of 3,000 (plus the fact probe's planted sentences:
{s['corpus']['train_items']:,} items), {G} generations, half of every generation's output watermarked, a fresh key per run.
The judges learn from their own sample of generation 0's model and their own human split, and are calibrated on a human
split no metric uses (see *Defences* above).

### Selection (seeds {', '.join(map(str, select_seeds))}; not reported below)

The candidate combinations of the defences that help alone, ranked by mean rank over the four outcome columns:

{selection_table}

Selected: `{_selected}` ({same}).

### The matrix (seeds {', '.join(map(str, seeds))})

The preset's defences, the two controls and the selected combination; mean ± standard deviation over the seeds; "rank" is
the order of the mean rank over the first four columns; *training items*: the size of generation {G}'s training set.

{table}

Columns: {', '.join(f'*{h}*' for h in COLUMNS.values())} (generation {G}; diversity = distinct word types produced,
relative to generation 0; tail retention = share of the rare human words (≤ 10 occurrences) still produced;
rare-fact recall = mean recall of the facts planted 1, 2 and 4 times).

### Verdicts (written by the script from the table)

{_verdicts(t)}

### Readings (written by the script from the run)

{_findings(m, t, G)}

### What the filters really caught (on items they never learnt from)

{_detection(m, run.config.policies)}

### Diversity over the generations (relative to generation 0, mean over seeds)

{_trajectory(rel, run.config.policies, 'rel', '.0%')}

### Synthetic share of what reached training

{_trajectory(m, run.config.policies, 'synthetic_share', '.0%')}

### Training items (size of each generation's training set, mean over seeds)

{_trajectory(m, run.config.policies, 'train_items_used', ',.0f')}

### The policies

| defence | policy spec |
| --- | --- |
{specs}
"""
    write_section(ROOT / "docs" / "defences.md", "matrix", doc)
    print(doc)
    bullet = _readme(t, G, args.train_items, args.seeds, args.select_seeds)
    write_section(ROOT / "README.md", "defences-results", bullet)
    print(bullet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
