"""``collapselab audit``: self-BLEU against NLTK, Holm, the audit where the truth is known (it detects
generation 1 vs 0 under ``replace``; it stays quiet on two human samples of one corpus and on two
samples of one generation-0 model, within a bound from the number of repetitions), and the CLI:
table, strict ``--json``, one-line errors. Everything is seeded."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import make_sentences, write_text_file
from test_run_cli import one_error_line, strict

from collapselab.corpus.sequences import TokenSequences
from collapselab.metrics.selfbleu import SelfBLEU, self_bleu
from collapselab.report.audit import DIRECTIONS, VERDICTS, audit, holm

FAST = dict(permutations=199)  # the smallest p is 1/200 < 0.05/8, Holm's strictest step
REPS = 40
ALPHA = 0.05
# a false-alarm rate is at most alpha; with REPS seeded repetitions the observed rate stays within
# alpha + 3 standard errors of a binomial proportion (a 3-sigma band: fails about 1 time in 700 if wrong)
FALSE_ALARMS_MAX = math.floor(REPS * (ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)))


# ------------------------------------------------------------------------------------ self-BLEU
def test_self_bleu_matches_nltk():
    """With no n-gram repeated inside a sentence and every length present twice, our definition
    is NLTK's sentence_bleu (smoothing method1) averaged over the items."""
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = np.random.default_rng(1)
    items = [rng.choice(np.arange(3, 30), 4 + i % 5, replace=False).tolist() for i in range(40)]
    smooth = nltk_bleu.SmoothingFunction().method1
    expected = np.mean([nltk_bleu.sentence_bleu([o for j, o in enumerate(items) if j != i], h, smoothing_function=smooth)
                        for i, h in enumerate(items)])
    assert self_bleu(TokenSequences.from_lists(items), 30) == pytest.approx(expected, rel=1e-12)


def test_self_bleu_of_subsets_and_copies():
    rng = np.random.default_rng(2)
    items = [rng.integers(3, 12, rng.integers(3, 9)).tolist() for _ in range(30)]
    seqs = TokenSequences.from_lists(items)
    scorer = SelfBLEU(seqs, 12)
    subset = np.zeros(30)
    subset[[1, 4, 5, 9, 20, 22]] = 1
    alone = self_bleu(seqs.take(np.flatnonzero(subset)), 12)
    assert scorer.score(subset)[0] == pytest.approx(alone, rel=1e-12)
    # an item with no k-gram found elsewhere: 0.1 matches at each order (smoothing 1)
    lonely = np.exp(np.mean(np.log([0.1 / 4, 0.1 / 3, 0.1 / 2, 0.1 / 1])))
    same = TokenSequences.from_lists([[5, 6, 7, 8]] * 3 + [[9, 10, 11, 3]])
    assert self_bleu(same, 12) == pytest.approx((3 * 1.0 + lonely) / 4)
    # a copy weighs its item twice in the mean but is not "another" item to match
    apart = SelfBLEU(TokenSequences.from_lists([[5, 6, 7, 8], [9, 10, 11, 3]]), 12)
    assert apart.score(np.array([[2, 1]]))[0] == pytest.approx(lonely)


def test_holm():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------ truth known
@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    """A tiny self-consuming loop: generation 0 learns 1000 human sentences, generation 1 (replace)
    learns only generation 0's 1000 outputs."""
    import collapselab as cl

    folder = tmp_path_factory.mktemp("audit")
    corpus = write_text_file(folder / "corpus.txt", 2000)
    cl.run_experiment({"corpus": str(corpus), "generations": 1, "policies": ["replace"], "train_items": 1000,
                       "holdout_items": 200}, out=folder / "run", jobs=1)
    return folder / "run" / "samples" / "replace" / "seed0"


def test_detects_generation_1_against_generation_0_under_replace(loop_run):
    r = audit(loop_run / "gen01.parquet", loop_run / "gen00.parquet", seed=0, **FAST)
    assert 490 <= r.n <= r.n_fit  # not all of gen 1: at least half of gen 0 fits the judge
    assert r.verdict in ("early signs", "collapse"), r.reason
    d2 = next(m for m in r.measures if m.name == "distinct_2")
    assert d2.collapse_like and d2.samples < d2.reference and d2.ratio_ci[1] < 1 and d2.power > 0.5


def _null_summary(results) -> tuple[int, int, float, dict]:
    alarms = sum(r.verdict != "no evidence" for r in results)
    any_sig = sum(any(m.significant for m in r.measures) for r in results)
    power = float(np.mean([m.power for r in results for m in r.measures]))
    covered = {name: np.mean([m.ratio_ci[0] <= 1 <= m.ratio_ci[1] for r in results for m in r.measures if m.name == name])
               for name in ("distinct_2", "entropy", "self_bleu", "perplexity")}
    return alarms, any_sig, power, covered


def _assert_quiet(results) -> None:
    alarms, any_sig, power, covered = _null_summary(results)
    assert alarms <= FALSE_ALARMS_MAX, (alarms, [r.reason for r in results if r.verdict != "no evidence"])
    # every measure, drift ones too, is a valid test: a judge that had seen the reference sample, or
    # a reference sample that had shaped the rare words, would make this fire every time
    assert any_sig <= FALSE_ALARMS_MAX, any_sig
    assert power < 0.15, power  # no effect: the test rejects about alpha of the time
    for name, share in covered.items():  # 95% intervals contain the true ratio 1
        assert share >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS), (name, share)


def test_quiet_on_two_human_samples_of_one_corpus(tmp_path):
    results = []
    for rep in range(REPS):
        sents = make_sentences(900, seed=100 + rep)
        (tmp_path / "a.txt").write_text(" ".join(sents[:300]))
        (tmp_path / "b.txt").write_text(" ".join(sents[300:]))
        results.append(audit(tmp_path / "a.txt", tmp_path / "b.txt", seed=rep, **FAST))
    assert results[0].n == 300
    _assert_quiet(results)


def test_quiet_on_two_samples_of_one_generation_0_model(tmp_path):
    """Nothing changed: both files are independent draws of the same generation-0 model."""
    from collapselab.corpus.tokenize import Vocabulary, tokenize
    from collapselab.models.ngram import NGramModel

    items = [tokenize(s) for s in make_sentences(1000, seed=7)]
    vocab = Vocabulary(pd.Series([w for s in items for w in s]).value_counts().index)
    model = NGramModel(order=3, vocab_size=len(vocab)).fit(vocab.encode(items))
    results = []
    for rep in range(REPS):
        rng = np.random.default_rng(rep)
        for name, size in (("a", 300), ("b", 600)):
            pd.DataFrame({"text": vocab.decode(model.sample(size, rng=rng))}).to_parquet(tmp_path / f"{name}.parquet")
        results.append(audit(tmp_path / "a.parquet", tmp_path / "b.parquet", seed=rep, **FAST))
    _assert_quiet(results)


def test_seeded_and_reference_split_respected(tmp_path):
    a = write_text_file(tmp_path / "a.txt", 120, seed=1)
    b = write_text_file(tmp_path / "b.txt", 300, seed=2)
    seen = []
    one = audit(a, b, seed=3, progress=lambda done, total, what: seen.append((done, total)), **FAST)
    assert one.to_dict() == audit(a, b, seed=3, **FAST).to_dict()
    assert one.to_dict() != audit(a, b, seed=4, **FAST).to_dict()
    assert one.n == 120 and one.n + one.n_fit == 300  # the judge's sentences are all the others
    assert seen[-1] == (199, 199)
    assert [m.name for m in one.measures] == list(DIRECTIONS) and one.verdict in VERDICTS
    assert audit(a, b, seed=3, n=40, **FAST).n_fit == 260


# ------------------------------------------------------------------------------------ the CLI
def test_cli_table_and_strict_json(loop_run, run_main, tmp_path):
    args = ["audit", loop_run / "gen01.parquet", "--reference", loop_run / "gen00.parquet", "--permutations", "199"]
    status, out, err = run_main(args, tmp_path)
    assert status == 0, err
    assert "Verdict:" in out and all(name in out for name in DIRECTIONS)
    status, out, err = run_main([*args, "--json"], tmp_path)
    assert status == 0, err
    doc = strict(out)
    assert doc["verdict"] in VERDICTS and len(doc["measures"]) == len(DIRECTIONS)
    assert all(0 < m["p"] <= m["p_holm"] <= 1 for m in doc["measures"])
    assert doc["n"] >= 490 and doc["seed"] == 0


def test_cli_reads_jsonl_with_a_text_field(run_main, tmp_path):
    with open(tmp_path / "s.jsonl", "w") as f:
        for s in make_sentences(60, seed=3):
            f.write(json.dumps({"body": s}) + "\n")
    write_text_file(tmp_path / "ref.txt", 200, seed=4)
    status, out, err = run_main(["audit", "s.jsonl", "-r", "ref.txt", "--text-field", "body", "--json", "--n", "50",
                                 "--permutations", "99"], tmp_path)
    assert status == 0, err
    assert strict(out)["n"] == 50


@pytest.mark.parametrize("extra, needles", [
    (["missing.txt", "-r", "ref.txt"], ["SAMPLES", "missing.txt", "no such file"]),
    (["s.parquet", "-r", "ref.txt", "--text-field", "body"], ["s.parquet", "no column 'body'", "--text-field"]),
    (["few.txt", "-r", "ref.txt"], ["SAMPLES has 5 sentences", "n can be"]),
    (["s.parquet", "-r", "ref.txt", "--n", "500"], ["not 500", "--n"]),
    (["s.parquet", "-r", "ref.txt", "--alpha", "2"], ["--alpha 2"]),
    (["s.parquet", "-r", "ref.txt", "--permutations", "10"], ["at least 99"]),
])
def test_cli_bad_input_is_one_line(run_main, tmp_path, extra, needles):
    write_text_file(tmp_path / "ref.txt", 200, seed=4)
    write_text_file(tmp_path / "few.txt", 5, seed=5)
    pd.DataFrame({"text": make_sentences(60, seed=6)}).to_parquet(tmp_path / "s.parquet")
    status, out, err = run_main(["audit", *extra], tmp_path)
    one_error_line(status, err, *needles)
    assert out == ""
