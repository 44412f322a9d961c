"""What the in-loop defences judge candidate items with: calibrated detectors and rewards.

A defence knows only what a data team would know: which text is verified human (the vault
snapshot if the run has one, else generation 0's training set), which text is known to be
synthetic (generation 0's output, shared by every chain), held-out human text, and the run's
watermark key. Everything is fitted once per chain, with the chain's own random stream
(``LoopState.rng``), and kept in ``LoopState.cache``, so a resumed run judges exactly as an
uninterrupted one.

Detectors, for ``filter:DETECTOR:FPR`` (score higher = more likely synthetic; an item is flagged
when its score is above a threshold set on the held-out human text for false-positive rate FPR,
:class:`collapselab.detect.Calibrated`):

* ``watermark``: the KGW z-score under the run's key; nothing to learn.
* ``likelihood``: log-perplexity under a reference trigram (Kneser-Ney) fitted on verified human
  text, its direction learnt on held-out human text vs generation 0's output.
* ``classifier``: hashed word 1-3-grams and logistic regression, trained on verified human text vs
  generation 0's output.

Rewards, for ``curate:REWARD:KEEP`` (higher = preferred):

* ``reward``: :class:`PreferenceReward`, a Bradley-Terry reward model trained on preference pairs
  (a verified human item preferred over an item of generation 0's output), as RLHF reward models
  are trained, on the classifier's features.
* ``self``: the model's own likelihood (mean log-probability per token). The loop keeps outputs,
  not models, so generation g-1 is stood in for by a trigram (Kneser-Ney) fitted on its output,
  the candidates included: a model that prefers what it wrote itself.
* ``random``: a uniform random score from the generation's generator: the control that keeps the
  same share without looking.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from collapselab.corpus.sequences import TokenSequences
from collapselab.loop.policies import LoopState

DETECTORS = ("watermark", "likelihood", "classifier")
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


def _cached(state: LoopState, key: tuple, make):
    if key not in state.cache:
        state.cache[key] = make()
    return state.cache[key]


def verified_human(state: LoopState) -> TokenSequences:
    """The text a data team knows to be human: the vault snapshot, else generation 0's training set."""
    return state.human if state.vault is None else state.vault


def _vocab_size(state: LoopState) -> int:
    """Ids the reference models must cover: every id in the run's human text and generation 0's output."""
    parts = [state.human, state.pool, state.holdout, state.vault, state.outputs[0]]
    return 1 + max(int(p.tokens.max(initial=2)) for p in parts if p is not None and len(p))


def _reference(state: LoopState, data: TokenSequences):
    from collapselab.models.ngram import NGramModel

    return NGramModel(REFERENCE_ORDER, vocab_size=_cached(state, ("vocab_size",), lambda: _vocab_size(state))).fit(data)


def _detector(kind: str, state: LoopState):
    from collapselab.detect import ClassifierDetector, PerplexityDetector, WatermarkDetector

    synthetic = state.outputs[0]
    if kind == "watermark":
        return WatermarkDetector(state.watermark)
    if kind == "likelihood":
        return PerplexityDetector(_reference(state, verified_human(state))).fit(state.holdout, synthetic)
    return ClassifierDetector(word_orders=WORD_ORDERS, char_orders=None).fit(
        verified_human(state), synthetic, rng=state.rng("classifier", 0))


def calibrated_detector(kind: str, fpr: float, state: LoopState):
    """The ``kind`` detector with its threshold for ``fpr`` set on the held-out human text."""
    from collapselab.detect import Calibrated

    def make():
        detector = _cached(state, ("detector", kind), lambda: _detector(kind, state))
        return Calibrated(detector, fpr=fpr).fit(state.holdout, state.outputs[0])

    return _cached(state, ("calibrated", kind, fpr), make)


def reward_scores(kind: str, g: int, candidates: TokenSequences, state: LoopState, rng: np.random.Generator) -> np.ndarray:
    """Per candidate item of generation g's training set: how much the ``kind`` reward prefers it."""
    if kind == "random":
        return rng.random(len(candidates))
    if kind == "self":
        from collapselab.detect.likelihood import log_perplexity

        return -log_perplexity(_reference(state, state.outputs[g - 1]), candidates)
    model = _cached(state, ("reward",), lambda: PreferenceReward().fit(
        verified_human(state), state.outputs[0], rng=state.rng("reward", 0)))
    return model.score(candidates)
