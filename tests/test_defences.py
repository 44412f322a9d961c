"""Defences in the loop (collapselab.loop.defences, judges) and the mitigation-matrix preset.

The wrapper tests use tagged items (see test_policies) and stand-in judges put where a defence
looks for its fitted detector or reward (``LoopState.cache``), so every kept or dropped item is
known; the judge tests fit the real detectors on a tiny corpus; the run tests go through the
engine: the watermark share, exact resume, and ``collapselab run --preset defences``.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
import yaml

import collapselab as cl
from collapselab.config import make_config
from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError
from collapselab.loop.defences import Accumulated, Anchored, Curate, Filter
from collapselab.loop.judges import PreferenceReward, calibrated_detector, judge_human
from collapselab.loop.policies import Accumulate, LoopState, Replace, parse_policy
from collapselab.loop.web import Web
from collapselab.presets import COLUMNS, DEFENCES, mitigation_matrix
from conftest import assert_same_metrics, cli, fixed_key_file
from test_policies import GEN, HUMAN, N_HUMAN, POOL, check_origin, items_of, tagged

N, G = 100, 4
WEB = "web:0.1-0.9"


def state(generations: int = G, vault=None) -> LoopState:
    s = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, 1000), vault=vault, generations=generations)
    s.outputs = [tagged(GEN + g, N) for g in range(generations)]
    return s


class ByTag:
    """A stand-in judge: a score per item from its (tag, index)."""

    def __init__(self, fn):
        self.fn = fn

    def values(self, texts: TokenSequences) -> np.ndarray:
        first = texts.tokens[texts.offsets[:-1]]
        second = texts.tokens[texts.offsets[:-1] + 1]
        return np.asarray(self.fn(first, second), dtype=np.float64)

    def flag(self, texts):  # as Calibrated.flag
        return self.values(texts) > 0

    def score(self, texts):  # as PreferenceReward.score
        return self.values(texts)


# ------------------------------------------------------------------ wrappers, exactly
def test_filter_drops_exactly_what_the_detector_flags_and_reports_its_rates():
    s = state()
    # flags every even synthetic item and every tenth human pool item
    s.cache[("calibrated", "watermark", 0.01)] = ByTag(lambda tag, i: np.where(tag >= GEN, i % 2 == 0, i % 10 == 0))
    policy = Filter(Web(), "watermark", 0.01)
    for g in range(1, G + 1):
        before = items_of(Web().training_set(g, s, np.random.default_rng(g)))
        ts = policy.training_set(g, s, np.random.default_rng(g))
        check_origin(ts)
        flagged = [(t, i) for t, i in before if (i % 2 == 0 if t >= GEN else i % 10 == 0)]
        assert items_of(ts) == [x for x in before if x not in flagged]  # the rest, in order
        syn = [x for x in before if x[0] >= GEN]
        hum = [x for x in before if x[0] < GEN]
        assert ts.stats["detected_share"] == pytest.approx(len(flagged) / len(before))
        assert ts.stats["synthetic_flagged_share"] == pytest.approx(sum(i % 2 == 0 for _, i in syn) / len(syn))
        assert ts.stats["human_flagged_share"] == pytest.approx(sum(i % 10 == 0 for _, i in hum) / len(hum))
        assert ts.stats["train_items_used"] == len(before) - len(flagged)
        assert ts.stats["web_synthetic_share"] == pytest.approx(Web().share(g, G))  # the scrape's own column survives


def test_filter_that_leaves_nothing_is_a_user_error():
    s = state()
    s.cache[("calibrated", "classifier", 0.01)] = ByTag(lambda tag, i: np.ones(len(tag)))
    with pytest.raises(UserError, match="flagged all 100 candidates"):
        Filter(Replace(), "classifier", 0.01).training_set(1, s, np.random.default_rng(0))


@pytest.mark.parametrize("keep", [0.5, 0.25, 0.8])
def test_curate_keeps_the_top_share_by_reward_in_original_order(keep):
    s = state()
    reward = lambda tag, i: np.where(tag >= GEN, (i * 37) % 101, 200 + i)  # noqa: E731 humans first, then a shuffle of synthetic
    s.cache[("reward",)] = ByTag(reward)
    for g in range(1, G + 1):
        before = items_of(Web().training_set(g, s, np.random.default_rng(g)))
        ts = Curate(Web(), "reward", keep).training_set(g, s, np.random.default_rng(g))
        check_origin(ts)
        k = int(round(keep * len(before)))
        r = {x: float(reward(np.array([x[0]]), np.array([x[1]]))[0]) for x in before}
        best = set(sorted(before, key=lambda x: -r[x])[:k])
        assert items_of(ts) == [x for x in before if x in best]
        assert min(r[x] for x in best) >= max([r[x] for x in before if x not in best], default=-1)
        assert ts.stats["curated_synthetic_share"] == pytest.approx(np.mean([t >= GEN for t, _ in before]))


def test_curate_random_is_the_same_size_and_reproducible():
    s = state()
    a = Curate(Replace(), "random", 0.3).training_set(2, s, np.random.default_rng(7))
    b = Curate(Replace(), "random", 0.3).training_set(2, s, np.random.default_rng(7))
    c = Curate(Replace(), "random", 0.3).training_set(2, s, np.random.default_rng(8))
    assert len(a.origin) == 30 and a.data == b.data and a.data != c.data
    assert np.all(a.origin == 1)


@pytest.mark.parametrize("vault", [False, True])
def test_anchor_wrapper_replaces_a_share_with_fresh_human_items(vault):
    v = tagged(POOL + 1, 80) if vault else None
    s = state(vault=v)
    for g in range(1, G + 1):
        inner = items_of(Web().training_set(g, s, np.random.default_rng(g)))
        ts = Anchored(Web(), 0.2).training_set(g, s, np.random.default_rng(g))
        it = items_of(ts)
        human_tag, origin = (POOL + 1, -3) if vault else (HUMAN, -1)
        human = [x for x in it if x[0] == human_tag]
        assert len(it) == len(inner) and len(human) == 20 and len(set(human)) == 20
        assert np.count_nonzero(ts.origin == origin) == 20
        rest = [x for x in it if x[0] != human_tag]
        assert set(rest) <= set(inner) and len(set(rest)) == len(inner) - 20


def test_accumulate_wrapper_over_replace_is_the_accumulate_policy():
    s = state()
    for g in range(1, G + 1):
        a = Accumulated(Replace()).training_set(g, s, np.random.default_rng(g))
        b = Accumulate().training_set(g, s, np.random.default_rng(g))
        assert a.data == b.data and np.array_equal(a.origin, b.origin)


def test_accumulate_wrapper_rebuilds_each_generation_the_same_way():
    """Generation h's part is identical whenever it is built, in this chain or a resumed one."""
    s = state()
    policy = Accumulated(Anchored(Web(), 0.3))
    sets = [policy.training_set(g, s, np.random.default_rng(g)) for g in range(1, G + 1)]
    sizes = [len(ts.origin) for ts in sets]
    assert sizes == [N_HUMAN + g * N for g in range(1, G + 1)]
    assert [ts.stats["train_items_used"] for ts in sets] == sizes
    for g in range(1, G):  # each set starts with the previous one
        assert sets[g].data.take(np.arange(sizes[g - 1])) == sets[g - 1].data
    resumed = state()  # a fresh chain state: nothing cached
    last = policy.training_set(G, resumed, np.random.default_rng(99))
    assert last.data == sets[-1].data and np.array_equal(last.origin, sets[-1].origin)
    check_origin(TrainingSetView(last))


class TrainingSetView:
    """check_origin for sets holding human items with origin -1 and pool items with -2."""

    def __init__(self, ts):
        self.data, self.origin = ts.data, ts.origin


# ------------------------------------------------------------------ spec grammar and config checks
@pytest.mark.parametrize("spec,name", [
    ("web+filter:watermark", "web:0.1-0.9+filter:watermark:0.01"),
    ("web:0.2-0.8+filter:classifier:0.05+accumulate", "web:0.2-0.8+filter:classifier:0.05+accumulate"),
    ("replace+curate", "replace+curate:reward:0.5"),
    ("web+curate:self:0.3", "web:0.1-0.9+curate:self:0.3"),
    ("web+curate:0.3", "web:0.1-0.9+curate:reward:0.3"),
    ("fresh:0.2+anchor+filter:likelihood", "fresh:0.2+anchor:0.1+filter:likelihood:0.01"),
    (" web + anchor:0.2 ", "web:0.1-0.9+anchor:0.2"),
])
def test_composed_specs_have_canonical_names(spec, name):
    p = parse_policy(spec)
    assert p.name == name and parse_policy(name) == p


def test_requirements_compose():
    assert parse_policy("web+filter:watermark+accumulate").requires == {"text", "watermark"}
    assert parse_policy("web+curate").requires == {"text"}
    assert parse_policy("web+anchor+accumulate").requires == frozenset()


@pytest.mark.parametrize("spec", [
    "filter:watermark", "curate", "web+fresh", "web+replace", "web+", "+web", "web+filter", "web+filter:wm",
    "web+filter:watermark:2", "web+filter:watermark:0.01:1", "web+curate:best", "web+curate:0.2:0.3",
    "web+anchor:x", "web+accumulate:0.5", "web+mix",
])
def test_bad_composed_specs_are_one_line_user_errors(spec):
    with pytest.raises(UserError) as e:
        parse_policy(spec)
    msg = str(e.value)
    assert "\n" not in msg and repr(spec) in msg and "rite" in msg  # says what to write


def test_config_names_missing_key_and_non_text_families(shared_text_folder):
    with pytest.raises(UserError, match=r"policies.*watermark key.*--watermark-key"):
        make_config({"corpus": str(shared_text_folder), "policies": ["web+filter:watermark"]})
    with pytest.raises(UserError, match=r"policies.*judges text.*gaussian"):
        make_config({"family": "gaussian", "policies": ["web+curate"]})
    cfg = make_config({"family": "gaussian", "policies": ["web:0.2-0.6+anchor:0.1+accumulate"]})
    assert cfg.policies == ["web:0.2-0.6+anchor:0.1+accumulate"]  # the web itself works for any family


# ------------------------------------------------------------------ real judges on a tiny corpus
@pytest.fixture(scope="module")
def judged(shared_text_folder):
    """A loop state as the engine makes it: tiny corpus, generation 0 fitted, half its output
    watermarked, and the judges' own draw of generation 0 (half watermarked too)."""
    from collapselab.corpus import load_corpus
    from collapselab.models.ngram import NGramModel
    from collapselab.provenance.watermark import Watermark

    cfg = make_config({"corpus": str(shared_text_folder), "train_items": 100})
    corpus = load_corpus(cfg)
    wm = Watermark(bytes([2]) * 32)  # a fixed key: the same green lists every run
    model = NGramModel(3, vocab_size=len(corpus.vocab)).fit(corpus.train)
    rng = np.random.default_rng(0)
    marked, plain = model.sample(100, rng=rng, watermark=wm), model.sample(100, rng=rng)
    draw = TokenSequences.concat([model.sample(100, rng=rng, watermark=wm), model.sample(100, rng=rng)])
    s = LoopState(human=corpus.train, pool=corpus.pool, holdout=corpus.holdout, watermark=wm, generations=3, seed=0, label="t",
                  judge_draw=lambda: draw)
    s.outputs = [TokenSequences.concat([marked, plain])] * 3
    return s, marked, plain


@pytest.mark.parametrize("kind", ["watermark", "likelihood", "classifier"])
def test_detectors_are_calibrated_on_their_own_human_split_and_cached(judged, kind):
    s, marked, plain = judged
    det = calibrated_detector(kind, 0.05, s)
    assert det is calibrated_detector(kind, 0.05, s)  # fitted once per chain
    fit, calibration = judge_human(s)
    assert det.flag(calibration).mean() <= 0.05  # the target false-positive rate, on the calibration text
    assert np.isnan(det.tpr_)  # no TPR measured on text a judge learnt from
    if kind == "watermark":
        assert det.flag(marked).mean() > 0.6 > 0.2 > det.flag(plain).mean()  # measured: 0.73 and 0.02
        assert det.flag(s.pool.take(np.arange(100))).mean() < 0.15  # unseen human text: about the target rate


def test_preference_reward_prefers_the_preferred_kind():
    rng = np.random.default_rng(0)

    def items(marker: int, n: int) -> TokenSequences:
        return TokenSequences.from_lists([list(rng.integers(10, 60, size=8)) + [marker] for _ in range(n)])

    r = PreferenceReward(n_features=2**12).fit(items(5, 300), items(6, 300), rng=np.random.default_rng(1))
    good, bad = r.score(items(5, 100)), r.score(items(6, 100))
    assert good.min() > bad.max()


# ------------------------------------------------------------------ through the engine
POLICIES = [f"{WEB}+filter:classifier:0.01+accumulate", f"{WEB}+curate:reward:0.5+anchor:0.1", f"{WEB}+filter:watermark:0.01"]


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return fixed_key_file(tmp_path_factory.mktemp("runkey") / "wm.key")


def run_config(corpus, key, **kw) -> dict:
    return {"corpus": str(corpus), "train_items": 120, "samples": 60, "generations": 3, "policies": POLICIES,
            "watermark_key": str(key), "watermark_share": 0.5, **kw}


@pytest.fixture(scope="module")
def reference(shared_text_folder, key, tmp_path_factory):
    return cl.run_experiment(run_config(shared_text_folder, key), out=tmp_path_factory.mktemp("ref") / "run", jobs=1)


def test_defence_columns_and_a_share_of_the_output_watermarked(reference, key):
    from collapselab.models.ngram import BOS
    from collapselab.provenance.keys import load_key
    from collapselab.provenance.watermark import Watermark

    m = reference.metrics.set_index(["policy", "generation"])
    for g in (1, 2, 3):
        assert m.loc[(POLICIES[2], g), "web_synthetic_share"] == pytest.approx([0.1, 0.5, 0.9][g - 1])
        assert 0 <= m.loc[(POLICIES[2], g), "detected_share"] <= 1
        assert m.loc[(POLICIES[0], g), "train_items_used"] > 120 + (g - 1) * 45  # accumulates
        assert m.loc[(POLICIES[1], g), "synthetic_share"] < 1
    wm = Watermark(load_key(key))
    out = reference.folder.read_samples(POLICIES[2], 0, 2, True)
    z = wm.detect(out, pad=BOS).z
    assert np.nanmean(z[:30]) > 1.5 > 0.5 > np.nanmean(z[30:])  # the first half marked, the rest not


def test_resume_with_defences_is_exact(reference, shared_text_folder, key, tmp_path):
    from conftest import interrupt_after

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(run_config(shared_text_folder, key), out=out, jobs=1, on_event=interrupt_after(5))
    resumed = cl.run_experiment(out=out, resume=True, jobs=1)
    assert_same_metrics(resumed.metrics, reference.metrics)


def test_mitigation_matrix_columns_and_values(reference):
    t = mitigation_matrix(reference.metrics, POLICIES)
    assert list(t["defence"])[0] == "generation 0 (human data)"
    assert set(COLUMNS) | {c + "_sd" for c in COLUMNS} | {"rank", "defence", "policy"} <= set(t.columns)
    m = reference.metrics
    row = t.set_index("policy").loc[POLICIES[2]]
    v = m.set_index(["policy", "generation"])["vocab_size"]
    assert row["diversity"] == pytest.approx(v[(POLICIES[2], 3)] / v[(POLICIES[2], 0)])
    assert row["synthetic_share"] == pytest.approx(m.query("policy == @POLICIES[2] and generation == 3")["synthetic_share"].item())
    assert sorted(t["rank"].dropna()) == sorted(t["rank"].dropna().astype(int))
    used = m.set_index(["policy", "generation"])["train_items_used"]
    assert row["train_items_used"] == used[(POLICIES[2], 3)] < 60  # the filter's cost, in items
    assert t.set_index("policy").loc[POLICIES[0], "train_items_used"] == used[(POLICIES[0], 3)] > 120 + 2 * 45


def test_every_row_and_run_table_says_how_many_items_the_model_was_trained_on(reference):
    m = reference.metrics.set_index(["policy", "generation"])
    assert (m.xs(0, level="generation")["train_items_used"] == 120).all()  # generation 0: the human training set
    assert m.loc[(POLICIES[1], 2), "train_items_used"] == 30  # curate keeps half of the 60-item scrape
    for block in reference.table():
        for g, _, _, text in block.rows:
            assert text.startswith(f"trained on {m.loc[(block.policy, g), 'train_items_used']:,.0f} items; ")
    from collapselab.presets import format_matrix

    heads, rows = format_matrix(mitigation_matrix(reference.metrics, POLICIES))
    assert heads[-1] == "training items" and rows[0][-1] == "120"


@pytest.mark.slow
def test_preset_defences_end_to_end(shared_text_folder, tmp_path):
    """The whole preset (9 chains) in another interpreter: ~25 s, most of it drawing plots."""
    proc = cli(["run", "--preset", "defences", "--corpus", shared_text_folder, "--generations", "2", "--train-items", "150",
                "--samples", "60", "--jobs", "1", "-q", "--out", "out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for heading in ["diversity vs gen 0 (gen 2)", "tail retention", "held-out ppl", "rare-fact recall", "synthetic share in training"]:
        assert heading in out
    for label in DEFENCES:
        assert label in out
    run = tmp_path / "out"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "defences" and cfg["generations"] == 2 and cfg["train_items"] == 150 and cfg["facts"]
    assert cfg["policies"] == list(DEFENCES.values())
    assert cfg["watermark_key"] == str((run / "watermark.key").resolve())
    assert stat.S_IMODE(os.stat(run / "watermark.key").st_mode) == 0o600
    m = pd.read_parquet(run / "metrics.parquet")
    assert {"fact_recall_f1", "detected_share", "synthetic_share"} <= set(m.columns)


def test_preset_settings_give_way_to_the_file_and_flags(tmp_path):
    from collapselab.config import load_config
    from collapselab.presets import preset_config

    f = tmp_path / "c.yaml"
    f.write_text("generations: 3\nseeds: [0, 1]\n")
    cfg = load_config(f, defaults=preset_config("defences"), train_items=500)
    assert (cfg.generations, cfg.seeds, cfg.train_items) == (3, [0, 1], 500)  # file, file, flag
    assert cfg.preset == "defences" and cfg.facts and cfg.watermark_share == 0.5 and cfg.watermark_key == "new"
    assert cfg.policies == list(DEFENCES.values())


def test_a_new_key_is_made_in_the_run_folder(shared_text_folder, tmp_path):
    run = cl.run_experiment({"corpus": str(shared_text_folder), "train_items": 100, "samples": 40, "generations": 1,
                             "policies": ["web:0.5+filter:watermark"], "watermark_key": "new"}, out=tmp_path / "r", jobs=1)
    key = tmp_path / "r" / "watermark.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert run.config.watermark_key == str(key.resolve())
    assert run.metrics.query("generation == 1")["web_synthetic_share"].item() == 0.5


def test_unknown_preset_is_one_line(tmp_path):
    proc = cli(["run", "--preset", "nope"], cwd=tmp_path)
    assert proc.returncode == 2 and "defences" in proc.stderr and "Traceback" not in proc.stderr
