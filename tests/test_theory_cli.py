"""The linreg and categorical theory families run through ``collapselab run`` like any other:
their corpora, metrics, table and errors. (Their closed forms are tested in test_theory_*.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import collapselab as cl
from test_run_cli import one_error_line, strict


@pytest.fixture(scope="module")
def linreg(tmp_path_factory):
    return cl.run_experiment({"family": "linreg", "dim": 5, "train_items": 20, "generations": 3,
                              "policies": ["replace", "accumulate"], "seeds": list(range(30))},
                             out=tmp_path_factory.mktemp("lr") / "run", jobs=1)


def test_linreg_replace_error_grows_faster_than_accumulate(linreg):
    m = linreg.metrics
    assert {"risk", "noise_ratio", "label_variance_ratio", "nll_holdout"} <= set(m.columns)
    risk = m.groupby(["policy", "generation"])["risk"].mean()
    assert risk["replace", 0] == risk["accumulate", 0]  # generation 0 is shared
    # Gerstgrasser: replace adds about one real-data error per generation, accumulate a shrinking one
    assert risk["replace", 3] > 2.0 * risk["replace", 0]
    assert risk["replace", 3] > 1.5 * risk["accumulate", 3]
    assert "test error" in linreg.table()[0].rows[3][3]


def test_categorical_replace_can_only_lose_types(tmp_path):
    run = cl.run_experiment({"family": "categorical", "corpus": "zipf:1.2", "train_items": 300, "generations": 6,
                             "policies": ["replace", "fresh:0.2"], "seeds": [0, 1, 2], "model": {"n_types": 200}},
                            out=tmp_path / "run", jobs=1)
    m = run.metrics.sort_values(["policy", "seed", "generation"])
    for seed, chain in m[m["policy"] == "replace"].groupby("seed"):
        # a count-fitted model samples only the types it saw: the support never grows under replace
        assert np.all(np.diff(chain["types_seen"].to_numpy()) <= 0), chain["types_seen"].tolist()
        assert np.all(np.diff(chain["missing_mass"].to_numpy()) >= 0)
    last = m[m["generation"] == 6].groupby("policy")["missing_mass"].mean()
    assert last["replace"] > last["fresh:0.2"]  # fresh human tokens bring lost types back
    assert set(m["collision"].between(0, 1)) == {True}


def test_theory_corpora_belong_to_their_family(tmp_path, run_main):
    for args, needles in ((["--family", "gaussian", "--corpus", "zipf"], ["zipf", "categorical"]),
                          (["--family", "linreg", "--corpus", "normal"], ["normal", "linear"]),
                          (["--family", "categorical", "--corpus", "zipf:abc"], ["zipf:abc", "BETA"])):
        status, _, err = run_main(["run", *args, "-g", "1", "-q", "--out", "x"], tmp_path)
        one_error_line(status, err, *needles)
        assert not (tmp_path / "x").exists()


def test_categorical_json_is_strict(tmp_path, run_main):
    status, out, err = run_main(["run", "--family", "categorical", "--train-items", "100", "-g", "1", "-p", "replace",
                                 "--out", "c", "--json", "-j", "1"], tmp_path)
    assert status == 0, err
    d = strict(out)
    assert d["diversity_metric"] == "types_seen" and d["table"][0]["diversity_relative"] == 1.0
