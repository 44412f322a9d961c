"""PNG plots of a run, drawn from its folder alone: each main metric against generation, one
line per policy (mean over seeds, shaded min-max), and, for text, the Nature paper's histogram of
per-sample perplexity under generation 0."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from collapselab.atomic import atomic_write  # noqa: E402
from collapselab.report.metric_info import info  # noqa: E402

TEXT_METRICS = ["vocab_size", "tail_retention", "ppl_holdout", "ppl_under_gen0", "distinct_2", "mattr", "entropy", "novel_4gram_rate"]
THEORY_METRICS = ["variance_ratio", "mean_error", "w2", "mixture_l2", "nll_holdout",
                  "risk", "noise_ratio", "label_variance_ratio",  # linreg
                  "types_seen", "missing_mass", "l2_error", "collision", "tv_distance"]  # categorical
IMAGE_METRICS = ["fid", "precision", "recall", "density", "coverage", "class_entropy", "rare_class_share", "sharpness"]
METRICS = {"text": TEXT_METRICS, "numeric": THEORY_METRICS, "image": IMAGE_METRICS}


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)


def _draw(ax, metrics: pd.DataFrame, metric: str) -> None:
    for policy in dict.fromkeys(metrics["policy"]):  # metrics come in the run's policy order
        g = metrics[metrics["policy"] == policy].groupby("generation")[metric]
        mean, lo, hi = g.mean(), g.min(), g.max()
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=policy)
        if (hi > lo).any():
            ax.fill_between(mean.index, lo.values, hi.values, alpha=0.15)
    _label(ax, metric, "generation")
    if metrics["generation"].nunique() > 1:
        ax.set_xlim(metrics["generation"].min(), metrics["generation"].max())


def _label(ax, metric: str, xlabel: str) -> None:
    """Title with the direction, y label with the unit, and a y range that starts where it means
    something: a share shows [0, 1], a count or distance starts at 0."""
    i = info(metric)
    ax.set_title(f"{i.title} ({i.direction})", fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(i.ylabel, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.grid(alpha=0.3)
    lo, hi = ax.get_ylim()
    if i.bounded:
        ax.set_ylim(0, max(1.0, hi))
    elif lo > 0 and metric != "variance_ratio":
        ax.set_ylim(0, hi)


def plot_metrics(metrics: pd.DataFrame, out_dir: Path, kind: str, caption: str = "") -> list[Path]:
    """``kind``: 'text', 'image' or 'numeric' (the run config's ``kind``); ``caption`` names the
    corpus, model and seeds in every figure's title."""
    names = [m for m in METRICS[kind] if m in metrics.columns]
    paths = []
    for m in names:
        fig, ax = plt.subplots(figsize=(5.4, 3.6))
        _draw(ax, metrics, m)
        ax.legend(fontsize=8)
        if caption:
            fig.suptitle(caption, fontsize=8, color="0.35")
        p = out_dir / f"{m}.png"
        _save(fig, p)
        paths.append(p)
    cols = 4 if len(names) > 4 else len(names)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, m in zip(axes.flat, names):
        _draw(ax, metrics, m)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.02))
    if caption:
        fig.suptitle(caption, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    p = out_dir / "overview.png"
    _save(fig, p)
    return [p] + paths


def plot_histograms(per_policy: dict[str, dict[int, np.ndarray]], out_path: Path) -> Path:
    """``per_policy[policy][generation]`` = per-sample perplexities under generation 0."""
    n = len(per_policy)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False, sharey=True)
    for ax, (policy, by_gen) in zip(axes.flat, per_policy.items()):
        allv = np.concatenate(list(by_gen.values()))
        bins = np.logspace(np.log10(max(allv.min(), 1.0)), np.log10(np.percentile(allv, 99.5)), 50)
        for gen, values in sorted(by_gen.items()):
            ax.hist(values, bins=bins, histtype="step", density=True, label=f"gen {gen}")
        ax.set_xscale("log")
        ax.set_title(policy, fontsize=10)
        ax.set_xlabel("per-sample perplexity under generation 0")
    axes.flat[0].set_ylabel("density of samples")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
    return out_path


def plot_tree(metrics: pd.DataFrame, out_dir: Path, kind: str) -> list[Path]:
    """A derivative tree: each main metric against depth, a segment from every model to each of
    its children, coloured by the child's policy (mean over seeds)."""
    names = [m for m in METRICS[kind] if m in metrics.columns]
    num = metrics.select_dtypes(include=[np.number]).columns.drop(["seed"], errors="ignore")
    mean = metrics.groupby("policy")[list(num)].mean()
    first = metrics.groupby("policy").first()
    children = first[first.index != "root"]
    branch = list(dict.fromkeys(children["branch_policy"]))
    colours = {b: f"C{i}" for i, b in enumerate(branch)}
    cols = 4 if len(names) > 4 else len(names)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, m in zip(axes.flat, names):
        for label, row in children.iterrows():
            p = row["parent"]
            ax.plot([mean.loc[p, "generation"], mean.loc[label, "generation"]], [mean.loc[p, m], mean.loc[label, m]],
                    color=colours[row["branch_policy"]], marker="o", ms=2.5, lw=1, alpha=0.8)
        _label(ax, m, "depth (generations of derivatives)")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[b], marker="o", label=f"child trained with {b}") for b in branch]
    fig.legend(handles=handles, loc="lower center", ncol=len(branch), bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    p = out_dir / "tree.png"
    _save(fig, p)
    return [p]
