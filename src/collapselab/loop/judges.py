"""What the in-loop defences judge candidate items with: calibrated detectors and rewards.

A defence knows only what a data team would know, and no judge ever sees an item it will later
judge, nor text a metric is measured on. Each judge learns from data of its own:

* **synthetic**: :func:`judge_synthetic`, a sample of generation 0's model drawn for the judges
  alone (``LoopState.judge_draw``: the engine draws it with its own stream, ``(seed, 'judges', 0)``,
  as many items as one generation's output, watermarked in the same share). It is never training
  data and never judged; generation 0's output itself, which generation 1's training set draws
  from, is not used by any judge.
* **human**: :func:`judge_human`, two splits from the end of the corpus' reserve pool: a *fitting*
  split (as many items as the human training set) and a *calibration* split (as many as the
  held-out set), at most half the pool between them. The web and ``fresh`` take the pool from its
  start; :func:`check_reserve` makes a policy whose consumption would reach the judges' splits a
  user error. No metric looks at the pool (``ppl_holdout`` is measured on ``LoopState.holdout``,
  which no judge uses), and the human training set, the vault and the pool's start, which
  policies put into training sets, are not used by any judge.

Everything is fitted once per chain, with the chain's own random stream (``LoopState.rng``), and
kept in ``LoopState.cache``, so a resumed run judges exactly as an uninterrupted one.

Detectors, for ``filter:DETECTOR:FPR`` (score higher = more likely synthetic; an item is flagged
when its score is above a threshold set on the calibration split for false-positive rate FPR,
:class:`collapselab.detect.Calibrated`):

* ``watermark``: the KGW z-score under the run's key (``watermark_key``); with a scheme
  (``watermark``: hf-kgw, synthid, gumbel, ...), :class:`SchemeDetector`: ``-log10`` of the scheme's
  p-value on the items' token ids (the seed's generation-0 model's tokenizer). Nothing to learn;
  the threshold is set on the calibration split like every detector's, so the filter's
  false-positive rate is measured on human text it never judges, not taken from the p-values.
* ``likelihood``: log-perplexity under a reference trigram (Kneser-Ney) fitted on the fitting
  split; its direction (one sign) learnt on the calibration split vs the judges' synthetic sample.
* ``classifier``: hashed word 1-3-grams and logistic regression, trained on the fitting split vs
  the judges' synthetic sample.
* ``fast-detectgpt``: :class:`collapselab.detect.FastDetectGPT` with the pretrained SmolLM2-135M
  (the ``smollm2`` extra), reading the items as text (:func:`collapselab.models.smollm2.to_text`);
  zero-shot: nothing is fitted, only the threshold is set on the calibration split.
* ``binoculars``: :class:`collapselab.detect.Binoculars` with SmolLM2 as observer and performer
  (log-perplexity over the model's own entropy; zero-shot as above).

Rewards, for ``curate:REWARD:KEEP`` (higher = preferred):

* ``reward``: :class:`PreferenceReward`, a Bradley-Terry reward model trained on preference pairs
  (an item of the fitting split preferred over one of the judges' synthetic sample), as RLHF
  reward models are trained, on the classifier's features.
* ``self``: the model's own likelihood (mean log-probability per token). The loop keeps outputs,
  not models, so generation g-1 is stood in for by a trigram (Kneser-Ney) fitted on its output,
  the candidates included: a model that prefers what it wrote itself. (Not a judge fitted on
  known data: it stands in for the model that wrote the candidates.)
* ``random``: a uniform random score from the generation's generator: the control that keeps the
  same share without looking.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from collapselab.corpus.sequences import TokenSequences
from collapselab.data import Data, n_items, take
from collapselab.errors import UserError
from collapselab.loop.types import LoopState, Policy

DETECTORS = ("watermark", "likelihood", "classifier", "fast-detectgpt", "binoculars")
LM_DETECTORS = ("fast-detectgpt", "binoculars")  # read the items as text with SmolLM2
REWARDS = ("reward", "self", "random")
REFERENCE_ORDER = 3  # order of the reference n-gram models
WORD_ORDERS = (1, 2, 3)  # hashed word n-gram features of the classifier and the reward model


class PreferenceReward:
    """A linear reward ``r(x) = w . phi(x)`` fitted to preferences by Bradley-Terry:
    ``P(a preferred over b) = sigmoid(r(a) - r(b))``.

    ``phi`` are the hashed, damped, normalised word n-gram features of
    :class:`~collapselab.detect.ClassifierDetector`. ``fit(preferred, rejected, rng=)`` pairs the
    items at random (as many pairs as the smaller side has items) and fits a logistic regression
    without intercept on the feature differences, each pair in both orders.
    """

    def __init__(self, *, n_features: int = 2**18, word_orders=WORD_ORDERS, C: float = 4.0, max_iter: int = 1000) -> None:
        self.n_features = n_features
        self.word_orders = word_orders
        self.C = C
        self.max_iter = max_iter

    def features(self, texts: TokenSequences) -> sp.csr_matrix:
        from collapselab.detect import ClassifierDetector

        return ClassifierDetector(n_features=self.n_features, word_orders=self.word_orders, char_orders=None).features(texts)

    def fit(self, preferred: TokenSequences, rejected: TokenSequences, *, rng: np.random.Generator) -> "PreferenceReward":
        from sklearn.linear_model import LogisticRegression

        m = min(len(preferred), len(rejected))
        a = rng.permutation(len(preferred))[:m]
        b = rng.permutation(len(rejected))[:m]
        diff = self.features(preferred.take(a)) - self.features(rejected.take(b))
        X = sp.vstack([diff, -diff], format="csr")
        y = np.r_[np.ones(m), np.zeros(m)]
        model = LogisticRegression(C=self.C, fit_intercept=False, solver="liblinear", max_iter=self.max_iter,
                                   random_state=int(rng.integers(2**31 - 1)))
        self.coef_ = model.fit(X, y).coef_.ravel()
        return self

    def score(self, texts: TokenSequences) -> np.ndarray:
        return np.asarray(self.features(texts) @ self.coef_, dtype=np.float64)


class SchemeDetector:
    """A watermark scheme as a detector of word-id items: ``score`` is ``-log10 p_value`` of the
    scheme's test on ``tokens(items)`` (higher = more likely watermarked; p-values below 1e-300
    count as 1e-300). Nothing to learn: the key decides."""

    def __init__(self, scheme, tokens) -> None:
        self.scheme, self.tokens = scheme, tokens

    def fit(self, human=None, synthetic=None, *, rng=None) -> "SchemeDetector":
        return self

    def scores(self, texts: TokenSequences):
        """The scheme's :class:`~collapselab.detect.schemes.SchemeScores` of the items."""
        return self.scheme.score(self.tokens(texts))

    def score(self, texts: TokenSequences) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0)
        return -np.log10(np.clip(self.scores(texts).p_value, 1e-300, 1.0))


def _cached(state: LoopState, key: tuple, make):
    if key not in state.cache:
        state.cache[key] = make()
    return state.cache[key]


def _reserve_sizes(state: LoopState) -> tuple[int, int]:
    """Items of the judges' (fitting, calibration) splits: as many as the human training set and
    the held-out set, scaled down together to at most half the reserve pool."""
    want_fit = n_items(state.human)
    want_cal = n_items(state.holdout) if state.holdout is not None else want_fit
    total = min(want_fit + want_cal, n_items(state.pool) // 2)
    n_cal = int(round(total * want_cal / max(want_fit + want_cal, 1)))
    return total - n_cal, n_cal


def check_reserve(policy: Policy, state: LoopState) -> None:
    """One UserError line if the pool items ``policy`` consumes (from the pool's start) would reach
    the judges' splits at its end, or if the pool leaves the judges nothing."""
    n_fit, n_cal = _reserve_sizes(state)
    n_pool = n_items(state.pool)
    used = policy.human_pool_needed(state.generations, n_items(state.outputs[0]))
    if n_fit < 2 or n_cal < 1 or used + n_fit + n_cal > n_pool:
        raise UserError(f"policy {policy.name!r}: the corpus' reserve pool has {n_pool} unseen human items; the policy takes "
                        f"{used} and its judges need {n_fit + n_cal} of their own (at least 3). Use a larger corpus, "
                        "fewer --train-items or fewer --generations.")


def judge_human(state: LoopState) -> tuple[Data, Data]:
    """The judges' own human text, ``(fitting, calibration)``: the end of the reserve pool."""
    def make():
        n_fit, n_cal = _reserve_sizes(state)
        end = n_items(state.pool)
        start = end - n_fit - n_cal
        return take(state.pool, np.arange(start, start + n_fit)), take(state.pool, np.arange(start + n_fit, end))

    return _cached(state, ("judge_human",), make)


def judge_synthetic(state: LoopState) -> Data:
    """The judges' own sample of generation 0's model (``LoopState.judge_draw``), drawn once per chain."""
    if state.judge_draw is None:
        raise ValueError("the judges need LoopState.judge_draw: a sample of generation 0's model of their own")
    return _cached(state, ("judge_synthetic",), state.judge_draw)


def _vocab_size(state: LoopState) -> int:
    """Ids the reference models must cover: every id in the run's human text and generation 0's output."""
    parts = [state.human, state.pool, state.holdout, state.vault, state.outputs[0], judge_synthetic(state)]
    return 1 + max(int(p.tokens.max(initial=2)) for p in parts if p is not None and len(p))


def _reference(state: LoopState, data: TokenSequences):
    from collapselab.models.ngram import NGramModel

    return NGramModel(REFERENCE_ORDER, vocab_size=_cached(state, ("vocab_size",), lambda: _vocab_size(state))).fit(data)


def _detector(kind: str, state: LoopState):
    from collapselab.detect import ClassifierDetector, PerplexityDetector, WatermarkDetector

    if kind == "watermark":
        return state.scheme if state.scheme is not None else WatermarkDetector(state.watermark)
    if kind in LM_DETECTORS:
        from collapselab.detect import Binoculars, FastDetectGPT

        if state.vocab is None:
            raise UserError(f"filter:{kind} reads the items as text: it needs a text family (ngram, gpt, smollm2).")
        if kind == "fast-detectgpt":
            return FastDetectGPT("smollm2", vocab=state.vocab)
        return Binoculars("smollm2", "smollm2", vocab=state.vocab)
    fit, calibration = judge_human(state)
    if kind == "likelihood":
        return PerplexityDetector(_reference(state, fit)).fit(calibration, judge_synthetic(state))
    return ClassifierDetector(word_orders=WORD_ORDERS, char_orders=None).fit(
        fit, judge_synthetic(state), rng=state.rng("classifier", 0))


def calibrated_detector(kind: str, fpr: float, state: LoopState):
    """The ``kind`` detector with its threshold for ``fpr`` set on the judges' calibration split."""
    from collapselab.detect import Calibrated

    def make():
        detector = _cached(state, ("detector", kind), lambda: _detector(kind, state))
        return Calibrated(detector, fpr=fpr).fit(judge_human(state)[1])

    return _cached(state, ("calibrated", kind, fpr), make)


def reward_scores(kind: str, g: int, candidates: TokenSequences, state: LoopState, rng: np.random.Generator) -> np.ndarray:
    """Per candidate item of generation g's training set: how much the ``kind`` reward prefers it."""
    if kind == "random":
        return rng.random(len(candidates))
    if kind == "self":
        from collapselab.detect.likelihood import log_perplexity

        return -log_perplexity(_reference(state, state.outputs[g - 1]), candidates)
    model = _cached(state, ("reward",), lambda: PreferenceReward().fit(
        judge_human(state)[0], judge_synthetic(state), rng=state.rng("reward", 0)))
    return model.score(candidates)
