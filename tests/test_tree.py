"""The derivative tree (`collapselab run --tree`): every model spawns one child per policy,
trained on its parent's output; per-node metrics, lineage in the ledger, exact resume."""

import pytest

import collapselab as cl
from collapselab.loop.provenance import model_id
from collapselab.provenance.ledger import Ledger, verify
from conftest import interrupt_after, assert_same_metrics, write_text_folder

POLICIES = ["replace", "anchor:0.2"]
G = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_text_folder(tmp_path_factory.mktemp("tree") / "corpus", n_docs=20, sentences_per_doc=20)


def _cfg(corpus):
    return {"corpus": str(corpus), "train_items": 120, "generations": G, "policies": POLICIES, "tree": True}


@pytest.fixture(scope="module")
def tree(corpus, tmp_path_factory):
    return cl.run_experiment(_cfg(corpus), out=tmp_path_factory.mktemp("tree") / "run")


def test_every_model_spawns_one_child_per_policy(tree):
    m = tree.metrics
    assert len(m) == 1 + 2 + 4 + 8
    assert not m.duplicated(["policy", "seed", "generation"]).any()
    for _, row in m[m["policy"] != "root"].iterrows():
        parts = row["policy"].split(">")
        assert row["generation"] == len(parts) and row["branch_policy"] == parts[-1]
        assert row["parent"] == (">".join(parts[:-1]) or "root")
    # replace children learn only from model output; anchor children keep a human share
    assert (m.loc[m["branch_policy"] == "replace", "synthetic_share"] == 1.0).all()
    assert (m.loc[m["branch_policy"] == "anchor:0.2", "synthetic_share"].round(2) == 0.8).all()


def test_ledger_links_each_child_to_its_parent(tree):
    assert verify(tree.path / "ledger.sqlite").ok
    with Ledger(tree.path / "ledger.sqlite", create=False) as L:
        for label in tree.metrics["policy"]:
            if label == "root":
                continue
            depth = label.count(">") + 1
            mid = model_id(label, 0, depth)
            assert L.synthetic_depth(mid) == depth
            parent = ">".join(label.split(">")[:-1])
            parent_id = model_id(parent, 0, depth - 1) if parent else "seed0/gen0"
            makers = {d.model_id for d in L.documents(snapshot=f"train:{mid}") if d.model_id}
            assert makers == {parent_id}


def test_tree_table_has_one_lineage_per_leaf(tree):
    blocks = tree.table()
    assert len(blocks) == 2 ** G
    assert all([g for g, *_ in b.rows] == list(range(G + 1)) for b in blocks)
    assert (tree.path / "plots" / "tree.png").exists()


def test_interrupted_tree_resumes_to_the_same_numbers(tree, corpus, tmp_path):
    stop = interrupt_after(6)
    out = tmp_path / "tree"
    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(_cfg(corpus), out=out, on_event=stop)
    resumed = cl.run_experiment(None, out=out, resume=True)
    assert_same_metrics(resumed.metrics, tree.metrics)


def test_a_tree_too_large_is_refused(corpus):
    with pytest.raises(cl.UserError, match="tree"):
        cl.run_experiment({**_cfg(corpus), "policies": ["replace", "accumulate", "anchor", "fresh"], "generations": 7})
