"""The metrics of one generation, as a row of ``metrics.parquet``.

An evaluator is built once per experiment from the human corpus (and, for text, generation 0's
model, the Nature paper's judge). ``evaluate(model, samples)`` returns a dict of floats whose keys
are the long-lived column names of DESIGN.md, plus per-item values worth keeping with the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from collapselab.corpus import ngrams
from collapselab.corpus.numeric import NumericCorpus
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.text_corpus import TextCorpus
from collapselab.metrics import lexical, tail
from collapselab.metrics.distributions import moments, theory_metrics

NOVEL_N = 4
MATTR_WINDOW = 500
SELF_BLEU_ITEMS = 500  # self-BLEU is scored on this many items of each generation, evenly spaced


def unigram_kl(reference_counts: np.ndarray, tokens: np.ndarray) -> float:
    """KL(reference || sample) of two unigram distributions over the same vocabulary, in bits, each
    smoothed by adding 1/2 to every word's count (so a word the sample lost costs a finite amount)."""
    V = len(reference_counts)
    q = np.bincount(tokens[tokens < V], minlength=V).astype(np.float64) + 0.5
    p = reference_counts.astype(np.float64) + 0.5
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log2(p / q)))


def self_bleu_sample(samples: TokenSequences, vocab_size: int, k: int = SELF_BLEU_ITEMS) -> float:
    """Self-BLEU-4 of ``k`` items spread evenly over the set (all of them when fewer): deterministic,
    and the watermarked and unmarked parts of a contaminated web's output both represented."""
    from collapselab.metrics.selfbleu import self_bleu

    if len(samples) < 2:
        return float("nan")
    idx = np.unique(np.linspace(0, len(samples) - 1, min(k, len(samples))).astype(np.int64))
    return self_bleu(samples.take(idx), vocab_size)


@dataclass
class TextEvaluator:
    corpus: TextCorpus
    rare_max_count: int = tail.RARE_MAX_COUNT
    gen0: object | None = None  # generation 0's model, set after it is fitted
    fact_probe: object | None = None  # a metrics.facts.FactProbe; None: from corpus.facts if planted
    rare_: np.ndarray = field(init=False)
    human_4grams_: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.V = len(self.corpus.vocab)
        self.rare_ = tail.rare_words(self.corpus.train.tokens, self.rare_max_count)
        human = TokenSequences.concat([self.corpus.train, self.corpus.pool])
        self.human_4grams_ = pd.Index(pd.unique(ngrams.keys(human, NOVEL_N, self.V)))
        self.human_unigrams_ = np.bincount(self.corpus.train.tokens, minlength=self.V)
        if self.fact_probe is None and getattr(self.corpus, "facts", None) is not None:
            from collapselab.metrics.facts import FactProbe

            self.fact_probe = FactProbe(self.corpus.facts, self.corpus.vocab)

    def evaluate(self, model, samples: TokenSequences) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        toks = samples.tokens
        row = {
            "n_items": float(len(samples)),
            "n_tokens": float(len(toks)),
            "mean_length": float(len(toks) / max(len(samples), 1)),
            "vocab_size": float(lexical.vocab_size(toks)),
            "ttr": lexical.ttr(toks),
            "mattr": lexical.mattr(toks, MATTR_WINDOW),
            "distinct_1": lexical.ttr(toks),  # distinct-1 is the type-token ratio
            "distinct_2": lexical.distinct_n(samples, 2, self.V),
            "distinct_3": lexical.distinct_n(samples, 3, self.V),
            "entropy": lexical.entropy(toks),
            "tail_retention": tail.tail_retention(toks, self.rare_),
            "novel_4gram_rate": tail.novel_ngram_rate(samples, self.human_4grams_, NOVEL_N, self.V),
            "self_bleu": self_bleu_sample(samples, self.V),
            "unigram_kl": unigram_kl(self.human_unigrams_, toks),
            "ppl_holdout": model.perplexity(self.corpus.holdout),
        }
        judge = self.gen0 if self.gen0 is not None else model
        ll = judge.log_likelihood(samples)
        per_item_ppl = np.exp(-ll / judge.n_scored(samples))
        row["ppl_under_gen0"] = float(np.exp(-ll.sum() / judge.n_scored(samples).sum()))
        if self.fact_probe is not None:
            row.update(self.fact_probe.evaluate(model))
        return row, {"ppl_under_gen0": per_item_ppl}


@dataclass
class NumericEvaluator:
    corpus: NumericCorpus
    gen0: object | None = None

    def evaluate(self, model, samples: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        ref = (self.corpus.weights, self.corpus.means, self.corpus.covs)
        row = {"n_items": float(len(samples)), **theory_metrics(model.mixture(), ref)}
        row["nll_holdout"] = float(-model.log_likelihood(self.corpus.holdout).mean())
        row["sample_variance_ratio"] = float(np.trace(np.atleast_2d(np.cov(samples, rowvar=False))) / np.trace(moments(ref)[1]))
        return row, {}



@dataclass
class LinRegEvaluator:
    """Gerstgrasser et al.'s linear regression: the fit's excess risk against the true coefficients."""

    corpus: NumericCorpus
    gen0: object | None = None

    def evaluate(self, model, samples: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        c = self.corpus
        labels = samples[:, -1]
        row = {"n_items": float(len(samples)),
               "risk": model.risk(c.w_true),  # ||w_hat - w*||^2: the test error for isotropic inputs
               "noise_ratio": float(model.noise_ / c.noise),
               "label_variance_ratio": float(labels.var() / c.train[:, -1].var()),
               "nll_holdout": float(-model.log_likelihood(c.holdout).mean())}
        return row, {}


@dataclass
class CategoricalEvaluator:
    """Seddik's categorical model on Dohmatob's Zipf tokens: what the fitted distribution lost."""

    corpus: NumericCorpus
    gen0: object | None = None

    def evaluate(self, model, samples: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        from collapselab.models.zipf import l2_error, missing_mass

        p = self.corpus.probs
        held = self.corpus.holdout[:, 0]
        row = {"n_items": float(len(samples)),
               "types_seen": float(np.count_nonzero(np.bincount(samples[:, 0], minlength=len(p)))),
               "missing_mass": missing_mass(model, p),  # the memoriser's test error (Tale of Tails)
               "l2_error": l2_error(model, p),  # the frequency estimator's error (Strong Collapse)
               "collision": model.collision(),  # sum p^2: 1 at a Dirac (Seddik's S)
               "tv_distance": float(0.5 * np.abs(model.probs_ - p).sum()),
               "holdout_unseen_share": float(np.mean(model.counts_[held] == 0))}
        return row, {}


def make_evaluator(config, corpus):
    """The evaluator of a run's family on ``corpus``."""
    if config.is_text:
        return TextEvaluator(corpus, rare_max_count=config.rare_max_count)
    if config.is_image:
        from collapselab.metrics.image_suite import ImageEvaluator  # torch: only for image runs

        return ImageEvaluator(corpus)
    return numeric_evaluator(config.family, corpus)


def numeric_evaluator(family: str, corpus: NumericCorpus):
    """The evaluator of a theory family."""
    return {"linreg": LinRegEvaluator, "categorical": CategoricalEvaluator}.get(family, NumericEvaluator)(corpus)
