"""What each metric is, for people: a title, the y-axis label with its unit, and which way is better.

One table for the PNG plots and the HTML report, so a chart never shows a number without saying
what it measures and whether a rise is good news."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    title: str
    ylabel: str  # the quantity and its unit
    better: int  # +1 higher is better, -1 lower is better, 0 neither (read against generation 0)
    bounded: bool = False  # a share or rate in [0, 1]: the axis shows all of it

    @property
    def direction(self) -> str:
        return {1: "higher is better", -1: "lower is better", 0: "read against generation 0"}[self.better]


INFO: dict[str, MetricInfo] = {
    "vocab_size": MetricInfo("word types produced", "distinct words (count)", +1),
    "ttr": MetricInfo("type-token ratio", "types / tokens", +1, True),
    "tail_retention": MetricInfo("rare human words still produced", "share of rare words", +1, True),
    "ppl_holdout": MetricInfo("perplexity of held-out human text", "perplexity per word", -1),
    "ppl_under_gen0": MetricInfo("samples' perplexity under gen 0", "perplexity per word", 0),
    "distinct_1": MetricInfo("distinct-1", "distinct unigrams / unigrams", 0, True),
    "distinct_2": MetricInfo("distinct-2", "distinct bigrams / bigrams", 0, True),
    "distinct_3": MetricInfo("distinct-3", "distinct trigrams / trigrams", 0, True),
    "mattr": MetricInfo("MATTR (window 500)", "moving-average type-token ratio", +1, True),
    "entropy": MetricInfo("unigram entropy", "entropy (bits)", +1),
    "novel_4gram_rate": MetricInfo("4-grams absent from human text", "share of 4-grams", -1, True),
    "self_bleu": MetricInfo("self-BLEU-4 (500 items)", "mean BLEU of each item against the others", -1, True),
    "unigram_kl": MetricInfo("unigram KL from the human training set", "KL (bits)", -1),
    "variance_ratio": MetricInfo("variance / original", "fitted variance / true variance", 0),
    "mean_error": MetricInfo("mean error", "|fitted mean - true mean|", -1),
    "w2": MetricInfo("Wasserstein-2 to the original", "W2 distance", -1),
    "mixture_l2": MetricInfo("L2 distance between densities", "L2 distance", -1),
    "nll_holdout": MetricInfo("NLL of held-out human data", "negative log-likelihood (nats)", -1),
    "fid": MetricInfo("FID to real images (classifier features)", "FID", -1),
    "precision": MetricInfo("precision (fidelity)", "share of samples near real images", +1, True),
    "recall": MetricInfo("recall (diversity)", "share of real images covered", +1, True),
    "density": MetricInfo("density", "density (1 = as real data)", 0),
    "coverage": MetricInfo("coverage of real images", "share of real images", +1, True),
    "class_entropy": MetricInfo("class entropy", "normalised entropy (1 = all classes even)", +1, True),
    "rare_class_share": MetricInfo("share of the least-made class", "share of samples", +1, True),
    "sharpness": MetricInfo("sharpness", "variance of the Laplacian", +1),
    "risk": MetricInfo("test error of the fitted line", "||w - w*||^2", -1),
    "noise_ratio": MetricInfo("label noise the model adds", "fitted sigma / true sigma", 0),
    "label_variance_ratio": MetricInfo("variance of the generated labels", "over the human labels'", 0),
    "types_seen": MetricInfo("token types produced", "distinct types (count)", +1),
    "missing_mass": MetricInfo("true probability mass never seen", "share of the mass", -1, True),
    "l2_error": MetricInfo("frequency error", "||p_hat - p||^2", -1),
    "collision": MetricInfo("collision probability", "sum of p^2 (1 = one token)", -1, True),
    "tv_distance": MetricInfo("total variation to the true distribution", "TV distance", -1, True),
    "synthetic_share": MetricInfo("synthetic share of the training set", "share of items", -1, True),
    "train_items": MetricInfo("training-set size", "items", 0),
}


def info(metric: str) -> MetricInfo:
    """The entry for ``metric``; a plain one for metrics a later wing adds (fact_recall_..., ...)."""
    if metric in INFO:
        return INFO[metric]
    if metric.startswith("fact_recall_"):
        return MetricInfo(f"fact recall, facts seen {metric.rsplit('_', 1)[-1]}x", "share answered right", +1, True)
    if metric.startswith("hallucination_rate_"):
        return MetricInfo(f"hallucination rate, facts seen {metric.rsplit('_', 1)[-1]}x", "share answered wrong", -1, True)
    return MetricInfo(metric.replace("_", " "), metric, 0)
