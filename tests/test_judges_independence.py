"""The in-loop judges never see what they judge (collapselab.loop.judges).

Every item carries its identity in its first token, unique over the whole test (``[uid, words...]``,
``uid = 100 + 10000 * source + i``); human items draw their words from one distribution and
synthetic ones from another, so the judges have something real to learn. The judges' fitting and
calibration calls and the items they later judge (and the items that reach training) are recorded
by wrapping the real detector and reward classes, and the sets must not meet. With the judges fitted
on generation 0's output (which generation 1's web draws from) or calibrated on the held-out set
(which ppl_holdout is measured on), these tests fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect import Calibrated, ClassifierDetector
from collapselab.detect.likelihood import PerplexityDetector
from collapselab.errors import UserError
from collapselab.loop.judges import PreferenceReward, judge_human
from collapselab.loop.policies import LoopState, parse_policy
HUMAN, POOL, HOLD, VAULT, DRAW, GEN = 3, 4, 5, 6, 7, 10  # sources; generation g's output is source GEN + g
N_HUMAN, N_POOL, N_HOLD, N_OUT, G = 120, 1200, 80, 100, 4
POLICIES = [
    "web:0.1-0.9+filter:classifier:0.01",
    "web:0.1-0.9+filter:likelihood:0.01",
    "web:0.1-0.9+filter:watermark:0.01",
    "web:0.1-0.9+curate:reward:0.5",
    "web:0.1-0.9:train+filter:classifier:0.01+curate:reward:0.5",  # human training items are judged
    "web:0.1-0.9+anchor:0.1+filter:likelihood:0.01",  # anchored human items are judged
    "accumulate+filter:classifier:0.01+curate:reward:0.5",  # generation 0's output and the human set are judged
    "fresh:0.3+filter:classifier:0.05",
    "web:0.1-0.9+filter:watermark:0.01+filter:classifier:0.01+accumulate+anchor:0.1",
    "web:0.1-0.9+filter:classifier:0.01+accumulate-subsample",
]


def tagged(source: int, n: int) -> TokenSequences:
    """``n`` items of ``source``: a unique id, then 6 words, human (uniform) or synthetic (skewed)."""
    rng = np.random.default_rng(source)
    p = np.ones(30) if source in (HUMAN, POOL, HOLD, VAULT) else np.arange(30, 0, -1.0) ** 2
    words = 10 + rng.choice(30, size=(n, 6), p=p / p.sum())
    return TokenSequences.from_lists([[100 + 10000 * source + i, *w] for i, w in enumerate(words.tolist())])


def ids(texts: TokenSequences) -> set[tuple[int, int]]:
    """(source, index) of every item."""
    uid = texts.tokens[texts.offsets[:-1]] - 100
    return set(zip((uid // 10000).tolist(), (uid % 10000).tolist()))


@pytest.fixture
def record(monkeypatch):
    """Wrap the judges' fit, calibrate and judge calls; returns the dict of recorded item ids."""
    seen = {"fit": set(), "calibration": set(), "judged": set()}

    def wrap(cls, method, kind, args):
        original = getattr(cls, method)

        def recorder(self, *a, **kw):
            for i in args:
                if i < len(a) and a[i] is not None:
                    seen[kind] |= ids(a[i])
            return original(self, *a, **kw)

        monkeypatch.setattr(cls, method, recorder)

    wrap(ClassifierDetector, "fit", "fit", (0, 1))
    wrap(PreferenceReward, "fit", "fit", (0, 1))
    wrap(PerplexityDetector, "fit", "fit", (0, 1))  # the likelihood direction
    wrap(Calibrated, "fit", "calibration", (0, 1))
    wrap(Calibrated, "flag", "judged", (0,))
    wrap(PreferenceReward, "score", "judged", (0,))
    from collapselab.models.ngram import NGramModel

    wrap(NGramModel, "fit", "fit", (0,))  # the likelihood detector's reference model
    return seen


def drive(spec: str, vault=None) -> list:
    """Run ``spec`` for G generations as the engine does; returns its training sets."""
    from collapselab.provenance.watermark import Watermark

    state = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, N_POOL), holdout=tagged(HOLD, N_HOLD), vault=vault,
                      watermark=Watermark(bytes([3]) * 32), generations=G, seed=0, label=spec,
                      judge_draw=lambda: tagged(DRAW, N_OUT))
    state.outputs = [tagged(GEN, N_OUT)]
    policy, sets = parse_policy(spec), []
    for g in range(1, G + 1):
        sets.append(policy.training_set(g, state, np.random.default_rng([0, g])))
        state.outputs.append(tagged(GEN + g, N_OUT))
    return sets


@pytest.mark.parametrize("spec", POLICIES)
def test_no_item_a_judge_learnt_from_is_judged_or_trained_on(record, spec):
    sets = drive(spec)
    trained = set().union(*(ids(ts.data) for ts in sets))
    learnt = record["fit"] | record["calibration"]
    assert record["fit"] | record["calibration"] and record["judged"]  # the judges were fitted and did judge
    assert bool(record["calibration"]) == ("filter:" in spec)  # every filter's threshold is calibrated
    assert not learnt & record["judged"]
    assert not learnt & trained
    assert not {t for t, _ in learnt} & {HOLD, VAULT, HUMAN, GEN}  # nor the held-out set, the human set, generation 0's output
    if "classifier" in spec or "reward" in spec:
        assert {t for t, _ in record["fit"]} == {POOL, DRAW}  # the judges' own human split and their own draw


def test_judged_items_include_generation_0s_output_and_the_human_set(record):
    """What makes the test above bite: generation 0's output and the human training set are judged."""
    drive("accumulate+filter:classifier:0.01")
    assert {t for t, _ in record["judged"]} >= {GEN, HUMAN}
    assert not record["fit"] & record["judged"]


def test_with_a_vault_the_anchored_vault_items_are_judged_but_never_learnt(record):
    drive("web:0.1-0.9+anchor:0.2+filter:classifier:0.01", vault=tagged(VAULT, 300))
    assert VAULT in {t for t, _ in record["judged"]}
    assert VAULT not in {t for t, _ in record["fit"] | record["calibration"]}


def test_judges_splits_are_the_pool_end_beyond_what_the_web_takes():
    state = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, N_POOL), holdout=tagged(HOLD, N_HOLD))
    fit, calibration = judge_human(state)
    assert (len(fit), len(calibration)) == (N_HUMAN, N_HOLD)  # as large as the human set and the held-out set
    assert sorted(i for _, i in ids(fit) | ids(calibration)) == list(range(N_POOL - N_HUMAN - N_HOLD, N_POOL))
    web = parse_policy("web:0.1-0.9").human_pool_needed(G, N_OUT)
    assert web <= N_POOL - N_HUMAN - N_HOLD  # the web's items come from the pool's start: never these


def test_a_pool_too_small_for_the_web_and_the_judges_is_one_user_error():
    small = 200  # the web takes 200 over 4 generations of 100 items; the judges would need 100
    state = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, small), holdout=tagged(HOLD, N_HOLD),
                      generations=G, judge_draw=lambda: tagged(DRAW, N_OUT))
    state.outputs = [tagged(GEN, N_OUT)]
    with pytest.raises(UserError, match="reserve pool has 200 unseen human items; the policy takes 200 and its judges need 100") as e:
        parse_policy("web:0.1-0.9+filter:classifier").training_set(1, state, np.random.default_rng(0))
    assert "\n" not in str(e.value)
    parse_policy("web:0.1-0.9+curate:random:0.5").training_set(1, state, np.random.default_rng(0))  # no judge, no need


def test_calibration_text_is_not_the_held_out_text_of_a_real_run(shared_text_folder, tmp_path):
    """Through the engine's state on a real corpus: the calibration split shares no sentence with
    the held-out set that ppl_holdout is measured on, the fitting split none with the human training
    set, and the judges' draw is generation 0's model sampled again, not its output."""
    from collapselab.config import make_config
    from collapselab.corpus import load_corpus
    from collapselab.loop.engine import Runner
    from collapselab.loop.judges import judge_synthetic
    from collapselab.loop.seeds import SeedData
    from collapselab.loop.streams import generation_rng
    from collapselab.runfolder import RunFolder

    cfg = make_config({"corpus": str(shared_text_folder), "train_items": 120, "samples": 60, "generations": 1,
                       "policies": ["web:0.1-0.9+filter:classifier"]})
    corpus = load_corpus(cfg)
    job = Runner(cfg, SeedData(cfg, corpus, None), RunFolder(tmp_path / "run"))
    rng = generation_rng(0, "gen0", 0)
    job.lineage.gen0[0] = job.lineage.fit(corpus.train, rng, 0)
    out0 = job.marking.sample(job.lineage.gen0[0], 60, rng)  # generation 0's output, as run_loop draws it
    state = job.loop_state(0, cfg.policies[0], [out0])
    fit, calibration = judge_human(state)
    as_text = lambda seqs: {tuple(x) for x in seqs.to_lists()}  # noqa: E731
    assert len(calibration) >= 20 and not as_text(calibration) & as_text(corpus.holdout)
    assert len(fit) >= 60 and not as_text(fit) & as_text(corpus.train)
    draw = judge_synthetic(state)
    assert len(draw) == len(out0) and draw.to_lists() != out0.to_lists()
    assert draw.to_lists() == job.judge_draw(0).to_lists()  # one draw per seed: a resumed run judges alike
