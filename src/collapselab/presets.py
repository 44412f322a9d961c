"""Ready-made experiments (``collapselab run --preset NAME``) and the tables they print.

``defences``: the mitigation matrix (docs/defences.md). The contaminated web of
:mod:`collapselab.loop.web` (synthetic share 10% at generation 1 rising to 90% at generation 10;
half of every generation's output watermarked) under each defence side by side, with the fact
probe on and a fresh watermark key made in the run folder. Settings given in a config file or as
flags override the preset's (e.g. ``--generations 3 --train-items 500`` for a quick look).

:func:`mitigation_matrix` turns the run's ``metrics.parquet`` into one row per defence: output
diversity at the last generation relative to generation 0, tail retention, held-out perplexity,
recall of the rare facts, the synthetic share of what reached training, and its size in items
(``train_items_used``; it ranks nothing: a defence's cost); mean and standard deviation over seeds,
ranked by the numbers (:func:`rank`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapselab.errors import UserError

WEB = "web:0.1-0.9"
DEFENCES = {  # row label -> policy spec (canonical form)
    "no defence": WEB,
    "watermark filter": f"{WEB}+filter:watermark:0.01",
    "likelihood filter": f"{WEB}+filter:likelihood:0.01",
    "classifier filter": f"{WEB}+filter:classifier:0.01",
    "curation (reward model)": f"{WEB}+curate:reward:0.5",
    "selection by own likelihood": f"{WEB}+curate:self:0.5",
    "anchor 10% (vault)": f"{WEB}+anchor:0.1",
    "accumulate": f"{WEB}+accumulate",
    "best combination": f"{WEB}+filter:watermark:0.01+filter:classifier:0.01+accumulate+anchor:0.1",
}

PRESETS = {
    "defences": {
        "preset": "defences",
        "family": "ngram",
        "corpus": "sotu",
        "generations": 10,
        "train_items": 3000,  # 2-4 minutes for the 9 chains on 2 shared cores (docs/defences.md)
        "facts": True,
        "watermark_key": "new",
        "watermark_share": 0.5,
        "policies": list(DEFENCES.values()),
    },
}

RARE_BUCKETS = ("f1", "f2", "f4")  # the facts planted fewest times
# column -> (heading, higher is better); the outcome columns decide the ranking
OUTCOMES = {
    "diversity": ("diversity vs gen 0", True),
    "tail_retention": ("tail retention", True),
    "ppl_holdout": ("held-out ppl", False),
    "rare_fact_recall": ("rare-fact recall", True),
}
COLUMNS = {**{k: v[0] for k, v in OUTCOMES.items()}, "synthetic_share": "synthetic share in training",
           "train_items_used": "training items"}


def preset_config(name: str) -> dict:
    """The settings of preset ``name`` (a copy: change it freely)."""
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: no such preset. Choose from: {', '.join(PRESETS)}.")
    return {k: list(v) if isinstance(v, list) else v for k, v in PRESETS[name].items()}


def label_of(policy: str) -> str:
    """A defence's row label: its name in :data:`DEFENCES`, else the policy spec itself."""
    return next((label for label, spec in DEFENCES.items() if spec == policy), policy)


def _outcomes(metrics: pd.DataFrame, diversity_metric: str) -> pd.DataFrame:
    """Per (policy, seed, generation): the matrix's columns."""
    m = metrics.sort_values(["policy", "seed", "generation"])
    gen0 = m[m["generation"] == 0].set_index(["policy", "seed"])[diversity_metric]
    out = m[["policy", "seed", "generation"]].copy()
    out["diversity"] = m[diversity_metric].to_numpy() / gen0.loc[list(zip(m["policy"], m["seed"]))].to_numpy()
    out["tail_retention"] = m["tail_retention"]
    out["ppl_holdout"] = m["ppl_holdout"]
    recall = [f"fact_recall_{b}" for b in RARE_BUCKETS if f"fact_recall_{b}" in m]
    out["rare_fact_recall"] = m[recall].mean(axis=1) if recall else np.nan
    out["synthetic_share"] = m["synthetic_share"]
    out["train_items_used"] = m["train_items_used"] if "train_items_used" in m else np.nan
    return out


def mitigation_matrix(metrics: pd.DataFrame, policies: list[str], diversity_metric: str = "vocab_size",
                      generation: int | None = None) -> pd.DataFrame:
    """One row per policy at ``generation`` (default: the last every policy reached), plus a first
    row for generation 0 (human data); columns ``<name>`` (mean over seeds) and ``<name>_sd``,
    ``rank`` (1 = best; generation 0 has none), ``defence`` and ``policy``, sorted by rank."""
    o = _outcomes(metrics, diversity_metric)
    G = int(o.groupby("policy")["generation"].max().min()) if generation is None else generation
    cols = list(COLUMNS)
    at_g = o[(o["generation"] == G) & o["policy"].isin(policies)]
    mean = at_g.groupby("policy")[cols].mean().reindex(policies)
    sd = at_g.groupby("policy")[cols].std(ddof=1).reindex(policies).fillna(0.0).add_suffix("_sd")
    table = pd.concat([mean, sd], axis=1)
    table["rank"] = rank(mean)
    table["policy"] = table.index
    table["defence"] = [label_of(p) for p in table.index]
    base = o[o["generation"] == 0][cols].mean().to_frame().T
    base[[c + "_sd" for c in cols]] = 0.0
    base[["rank", "policy", "defence"]] = [np.nan, "", "generation 0 (human data)"]
    table = pd.concat([base, table.sort_values("rank", kind="stable")], ignore_index=True)
    table.attrs["generation"] = G
    return table


def rank(mean: pd.DataFrame) -> np.ndarray:
    """1 = best: the order of each row's mean rank over the outcome columns (missing ones skipped)."""
    ranks = [mean[c].rank(ascending=not better) for c, (_, better) in OUTCOMES.items() if mean[c].notna().any()]
    return pd.concat(ranks, axis=1).mean(axis=1).rank(method="min").to_numpy()


def format_matrix(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headings and rows of strings (mean, with ± sd where seeds differ)."""
    G = table.attrs.get("generation", "G")
    heads = ["rank", "defence"] + [f"{h} (gen {G})" if c == "diversity" else h for c, h in COLUMNS.items()]
    pct = {"diversity", "tail_retention", "rare_fact_recall", "synthetic_share"}
    rows = []
    for r in table.itertuples(index=False):
        cells = ["" if pd.isna(r.rank) else f"{int(r.rank)}", r.defence]
        for c in COLUMNS:
            x, s = getattr(r, c), getattr(r, c + "_sd")
            fmt = (lambda v: f"{v:.0%}") if c in pct else (lambda v: f"{v:,.0f}")
            cells.append("n/a" if pd.isna(x) else fmt(x) + (f" ± {fmt(s)}" if s > 0 else ""))
        rows.append(cells)
    return heads, rows
