"""The fact probe: invented facts planted at long-tailed frequencies, recalled (or not) by a model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import collapselab as cl
from collapselab.corpus import build_text_corpus
from collapselab.corpus.facts import BUCKETS, FACTS_PER_BUCKET, make_facts, plant_facts
from collapselab.corpus.sequences import TokenSequences
from collapselab.metrics.facts import FactProbe
from collapselab.models.ngram import NGramModel
from conftest import make_documents


def corpus(n_docs: int = 30, seed: int = 0):
    docs = [(f"d{i}", t) for i, t in enumerate(make_documents(n_docs, 20, seed=seed))]
    return build_text_corpus(docs, name="tiny", n_train=None, split_seed=0)


@pytest.fixture(scope="module")
def planted():
    c = corpus()
    before = {"train": c.train.to_lists(), "vocab": c.vocab.words.tolist(), "pool": c.pool.to_lists(),
              "holdout": c.holdout.to_lists()}
    facts = plant_facts(c, seed=5)
    return c, facts, before


def test_facts_are_deterministic_and_fictional(planted):
    c, facts, before = planted
    again = make_facts(5, forbidden=before["vocab"])
    assert again.text() == facts.text() and (again.counts == facts.counts).all()
    assert make_facts(6, forbidden=before["vocab"]).text() != facts.text()
    words = set(before["vocab"])
    assert not (set(facts.subjects) | set(facts.answers)) & words  # none occurs in the corpus
    assert len(set(facts.subjects)) == len(set(facts.answers)) == len(facts) == len(BUCKETS) * FACTS_PER_BUCKET
    for s, k, a in zip(facts.sentences, facts.prompt_len.tolist(), facts.answers):
        assert s[k] == a and s[k - 2] in facts.subjects  # "<subject> is <answer>"


def test_planted_counts_are_exact_and_nothing_else_changes(planted):
    c, facts, before = planted
    # existing ids unchanged; the pool and held-out items untouched
    assert c.vocab.words[: len(before["vocab"])].tolist() == before["vocab"]
    assert c.pool.to_lists() == before["pool"] and c.holdout.to_lists() == before["holdout"]
    text = Counter(c.vocab.decode(c.train))
    for sent, n in zip(facts.text(), facts.counts.tolist()):
        assert text[sent] == n
    assert len(c.train) == len(before["train"]) + int(facts.counts.sum())
    human = Counter(map(tuple, c.train.to_lists()))
    for item, n in Counter(map(tuple, before["train"])).items():
        assert human[item] >= n
    per_bucket = Counter(b for b in facts.buckets)
    assert per_bucket == {f"f{k}": FACTS_PER_BUCKET for k in BUCKETS}
    # answers appear only in their planted sentences
    answer_ids = set(c.vocab.encode([facts.answers]).tokens.tolist())
    n_answer_tokens = int(np.isin(c.train.tokens, list(answer_ids)).sum())
    assert n_answer_tokens == int(facts.counts.sum())


def test_common_facts_are_recalled_and_unplanted_ones_are_not(planted):
    c, facts, before = planted
    model = NGramModel(order=3, vocab_size=len(c.vocab)).fit(c.train)
    greedy = FactProbe(facts, c.vocab, greedy=True).evaluate(model)
    assert greedy["fact_recall_f32"] == 1.0 and greedy["fact_recall_f16"] == 1.0
    sampled = FactProbe(facts, c.vocab).evaluate(model)
    assert sampled["fact_recall_f32"] > 0.9
    assert sampled["fact_recall_f1"] < sampled["fact_recall_f32"]
    # a model that never saw the facts (same vocabulary, human items only)
    clean = TokenSequences.from_lists(before["train"])
    blind = NGramModel(order=3, vocab_size=len(c.vocab)).fit(clean)
    for probe in (FactProbe(facts, c.vocab, greedy=True), FactProbe(facts, c.vocab)):
        row = probe.evaluate(blind)
        assert all(row[f"fact_recall_f{k}"] == 0.0 for k in BUCKETS)


def test_complete_continues_the_prompt(planted):
    c, facts, _ = planted
    model = NGramModel(order=3, vocab_size=len(c.vocab)).fit(c.train)
    prompts = c.vocab.encode(facts.prompts())
    out = model.complete(prompts, 2, rng=np.random.default_rng(0), top_k=1)
    assert len(out) == len(facts) and (out.lengths <= 2).all()
    common = np.flatnonzero(facts.counts == max(BUCKETS))
    for i in common:
        assert c.vocab.decode(out.take([i]))[0] == f"{facts.answers[i]} ."
    assert model.top_k == 0  # the override is for the call only


def test_probe_columns_in_run_experiment(tmp_path):
    from conftest import write_text_folder

    folder = write_text_folder(tmp_path / "corpus", n_docs=20, sentences_per_doc=20)
    base = {"corpus": str(folder), "train_items": 200, "generations": 2, "policies": ["replace", "accumulate"]}
    on = cl.run_experiment({**base, "facts": True}, out=tmp_path / "on").metrics
    off = cl.run_experiment(base, out=tmp_path / "off").metrics
    cols = [f"{m}_f{k}" for k in BUCKETS for m in ("fact_recall", "hallucination_rate")]
    assert set(cols) <= set(on.columns)
    assert on[cols].notna().all().all() and ((on[cols] >= 0) & (on[cols] <= 1)).all().all()
    assert not any(c.startswith(("fact_", "hallucination_")) for c in off.columns)
    g0 = on[on["generation"] == 0].iloc[0]
    assert g0["fact_recall_f32"] > 0.8


def test_facts_need_text():
    from collapselab.errors import UserError
    from collapselab.config import make_config

    with pytest.raises(UserError, match="facts"):
        make_config({"family": "gaussian", "facts": True})
