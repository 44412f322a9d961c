"""Likelihood detectors: perplexity under a reference model, and a Binoculars-style ratio.

Both use word n-gram reference models (:class:`collapselab.models.ngram.NGramModel`) fitted on
human (vault) text: the models this machine runs. Per item, over its ``T`` scored tokens (the
item's tokens and its ``</s>``)::

    L_m(x) = -(1/T) sum_t log p_m(x_t | h_t)          (log-perplexity under model m)

PerplexityDetector
    ``raw = L_ref(x)``. Which way it points depends on the generator: text sampled from an n-gram
    model fitted on *the same kind* of text is usually **lower**-perplexity under a similar
    reference than human text is (the sampler stays inside seen n-grams; humans write rare
    continuations). So the detector carries a ``direction``: ``score = direction * raw``.
    ``direction="auto"`` (default) learns it in :meth:`fit` from labelled human and synthetic
    items (the sign that gives AUROC >= 0.5); a number fixes it. On the SOTU set-up
    (``docs/detect.md``) the learnt direction is -1: low perplexity = synthetic.

BinocularsDetector
    Hans et al. (2024) score ``B = log PPL_obs(x) / log X-PPL_{obs,perf}(x)``, where the
    cross-perplexity is ``(1/T) sum_t H(p_perf(.|h_t), p_obs(.|h_t))``: the observer's expected
    log-loss if the next token came from the performer. It normalises perplexity by how
    predictable each *context* is, so hard prompts do not look human.

    **What is computed here (an approximation, not the exact cross-perplexity).** The exact
    expectation needs both models' full next-token distributions (28k words) at every position;
    we replace it with a one-sample estimate at the observed token, taken under the performer:
    ``X(x) ~ L_perf(x)``, the performer's log-loss on the tokens actually seen, an estimate of the
    performer's entropy at those contexts when the text is performer-like. So::

        raw = L_obs(x) / L_perf(x)        (mode="ratio", the Binoculars form)
        raw = L_obs(x) - L_perf(x)        (mode="difference": mean per-token log-prob difference)

    With an observer of order 3 and a performer of order 2 (or two models fitted on disjoint
    human halves), the ratio measures how much the observer's longer contexts / other data buy on
    this text. As for perplexity, the sign is learnt in :meth:`fit` (``direction="auto"``) or
    fixed. Measured strength is in ``docs/detect.md``; it is weak at sentence level.
"""

from __future__ import annotations

import numpy as np

from collapselab.detect.base import as_sequences, mean_per_item, orientation


def log_perplexity(model, seqs) -> np.ndarray:
    """Per item: ``-mean log p`` over the tokens ``model`` scores (its tokens and ``</s>``)."""
    logp, item = model.token_log_probs(seqs)
    return -mean_per_item(logp, item, len(seqs))


class _Directed:
    """Shared: ``raw(texts)`` turned into ``score = direction * raw``, direction learnt or given."""

    direction: float | str
    vocab = None

    def _raw(self, seqs) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def raw_score(self, texts) -> np.ndarray:
        """The unoriented statistic (log-perplexity, or the Binoculars ratio) per item."""
        return self._raw(as_sequences(texts, self.vocab))

    def fit(self, human, synthetic, *, rng: np.random.Generator | None = None):
        """Learn the direction from labelled items (``direction="auto"``); returns ``self``."""
        if self.direction == "auto":
            self.direction_ = orientation(self.raw_score(human), self.raw_score(synthetic))
        else:
            self.direction_ = float(self.direction)
        return self

    def score(self, texts) -> np.ndarray:
        d = getattr(self, "direction_", None)
        if d is None:
            if self.direction == "auto":
                raise RuntimeError(f"{type(self).__name__}(direction='auto') is not fitted: call fit(human, synthetic)")
            d = float(self.direction)
        return d * self.raw_score(texts)


class PerplexityDetector(_Directed):
    """``score = direction * log-perplexity`` under a reference model fitted on human text.

    Parameters
    ----------
    reference: a fitted :class:`~collapselab.models.ngram.NGramModel` (human / vault text).
    direction: ``"auto"`` (learn in :meth:`fit`), ``+1`` (high perplexity = synthetic) or ``-1``.
    vocab: optional Vocabulary, to score a list of str.
    """

    def __init__(self, reference, *, direction: float | str = "auto", vocab=None) -> None:
        self.reference = reference
        self.direction = direction
        self.vocab = vocab

    def _raw(self, seqs) -> np.ndarray:
        return log_perplexity(self.reference, seqs)


class BinocularsDetector(_Directed):
    """Binoculars-style score from an observer and a performer model (see the module docstring).

    Parameters
    ----------
    observer, performer: fitted n-gram models over the same id space (e.g. order 3 and order 2).
    mode: ``"ratio"`` (``L_obs / L_perf``) or ``"difference"`` (``L_obs - L_perf``).
    direction: ``"auto"`` (learn in :meth:`fit`), ``+1`` or ``-1`` (Hans et al.: low = machine,
        i.e. ``-1``).
    vocab: optional Vocabulary, to score a list of str.
    """

    def __init__(self, observer, performer, *, mode: str = "ratio", direction: float | str = "auto", vocab=None) -> None:
        self.observer = observer
        self.performer = performer
        self.mode = mode
        self.direction = direction
        self.vocab = vocab

    def _raw(self, seqs) -> np.ndarray:
        if self.mode not in ("ratio", "difference"):
            raise ValueError(f"mode must be 'ratio' or 'difference', got {self.mode!r}")
        lo = log_perplexity(self.observer, seqs)
        lp = log_perplexity(self.performer, seqs)
        if self.mode == "difference":
            return lo - lp
        with np.errstate(invalid="ignore", divide="ignore"):
            return lo / lp
