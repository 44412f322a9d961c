"""The article's table, computed: generation, output diversity relative to generation 0, and the
degradation observed. Every number and phrase comes from ``metrics.parquet``.

Every row starts with the size of the generation's training set (``train_items_used``, in items),
so a defence that shrinks or grows the set reads as such next to what it did.

A phrase is chosen by thresholds on the run's own numbers (a change below the threshold is not
mentioned), so the same run always reads the same, and a different run reads differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIVERSITY_LABEL = {
    "vocab_size": "distinct word types produced",
    "distinct_1": "distinct-1 (types per token)",
    "distinct_2": "distinct-2 (distinct bigrams per bigram)",
    "distinct_3": "distinct-3",
    "mattr": "MATTR (window 500)",
    "entropy": "unigram entropy",
    "ttr": "type-token ratio",
    "tail_retention": "share of rare human words produced",
    "variance_ratio": "variance (covariance trace) of the fitted model",
    "types_seen": "distinct token types produced",
    "label_variance_ratio": "variance of the generated labels, over the human labels' (linear regression)",
    "sample_variance_ratio": "variance of the samples",
    "recall": "recall: share of real images within reach of a generated one",
    "coverage": "coverage of real images",
    "class_entropy": "class entropy of the generated images",
}


@dataclass
class PolicyBlock:
    policy: str
    rows: list[tuple[int, float, float, str]]  # generation, diversity %, spread (pp), degradation


def caption(metric: str, n_seeds: int) -> str:
    label = DIVERSITY_LABEL.get(metric, metric)
    seeds = f"mean over {n_seeds} seeds, ± one standard deviation" if n_seeds > 1 else "one seed"
    return f"Output diversity = {label} ({metric}), relative to generation 0; {seeds}."


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _text_phrases(g0: pd.Series, g: pd.Series) -> list[str]:
    out = []
    if g0["tail_retention"] > 0:
        lost = 1 - g["tail_retention"] / g0["tail_retention"]
        if lost >= 0.005:
            out.append(f"{_pct(lost)} of rare words no longer produced")
        elif lost <= -0.005:
            out.append(f"{_pct(-lost)} more rare words produced")
    d = g["ppl_holdout"] / g0["ppl_holdout"] - 1
    if abs(d) >= 0.02:
        out.append(f"held-out perplexity {d:+.0%}")
    if g0["distinct_3"] > 0:
        r = 1 - g["distinct_3"] / g0["distinct_3"]
        if r >= 0.05:
            out.append(f"{_pct(r)} fewer distinct 3-grams")
    if g["novel_4gram_rate"] >= 1.1 * g0["novel_4gram_rate"] and g["novel_4gram_rate"] >= 0.01:
        out.append(f"{_pct(g['novel_4gram_rate'])} of 4-grams absent from human text")
    lj = g["ppl_under_gen0"] / g0["ppl_under_gen0"] - 1
    if lj <= -0.1:
        out.append(f"output {_pct(-lj)} more predictable to generation 0")
    return out


def _theory_phrases(g0: pd.Series, g: pd.Series) -> list[str]:
    if "risk" in g:  # linear regression
        return [f"test error {g['risk'] / g0['risk']:.1f}x generation 0's" if g0["risk"] > 0 else f"test error {g['risk']:.3g}",
                f"label noise at {_pct(g['noise_ratio'])} of the true level"]
    if "missing_mass" in g:  # categorical model on Zipf tokens
        return [f"{g['types_seen']:.0f} token types produced (generation 0: {g0['types_seen']:.0f})",
                f"{_pct(g['missing_mass'])} of the true mass never seen", f"collision {g['collision']:.3f}"]
    out = [f"variance at {_pct(g['variance_ratio'])} of the original"]
    if g["mean_error"] >= 0.01:
        out.append(f"mean off by {g['mean_error']:.2f}")
    out.append(f"W2 {g['w2']:.3f}")
    if "mixture_l2" in g and g["mixture_l2"] >= 1.2 * g0["mixture_l2"]:
        out.append(f"density L2 {g['mixture_l2']:.3f}")
    return out


def _image_phrases(g0: pd.Series, g: pd.Series) -> list[str]:
    out = []
    if g0["fid"] > 0 and g["fid"] >= 1.1 * g0["fid"]:
        out.append(f"FID {g['fid'] / g0['fid']:.1f}x generation 0's")
    if g0["sharpness"] > 0:
        d = g["sharpness"] / g0["sharpness"] - 1
        if d <= -0.05:
            out.append(f"{_pct(-d)} blurrier")
        elif d >= 0.05:
            out.append(f"{_pct(d)} sharper (artifacts)")
    if g["rare_class_share"] <= 0.5 * g0["rare_class_share"]:
        out.append(f"rarest class down to {_pct(g['rare_class_share'])} of images")
    if g0["precision"] > 0 and g["precision"] >= 0.95 * g0["precision"] and g["recall"] <= 0.8 * g0["recall"]:
        out.append("fidelity holds while diversity falls")
    return out


def degradation(g0: pd.Series, g: pd.Series, generation: int, diversity: float, kind: str) -> str:
    """``kind``: 'text', 'image' or 'numeric' (the run config's ``kind``)."""
    if generation == 0:
        if kind == "text":
            return (f"baseline, trained on human text: held-out perplexity {g['ppl_holdout']:.0f}, "
                    f"produces {_pct(g['tail_retention'])} of the rare human words")
        if kind == "image":
            return (f"baseline, trained on real images: FID {g['fid']:.1f}, precision {g['precision']:.2f}, "
                    f"recall {g['recall']:.2f}")
        if "risk" in g:
            return f"baseline, fitted to human data: test error {g['risk']:.3g}"
        if "missing_mass" in g:
            return f"baseline, fitted to human data: {g['types_seen']:.0f} token types, {_pct(g['missing_mass'])} of the true mass unseen"
        return f"baseline, fitted to human data: variance at {_pct(g['variance_ratio'])} of the original, W2 {g['w2']:.3f}"
    parts = {"text": _text_phrases, "image": _image_phrases, "numeric": _theory_phrases}[kind](g0, g)
    if diversity < 0.10:
        parts.insert(0, "homogenised output (diversity below 10%)")
    return "; ".join(parts[:4]) if parts else "no measurable change from generation 0"


def with_size(text: str, row: pd.Series) -> str:
    """``text`` after the training-set size of ``row`` (``train_items_used``; runs made before the
    column existed have none and read as before)."""
    size = row.get("train_items_used", np.nan)
    return text if pd.isna(size) else f"trained on {size:,.0f} items; {text}"


def build_table(metrics: pd.DataFrame, metric: str, kind: str, order: list[str] | None = None) -> list[PolicyBlock]:
    """One block per policy (in ``order``, else as they appear), rows = generations."""
    numeric = metrics.select_dtypes(include=[np.number]).columns.drop(["seed", "generation"], errors="ignore")
    present = list(dict.fromkeys(metrics["policy"]))
    blocks = []
    for policy in [p for p in (order or []) if p in present] + [p for p in present if p not in (order or [])]:
        df = metrics[metrics["policy"] == policy]
        base = df[df["generation"] == 0].set_index("seed")[metric]
        rel = df.assign(rel=df[metric] / df["seed"].map(base))
        spread = rel.groupby("generation")["rel"].std(ddof=1).fillna(0.0)
        mean = df.groupby("generation")[list(numeric)].mean()
        rel_mean = rel.groupby("generation")["rel"].mean()
        g0 = mean.loc[0]
        rows = []
        for gen in mean.index:
            d = float(rel_mean.loc[gen])
            text = degradation(g0, mean.loc[gen], int(gen), d, kind)
            rows.append((int(gen), d, float(spread.loc[gen]), with_size(text, mean.loc[gen])))
        blocks.append(PolicyBlock(policy, rows))
    return blocks


def table_records(blocks: list[PolicyBlock]) -> list[dict]:
    return [
        {"policy": b.policy, "generation": g, "diversity_relative": d, "diversity_spread": s, "degradation": text}
        for b in blocks
        for g, d, s, text in b.rows
    ]


@dataclass
class TreeNode:
    label: str  # "root", then policy names joined by ">" along the path
    depth: int
    parent: str | None
    diversity: float  # relative to the root, mean over seeds
    spread: float
    degradation: str


def tree_nodes(metrics: pd.DataFrame, metric: str, kind: str) -> dict[str, TreeNode]:
    """Every model of a derivative tree with its diversity relative to the root (generation 0)."""
    numeric = metrics.select_dtypes(include=[np.number]).columns.drop(["seed", "generation"], errors="ignore")
    root = metrics[metrics["policy"] == "root"].set_index("seed")[metric]
    rel = metrics.assign(rel=metrics[metric] / metrics["seed"].map(root))
    mean = metrics.groupby("policy")[list(numeric)].mean()
    rel_mean = rel.groupby("policy")["rel"].mean()
    spread = rel.groupby("policy")["rel"].std(ddof=1).fillna(0.0)
    first = metrics.groupby("policy").first()
    g0 = mean.loc["root"]
    nodes = {}
    for label in mean.index:
        depth = int(first.loc[label, "generation"])
        parent = None if label == "root" else first.loc[label, "parent"]
        d = float(rel_mean.loc[label])
        text = with_size(degradation(g0, mean.loc[label], depth, d, kind), mean.loc[label])
        nodes[label] = TreeNode(label, depth, parent, d, float(spread.loc[label]), text)
    return nodes


def build_tree_table(metrics: pd.DataFrame, metric: str, kind: str) -> list[PolicyBlock]:
    """One block per lineage of the tree, root to leaf, in the article's table shape."""
    nodes = tree_nodes(metrics, metric, kind)
    depth = max(n.depth for n in nodes.values())
    blocks = []
    for leaf in sorted(label for label, n in nodes.items() if n.depth == depth):
        path, label = [], leaf
        while label is not None:
            path.append(nodes[label])
            label = nodes[label].parent
        blocks.append(PolicyBlock(leaf, [(n.depth, n.diversity, n.spread, n.degradation) for n in reversed(path)]))
    return blocks
