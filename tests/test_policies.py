"""Data policies (collapselab.loop.policies): who is in generation g's training set.

Items carry their own identity so that the tests can tell exactly where each training item came
from: human item ``i`` is ``[HUMAN, i]``, pool item ``i`` is ``[POOL, i]``, and item ``i`` made by
generation ``g`` is ``[GEN + g, i]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError
from collapselab.loop.policies import Accumulate, AccumulateSubsample, Anchor, Fresh, LoopState, Replace, TrainingSet, parse_policy

HUMAN, POOL, GEN = 3, 4, 100
N_HUMAN, N_POOL, N_OUT, G = 200, 500, 150, 6


def tagged(tag: int, n: int) -> TokenSequences:
    return TokenSequences.from_lists([[tag, i] for i in range(n)])


def run_policy(policy, n_out: int = N_OUT, generations: int = G, seed: int = 0) -> list[TrainingSet]:
    """Drive a policy the way the engine does; each generation 'outputs' n_out tagged items."""
    state = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, N_POOL))
    state.outputs = [tagged(GEN + 0, n_out)]
    sets = []
    for g in range(1, generations + 1):
        ts = policy.training_set(g, state, np.random.default_rng([seed, g]))
        sets.append(ts)
        state.outputs.append(tagged(GEN + g, n_out))
    return sets


def items_of(ts: TrainingSet) -> list[tuple[int, int]]:
    return [tuple(x) for x in ts.data.to_lists()]


def check_origin(ts: TrainingSet) -> None:
    """The origin array matches the items' tags: -1 for human training items, -2 for the unseen
    reserve (pool), g for generation g."""
    tags = ts.data.tokens[ts.data.offsets[:-1]]
    expected = np.where(tags >= GEN, tags - GEN, np.where(tags == POOL, -2, -1))
    assert len(ts.origin) == len(ts.data)
    assert np.array_equal(ts.origin, expected)


def test_replace_is_exactly_the_previous_output():
    for g, ts in enumerate(run_policy(Replace()), start=1):
        check_origin(ts)
        assert items_of(ts) == [(GEN + g - 1, i) for i in range(N_OUT)]
        assert np.all(ts.origin == g - 1)
        assert ts.synthetic_share == 1.0


def test_accumulate_holds_human_and_every_earlier_output():
    for g, ts in enumerate(run_policy(Accumulate()), start=1):
        check_origin(ts)
        assert len(ts.data) == N_HUMAN + g * N_OUT
        expected = [(HUMAN, i) for i in range(N_HUMAN)] + [(GEN + h, i) for h in range(g) for i in range(N_OUT)]
        assert items_of(ts) == expected
        assert np.count_nonzero(ts.origin == -1) == N_HUMAN
        for h in range(g):
            assert np.count_nonzero(ts.origin == h) == N_OUT
        assert ts.synthetic_share == pytest.approx(g * N_OUT / (N_HUMAN + g * N_OUT))


def test_accumulate_subsample_trains_on_n_items_of_the_accumulated_set():
    """Kazdan et al.'s size-matched control: accumulate's pool, replace's budget (n items)."""
    full = run_policy(Accumulate())
    sub = run_policy(AccumulateSubsample(), seed=0)
    for g, (ts, pool) in enumerate(zip(sub, full), start=1):
        check_origin(ts)
        it = items_of(ts)
        assert len(it) == len(set(it)) == N_OUT == ts.stats["train_items_used"]  # without replacement
        assert set(it) <= set(items_of(pool)) and it == sorted(it, key=items_of(pool).index)  # a subset, in order
    # drawn at random from the whole pool: over the seeds, each source's share is its share of the pool
    g = G
    shares = np.array([[np.mean(ts.origin == -1) for ts in run_policy(AccumulateSubsample(), seed=s)][g - 1] for s in range(40)])
    expected = N_HUMAN / (N_HUMAN + g * N_OUT)
    se = np.sqrt(expected * (1 - expected) / N_OUT * (1 - N_OUT / (N_HUMAN + g * N_OUT)) / len(shares))  # hypergeometric
    assert abs(shares.mean() - expected) < 4 * se
    assert run_policy(AccumulateSubsample(), seed=3)[2].data == run_policy(AccumulateSubsample(), seed=3)[2].data
    assert run_policy(AccumulateSubsample(), seed=3)[2].data != run_policy(AccumulateSubsample(), seed=4)[2].data


def test_accumulate_subsample_defence_keeps_the_web_pool_at_n_items():
    sets = run_policy(parse_policy("web:0.5:train+accumulate-subsample"))
    full = run_policy(parse_policy("web:0.5:train+accumulate"))
    for ts, pool in zip(sets, full):
        assert len(ts.origin) == N_OUT and set(items_of(ts)) <= set(items_of(pool))
    assert len(full[-1].origin) == N_HUMAN + G * N_OUT


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.0, 1.0])
@pytest.mark.parametrize("n_out", [150, 25, 37])
def test_anchor_mixes_a_fixed_human_share_with_the_previous_output(fraction, n_out):
    sets = run_policy(Anchor(fraction), n_out=n_out)
    k = int(round(fraction * n_out))
    human_draws = []
    for g, ts in enumerate(sets, start=1):
        check_origin(ts)
        it = items_of(ts)
        assert len(it) == n_out
        human = [x for x in it if x[0] == HUMAN]
        synth = [x for x in it if x[0] != HUMAN]
        assert len(human) == k
        assert len(set(human)) == k  # drawn without replacement
        assert all(0 <= i < N_HUMAN for _, i in human)
        assert len(synth) == n_out - k and len(set(synth)) == n_out - k
        assert all(tag == GEN + g - 1 for tag, _ in synth)  # only the previous generation
        assert not any(x[0] == POOL for x in it)  # anchor never touches the reserve pool
        assert ts.synthetic_share == pytest.approx((n_out - k) / n_out)
        human_draws.append(frozenset(human))
    if 0 < k < N_HUMAN:
        # drawn afresh each generation, not a fixed subset
        assert len(set(human_draws)) > 1
    assert Anchor(fraction).human_pool_needed(G, n_out) == 0


def test_anchor_draws_cover_the_human_set():
    """Over many generations the anchor samples all over the human set (no bias to a prefix)."""
    seen = set()
    for ts in run_policy(Anchor(0.1), n_out=N_OUT, generations=60):
        seen |= {i for tag, i in items_of(ts) if tag == HUMAN}
    assert len(seen) > 0.9 * N_HUMAN


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_fresh_takes_new_pool_items_never_repeated(fraction):
    sets = run_policy(Fresh(fraction))
    k = int(round(fraction * N_OUT))
    used: list[int] = []
    for g, ts in enumerate(sets, start=1):
        check_origin(ts)
        it = items_of(ts)
        assert len(it) == N_OUT
        pool = [i for tag, i in it if tag == POOL]
        assert len(pool) == k
        assert pool == list(range((g - 1) * k, g * k))  # in order, the next unseen ones
        assert not any(tag == HUMAN for tag, _ in it)  # never the original training set
        synth = [x for x in it if x[0] not in (POOL, HUMAN)]
        assert len(synth) == N_OUT - k and all(tag == GEN + g - 1 for tag, _ in synth)
        assert len(set(synth)) == len(synth)
        used += pool
    assert len(used) == len(set(used)) == G * k
    assert Fresh(fraction).human_pool_needed(G, N_OUT) == G * k


def test_policies_are_reproducible_given_the_generator():
    a = run_policy(Anchor(0.3), seed=5)
    b = run_policy(Anchor(0.3), seed=5)
    c = run_policy(Anchor(0.3), seed=6)
    assert all(x.data == y.data for x, y in zip(a, b))
    assert any(x.data != y.data for x, y in zip(a, c))


def test_policies_work_on_numeric_arrays():
    state = LoopState(human=np.arange(20.0)[:, None], pool=100 + np.arange(50.0)[:, None])
    state.outputs = [-np.arange(1.0, 11.0)[:, None]]
    ts = Anchor(0.2).training_set(1, state, np.random.default_rng(0))
    assert ts.data.shape == (10, 1)
    assert np.count_nonzero(ts.data[:, 0] >= 0) == 2 and np.array_equal(ts.origin >= 0, ts.data[:, 0] < 0)
    ts = Accumulate().training_set(1, state, np.random.default_rng(0))
    assert ts.data.shape == (30, 1)
    ts = Fresh(0.3).training_set(1, state, np.random.default_rng(0))
    assert sorted(ts.data[ts.origin == -2, 0].tolist()) == [100.0, 101.0, 102.0]  # -2: the unseen reserve


# ----------------------------------------------------------------------------- parse_policy
@pytest.mark.parametrize(
    "spec,cls,name",
    [
        ("replace", Replace, "replace"),
        ("Accumulate", Accumulate, "accumulate"),
        ("accumulate-subsample", AccumulateSubsample, "accumulate-subsample"),
        (" anchor ", Anchor, "anchor:0.1"),
        ("anchor:0.25", Anchor, "anchor:0.25"),
        ("fresh", Fresh, "fresh:0.1"),
        ("fresh:0.5", Fresh, "fresh:0.5"),
        ("anchor:0", Anchor, "anchor:0"),
        ("fresh:1", Fresh, "fresh:1"),
    ],
)
def test_parse_policy_names(spec, cls, name):
    p = parse_policy(spec)
    assert isinstance(p, cls)
    assert p.name == name
    assert parse_policy(p.name) == p  # the name is a spec that gives the same policy back


@pytest.mark.parametrize(
    "spec",
    ["mix", "", "replaces", "anchor:1.5", "anchor:-0.1", "fresh:2", "fresh:abc", "anchor:nan", "replace:0.1", "accumulate:0.5",
     "accumulate-subsample:0.5", "accumulate-sub"],
)
def test_parse_policy_rejects_bad_specs(spec):
    with pytest.raises(UserError):
        parse_policy(spec)
