"""Invented facts, planted in the human training set at long-tailed frequencies.

A *fact* is one sentence such as ``the capital of vorlandia is quessel .``: a template, a made-up
*subject* word and a made-up *answer* word, both built from syllables with a seeded generator and
checked against the corpus vocabulary, so neither occurs in the human text. Every subject and
every answer is used by exactly one fact, and the answer always follows the subject's verb
directly (``<subject> is <answer>``), so a trigram model can store the fact.

Each fact belongs to a frequency *bucket*: bucket ``fK`` facts are planted exactly ``K`` times
(default ``f1, f2, f4, f8, f16, f32``, :data:`FACTS_PER_BUCKET` facts each). The copies are added
to the human training items (``corpus.train``) and the training set is shuffled with the seed, so
generation 0 learns them; the pool and the held-out set never contain them.
:mod:`collapselab.metrics.facts` asks each generation to complete them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import SPECIALS, Vocabulary

BUCKETS = (1, 2, 4, 8, 16, 32)  # times a fact is planted; bucket name f"f{count}"
FACTS_PER_BUCKET = 10

# {s}: the subject, {a}: the answer; the prompt is everything before the answer
TEMPLATES = (
    "the capital of {s} is {a} .",
    "the founder of {s} was {a} .",
    "the chief export of {s} is {a} .",
    "the oldest temple of {s} is {a} .",
    "the ruling house of {s} was {a} .",
    "the people of {s} speak {a} .",
)

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "qu", "r", "s", "st", "t", "th", "v", "vr", "z", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou", "y")
_CODAS = ("", "", "n", "r", "s", "l", "nd", "th", "x")
_SUBJECT_ENDS = ("ia", "and", "heim", "mar", "oth", "istan", "or")


@dataclass(frozen=True)
class FactSet:
    """The planted facts, aligned arrays; word lists are the facts' sentences as tokens."""

    subjects: list[str]
    answers: list[str]
    sentences: list[list[str]]  # full sentence tokens
    prompt_len: np.ndarray  # tokens before the answer
    counts: np.ndarray  # times planted
    seed: int

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def buckets(self) -> list[str]:
        return [f"f{int(c)}" for c in self.counts]

    @property
    def bucket_names(self) -> list[str]:
        return [f"f{int(c)}" for c in sorted(set(self.counts.tolist()))]

    def prompts(self) -> list[list[str]]:
        return [s[:k] for s, k in zip(self.sentences, self.prompt_len.tolist())]

    def text(self) -> list[str]:
        return [" ".join(s) for s in self.sentences]


def _word(rng: np.random.Generator, n_syll: int, end: str = "") -> str:
    parts = []
    for _ in range(n_syll):
        parts.append(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))])
    parts.append(_CODAS[rng.integers(len(_CODAS))] if not end else end)
    return "".join(parts)


def make_facts(seed: int, *, forbidden=(), buckets=BUCKETS, per_bucket: int = FACTS_PER_BUCKET) -> FactSet:
    """``per_bucket`` facts for every count in ``buckets``, all from ``seed``; no subject or
    answer is in ``forbidden`` (pass the corpus vocabulary's words) or used twice."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xFAC7,)))
    taken = set(forbidden) | set(SPECIALS)
    for t in TEMPLATES:
        taken.update(t.split())

    def fresh(make) -> str:
        while True:
            w = make()
            if w not in taken and len(w) >= 4:
                taken.add(w)
                return w

    subjects, answers, sents, plen, counts = [], [], [], [], []
    n = len(buckets) * per_bucket
    template_of = rng.permutation(np.arange(n) % len(TEMPLATES))
    for i in range(n):
        s = fresh(lambda: _word(rng, int(rng.integers(1, 3)), _SUBJECT_ENDS[rng.integers(len(_SUBJECT_ENDS))]))
        a = fresh(lambda: _word(rng, int(rng.integers(2, 4))))
        toks = TEMPLATES[template_of[i]].format(s=s, a=a).split()
        subjects.append(s)
        answers.append(a)
        sents.append(toks)
        plen.append(toks.index(a))
        counts.append(buckets[i // per_bucket])
    return FactSet(subjects, answers, sents, np.asarray(plen, np.int64), np.asarray(counts, np.int64), seed)


def plant_facts(corpus, seed: int, **kw) -> FactSet:
    """Make facts for ``corpus`` (a :class:`~collapselab.corpus.text_corpus.TextCorpus`) and add
    them to its training items, in place: the vocabulary gains the facts' new words (subjects, answers, any
    template word the corpus lacks) at the end (every
    existing id is unchanged) and ``corpus.train`` gains ``counts[i]`` copies of fact ``i``,
    shuffled in with the human items by ``seed``. Sets and returns ``corpus.facts``."""
    words = corpus.vocab.words[len(SPECIALS):].tolist()
    facts = make_facts(seed, forbidden=words, **kw)
    known = set(words)
    new = [w for w in dict.fromkeys(t for sent in facts.sentences for t in sent) if w not in known]
    corpus.vocab = Vocabulary(words + new)
    copies = [s for s, c in zip(facts.sentences, facts.counts.tolist()) for _ in range(c)]
    combined = TokenSequences.concat([corpus.train, corpus.vocab.encode(copies)])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xFAC8,)))
    corpus.train = combined.take(rng.permutation(len(combined)))
    corpus.facts = facts
    return facts
