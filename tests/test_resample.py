"""``resample_data`` (``run --resample-data``): every seed draws its own generation-0 data and held-out
split, so that spreads over seeds include the variation between draws of real data."""

from __future__ import annotations

import numpy as np
import pandas as pd

import collapselab as cl
from collapselab.config import ExperimentConfig
from collapselab.corpus import load_corpus, seed_split
from collapselab.loop.provenance import dataset_hash

CFG = {"family": "gaussian", "corpus": "normal", "train_items": 60, "generations": 2, "policies": ["replace", "accumulate"],
       "seeds": [0, 1, 2]}


def gen0(run) -> pd.DataFrame:
    m = run.metrics
    return m[(m.generation == 0) & (m.policy == "replace")].set_index("seed").sort_index()


def test_shared_by_default_resampled_on_request(tmp_path):
    shared = cl.run_experiment(CFG, out=tmp_path / "shared", jobs=1)
    own = cl.run_experiment({**CFG, "resample_data": True}, out=tmp_path / "own", jobs=1)
    # generation 0 fits the same human data in every seed of the shared run: its distance to the truth is one number
    assert gen0(shared)["mean_error"].nunique() == 1
    assert gen0(own)["mean_error"].nunique() == 3
    # a seed's data are load_corpus(config, seed): recorded as that seed's human documents
    config = ExperimentConfig(**{**CFG, "resample_data": True})
    with cl.provenance.ledger.Ledger(tmp_path / "own" / "ledger.sqlite", create=False) as ledger:
        human = {d.content_hash for d in ledger.documents(origin="human")}
        for seed in CFG["seeds"]:
            corpus = load_corpus(config, seed)
            assert dataset_hash(corpus.train) in human
            assert not np.array_equal(corpus.train, load_corpus(config, seed + 1).train)
    assert cl.provenance.ledger.verify(tmp_path / "own" / "ledger.sqlite").ok


def test_resampled_runs_are_deterministic_whatever_the_jobs(tmp_path):
    a = cl.run_experiment({**CFG, "resample_data": True}, out=tmp_path / "a", jobs=1)
    b = cl.run_experiment({**CFG, "resample_data": True}, out=tmp_path / "b", jobs=2)  # workers build each seed's split
    key = ["policy", "seed", "generation"]
    x, y = (r.metrics.sort_values(key).reset_index(drop=True) for r in (a, b))
    num = x.select_dtypes("number").columns
    np.testing.assert_array_equal(x[num].to_numpy(), y[num].to_numpy())


def test_seed_splits_differ_and_are_stable():
    assert seed_split(0, 0) == seed_split(0, 0)
    assert len({seed_split(0, s) for s in range(100)}) == 100
    assert seed_split(0, 1) != seed_split(1, 1)
    config = ExperimentConfig(**CFG)  # resample_data off: the seed does not change the data
    assert np.array_equal(load_corpus(config, 5).train, load_corpus(config).train)
