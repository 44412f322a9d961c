"""The contaminated web (collapselab.loop.web): schedule, origins, sizes, pool use.

Items carry their identity as in test_policies: human item ``i`` is ``[HUMAN, i]``, pool item
``i`` is ``[POOL, i]``, item ``i`` of generation ``g`` is ``[GEN + g, i]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.errors import UserError
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.loop.web import Web
from test_policies import GEN, HUMAN, N_HUMAN, POOL, check_origin, items_of, tagged

N, G = 100, 5


def web_sets(policy, generations: int = G, n: int = N, pool: int = 1000, seed: int = 0):
    state = LoopState(human=tagged(HUMAN, N_HUMAN), pool=tagged(POOL, pool), generations=generations)
    state.outputs = [tagged(GEN, n)]
    sets = []
    for g in range(1, generations + 1):
        sets.append(policy.training_set(g, state, np.random.default_rng([seed, g])))
        state.outputs.append(tagged(GEN + g, n))
    return sets


def test_share_rises_linearly_from_lo_at_generation_1_to_hi_at_the_last():
    web = Web(0.1, 0.9)
    assert [web.share(g, 5) for g in range(1, 6)] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert web.share(1, 1) == pytest.approx(0.1)  # one generation: the start share
    assert [Web(0.4, 0.4).share(g, 7) for g in (1, 4, 7)] == pytest.approx([0.4] * 3)


@pytest.mark.parametrize("n", [100, 37])
def test_web_scrape_is_exactly_the_scheduled_mix(n):
    web = Web(0.1, 0.9)
    pool_used = []
    for g, ts in enumerate(web_sets(web, n=n), start=1):
        check_origin(ts)
        k = int(round(web.share(g, G) * n))
        it = items_of(ts)
        assert len(it) == n
        synth = [x for x in it if x[0] >= GEN]
        pool = [i for tag, i in it if tag == POOL]
        assert len(synth) == k and len(set(synth)) == k
        assert all(tag == GEN + g - 1 for tag, _ in synth)  # the previous generation's output only
        assert pool == list(range(len(pool_used), len(pool_used) + n - k))  # the next unseen pool items, in order
        assert not any(tag == HUMAN for tag, _ in it)
        assert ts.synthetic_share == pytest.approx(k / n)
        assert ts.stats["web_synthetic_share"] == pytest.approx(web.share(g, G))
        pool_used += pool
    assert web.human_pool_needed(G, n) == len(pool_used) == len(set(pool_used))


def test_web_train_source_draws_human_training_items_afresh():
    web = Web(0.2, 0.6, "train")
    seen = []
    for g, ts in enumerate(web_sets(web), start=1):
        check_origin(ts)
        human = [i for tag, i in items_of(ts) if tag == HUMAN]
        assert len(human) == N - round(web.share(g, G) * N) and len(set(human)) == len(human)
        assert np.all(ts.origin[: len(human)] == -1)
        seen.append(frozenset(human))
    assert len(set(seen)) == G  # drawn afresh every generation
    assert web.human_pool_needed(G, N) == 0


@pytest.mark.parametrize("spec,name,start,end,human", [
    ("web", "web:0.1-0.9", 0.1, 0.9, "pool"),
    ("WEB:0.2-0.8", "web:0.2-0.8", 0.2, 0.8, "pool"),
    ("web:0.5", "web:0.5", 0.5, 0.5, "pool"),
    ("web:0.1-0.9:train", "web:0.1-0.9:train", 0.1, 0.9, "train"),
    ("web:train", "web:0.1-0.9:train", 0.1, 0.9, "train"),
])
def test_web_specs(spec, name, start, end, human):
    w = parse_policy(spec)
    assert (w.start, w.end, w.human, w.name) == (start, end, human, name)
    assert parse_policy(w.name) == w


@pytest.mark.parametrize("spec", ["web:1.2", "web:0.1-", "web:a-b", "web:0.1-0.9:pool:train", "web:0.1:0.9", "web:0.1-0.9:cloud"])
def test_bad_web_specs(spec):
    with pytest.raises(UserError) as e:
        parse_policy(spec)
    msg = str(e.value)
    assert "\n" not in msg and repr(spec) in msg and "web:0.1-0.9" in msg
