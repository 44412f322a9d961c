"""A neural text family inside the loop: fine-tuning from the previous generation's weights
resumes exactly, from the checkpoint the run folder keeps (tiny gpt: seconds)."""

import pytest

import collapselab as cl
from conftest import assert_same_metrics, interrupt_after, write_text_file

MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "bpe_vocab": 300, "epochs": 1, "batch_size": 16,
         "init": "previous"}


def test_init_previous_resumes_exactly(tmp_path):
    corpus = write_text_file(tmp_path / "c.txt", n_sentences=400)
    cfg = {"family": "gpt", "corpus": str(corpus), "generations": 3, "policies": ["replace"], "train_items": 150,
           "model": MODEL}
    full = cl.run_experiment(cfg, out=tmp_path / "full")
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints" / "replace" / "seed0").iterdir()) == \
        ["gen01.pkl", "gen02.pkl", "gen03.pkl"]
    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(cfg, out=tmp_path / "cut", on_event=interrupt_after(3))  # gen 0, 1, 2 done
    resumed = cl.run_experiment(out=tmp_path / "cut", resume=True)  # gen 3 starts from gen 2's checkpoint
    assert_same_metrics(resumed.metrics, full.metrics)
    scratch = cl.run_experiment({**cfg, "model": {**MODEL, "init": "scratch"}}, out=tmp_path / "scratch")
    last = lambda run: run.metrics.set_index("generation")["ppl_holdout"].loc[3]  # noqa: E731
    assert last(scratch) != last(full)  # the init setting reaches the model
