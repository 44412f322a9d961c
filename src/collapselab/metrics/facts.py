"""The fact probe: does a generation still know the facts planted in the human data?

For every planted fact (:mod:`collapselab.corpus.facts`) the model is given the fact's prompt
(``the capital of vorlandia is``) and continues it by a few tokens through
:meth:`~collapselab.models.ngram.NGramModel.complete`, all facts and tries in one vectorised call.
Only the *first* generated token is judged:

* **recall**: it is the fact's answer;
* **hallucination** (wrong answer): it is a *content* token that is not the answer, i.e. neither
  ``</s>``/``<s>``/``<unk>``, nor a punctuation mark, nor one of the ``n_function`` most frequent
  words of the human training set (the vocabulary is ordered by frequency, so these are ids
  ``3 .. 3 + n_function - 1``: ``the``, ``of``, ``to``, ``and``, ...). Another fact's answer counts
  as a hallucination;
* anything else (a function word, punctuation, end of sentence) is *no answer*, neither.

By default the model completes with its own sampling knobs (temperature, top-k, top-p), ``tries``
times per fact, so recall is the probability that the model, asked, says the right thing; with
``greedy=True`` it completes once per fact with ``top_k=1`` (keep the heaviest candidate at every
back-off level). The probe draws from its own generator (``seed``), the same numbers every
generation, so it never disturbs the loop's random streams.

Rows get ``fact_recall_<bucket>`` and ``hallucination_rate_<bucket>`` per frequency bucket
(``f1``, ``f2``, ... ``f32``: facts planted that many times).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collapselab.corpus.facts import FactSet
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import SPECIALS, Vocabulary
from collapselab.corpus.tokens import EOS

PROBE_TRIES = 20
PROBE_TOKENS = 3
N_FUNCTION = 50
PROBE_SEED = 20240724


@dataclass
class FactProbe:
    facts: FactSet
    vocab: Vocabulary
    tries: int = PROBE_TRIES
    n_new: int = PROBE_TOKENS
    greedy: bool = False
    n_function: int = N_FUNCTION
    seed: int = PROBE_SEED
    prompts_: TokenSequences = field(init=False, repr=False)
    answer_: np.ndarray = field(init=False, repr=False)
    bucket_: np.ndarray = field(init=False, repr=False)
    no_answer_: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.prompts_ = self.vocab.encode(self.facts.prompts())
        self.answer_ = self.vocab.encode([[a] for a in self.facts.answers]).tokens.astype(np.int64)
        names = self.facts.bucket_names
        self.bucket_ = np.asarray([names.index(b) for b in self.facts.buckets], dtype=np.int64)
        words = self.vocab.words
        no_answer = np.zeros(len(words), dtype=bool)
        no_answer[: len(SPECIALS) + self.n_function] = True
        no_answer |= np.array([not any(ch.isalnum() for ch in str(w)) for w in words], dtype=bool)
        no_answer[self.answer_] = False  # never: an answer is a planted, rare word
        self.no_answer_ = no_answer

    def complete(self, model, rng: np.random.Generator | None = None) -> tuple[np.ndarray, TokenSequences]:
        """Which fact each row is, and the model's completions (``tries`` rows per fact, or one if greedy)."""
        k = 1 if self.greedy else self.tries
        fact = np.repeat(np.arange(len(self.facts)), k)
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        out = model.complete(self.prompts_.take(fact), self.n_new, rng=rng, top_k=1 if self.greedy else None)
        return fact, out

    def judge(self, fact: np.ndarray, out: TokenSequences) -> tuple[np.ndarray, np.ndarray]:
        """Per row: answered right, answered wrong (hallucination)."""
        first = np.full(len(out), EOS, dtype=np.int64)
        has = out.lengths > 0
        first[has] = out.tokens[out.offsets[:-1][has]]
        first = np.minimum(first, len(self.no_answer_) - 1)
        right = first == self.answer_[fact]
        wrong = ~right & ~self.no_answer_[first]
        return right, wrong

    def evaluate(self, model) -> dict[str, float]:
        fact, out = self.complete(model)
        right, wrong = self.judge(fact, out)
        b = self.bucket_[fact]
        n_b = np.bincount(b, minlength=len(self.facts.bucket_names))
        rec = np.bincount(b, weights=right, minlength=len(n_b)) / np.maximum(n_b, 1)
        hal = np.bincount(b, weights=wrong, minlength=len(n_b)) / np.maximum(n_b, 1)
        row = {}
        for i, name in enumerate(self.facts.bucket_names):
            row[f"fact_recall_{name}"] = float(rec[i])
            row[f"hallucination_rate_{name}"] = float(hal[i])
        return row
