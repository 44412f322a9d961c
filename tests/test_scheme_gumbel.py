"""The ``gumbel`` / ``gumbel-dual`` schemes against vLLM 0.34's own detector and sampler.

The reference numbers come from ``tests/data/schemes/vllm_gumbel.json``, written by
``bench/make_vllm_fixtures.py`` with vLLM's code (read from its wheel; vLLM is not installed here).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes import build, parse_spec
from collapselab.detect.schemes.gumbel import (
    MASK,
    GumbelScheme,
    _philox_np,
    derive_key,
    gamma_survival,
    philox4x32_10,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "data" / "schemes" / "vllm_gumbel.json").read_text())
KEY, VOCAB = FIXTURE["key"], FIXTURE["vocab_size"]
ALGO = {"gumbel": False, "dual_key_gumbel": True}


def scheme(algorithm="gumbel", width=4, dedup=True, alpha=0.1, key=KEY, vocab=VOCAB) -> GumbelScheme:
    return GumbelScheme(key, context_width=width, deduplicate_contexts=dedup, alpha=alpha, vocab_size=vocab,
                        dual=ALGO[algorithm])


def bench_module():
    spec = importlib.util.spec_from_file_location("make_vllm_fixtures", ROOT / "bench" / "make_vllm_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------- Philox
# Random123's known-answer vectors for philox4x32_10 (kat_vectors): counter, key -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    import torch

    def lanes(words):
        return tuple(np.array([w, w], np.uint64) for w in words)

    assert tuple(int(w[1]) for w in philox4x32_10(lanes(counter), lanes(key))) == expected
    assert tuple(int(w[0]) for w in _philox_np(lanes(counter), lanes(key))) == expected
    assert tuple(int(w[0]) for w in _philox_np(lanes(counter), key)) == expected  # scalar key words
    t = tuple(torch.tensor([w], dtype=torch.int64) for w in counter + key)
    assert tuple(int(w) for w in philox4x32_10(t[:4], t[4:])) == expected


def test_philox_chunks_and_select_agree():
    rng = np.random.default_rng(0)
    c = [rng.integers(0, 2**32, 1000, dtype=np.uint64) for _ in range(4)]
    k = (rng.integers(0, 2**32, 1000, dtype=np.uint64), 7)
    ref = philox4x32_10(c, k)
    for a, b in zip(_philox_np(c, k, chunk=64), ref):
        np.testing.assert_array_equal(a, b)
    sel = rng.integers(0, 4, 1000)
    np.testing.assert_array_equal(_philox_np(c, k, select=sel, chunk=100), np.choose(sel, ref))


def test_derived_keys_match_vllm():
    assert derive_key(KEY, b"key_a") == FIXTURE["derived_keys"]["key_a"]
    assert derive_key(KEY, b"key_b") == FIXTURE["derived_keys"]["key_b"]


# ------------------------------------------------------------------------------ vLLM agreement
def _cases():
    seqs = {(c["algorithm"], c["context_width"], c["alpha"]): c["sequences"] for c in FIXTURE["configs"]}
    for d in FIXTURE["detections"]:
        items = FIXTURE["human"] if d["kind"] == "human" else seqs.get((d["algorithm"], d["context_width"], d["alpha"]))
        if items is None:  # detector-only configs score the dual width-4 generations
            items = seqs[("dual_key_gumbel", 4, 0.1)]
        yield pytest.param(d, items, id=f"{d['algorithm']}-w{d['context_width']}-a{d['alpha']}-"
                                         f"{'dedup' if d['deduplicate_contexts'] else 'all'}-{d['kind']}")


@pytest.mark.parametrize("ref,items", list(_cases()))
def test_scores_match_vllm_detector(ref, items):
    s = scheme(ref["algorithm"], ref["context_width"], ref["deduplicate_contexts"], ref["alpha"])
    got = s.score(TokenSequences.from_lists(items))
    np.testing.assert_array_equal(got.n_scored, ref["num_scored_tokens"])
    np.testing.assert_allclose(got.score, ref["score"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.p_value, ref["p_value"], rtol=1e-9, atol=1e-9)
    if not (ref["algorithm"] == "dual_key_gumbel" and ref["alpha"] not in (0, 0.5, 1)):
        # vLLM's integer-shape survival: also equal in relative terms (torch's gammaincc, behind the
        # dual non-integer branch, is itself off by up to ~2e-9 relative, so that one gets the atol)
        np.testing.assert_allclose(got.p_value, ref["p_value"], rtol=1e-9, atol=0)
    assert np.all(np.isnan(got.z) == (got.n_scored == 0))


def test_fixture_covers_dedup_and_edge_cases():
    """The fixtures exercise what they should: repeated contexts, empty and tiny items."""
    on = next(d for d in FIXTURE["detections"] if d["deduplicate_contexts"] and d["kind"] == "human")
    off = next(d for d in FIXTURE["detections"] if not d["deduplicate_contexts"] and d["kind"] == "human"
               and d["algorithm"] == on["algorithm"] and d["context_width"] == on["context_width"])
    assert sum(off["num_scored_tokens"]) - sum(on["num_scored_tokens"]) >= 90  # the loop item alone repeats 95
    assert 0 in on["num_scored_tokens"] and 1 in on["num_scored_tokens"]
    assert len(FIXTURE["detections"]) == 16


def test_watermarked_text_is_detected_and_other_keys_are_not():
    for c in FIXTURE["configs"]:
        items = TokenSequences.from_lists(c["sequences"])
        got = scheme(c["algorithm"], c["context_width"], True, c["alpha"]).score(items)
        assert got.p_value[0] < 1e-6 and len(c["sequences"][0]) == 200, c["algorithm"]
        assert np.all(got.p_value < 1e-2)
        other = scheme(c["algorithm"], c["context_width"], True, c["alpha"], key=KEY + 1).score(items)
        assert np.all(other.p_value > 1e-3)
        wrong_width = scheme(c["algorithm"], c["context_width"] + 1, True, c["alpha"]).score(items)
        assert wrong_width.p_value[0] > 1e-3


# ------------------------------------------------------------------------------ null behaviour
@pytest.mark.parametrize("algorithm", ["gumbel", "dual_key_gumbel"])
def test_null_flag_rate_is_nominal(algorithm):
    """Random ids (no key): p-values are uniform, so p <= 0.01 flags 1% within 6 binomial SEs."""
    n, alpha = 6000, 0.01
    rng = np.random.default_rng(11)
    lengths = rng.integers(20, 120, n)
    seqs = TokenSequences(rng.integers(0, VOCAB, int(lengths.sum())).astype(np.int32),
                          np.concatenate([[0], np.cumsum(lengths)]))
    got = scheme(algorithm, 4, True, 0.1).score(seqs)
    rate = float(np.mean(got.p_value <= alpha))
    se = math.sqrt(alpha * (1 - alpha) / n)
    assert abs(rate - alpha) <= 6 * se, rate
    assert abs(got.p_value.mean() - 0.5) <= 6 * math.sqrt(1 / 12 / n)
    assert abs(np.mean(got.z)) <= 6 / math.sqrt(n) and abs(np.std(got.z) - 1) < 0.1
    # human text: SOTU pieces are not flagged at 1% beyond what chance allows (24 items: at most 2)
    human = scheme(algorithm, 4, True, 0.1).score(TokenSequences.from_lists(FIXTURE["human"]))
    assert np.sum(human.p_value <= alpha) <= 2


def test_gamma_survival_matches_vllms_integer_shape_sum():
    """scipy's gammaincc against vLLM's log-space sum (``_gamma_survival_integer_shape``), written
    out here in plain Python, from the body to the far tail."""
    def vllm_sum(score, shape):
        if shape <= 0 or score <= 0:
            return 1.0
        terms, t = [0.0], 0.0
        for i in range(1, shape):
            t += math.log(score) - math.log(i)
            terms.append(t)
        top = max(terms)
        return min(1.0, math.exp(min(0.0, -score + top + math.log(sum(math.exp(x - top) for x in terms)))))

    rng = np.random.default_rng(3)
    shape = rng.integers(1, 3000, 300)
    score = shape * rng.uniform(0.3, 3.5, 300)
    ref = np.array([vllm_sum(s, int(n)) for s, n in zip(score, shape)])
    np.testing.assert_allclose(gamma_survival(score, shape), ref, rtol=1e-10, atol=1e-300)
    assert gamma_survival([0.0, 5.0, -1.0], [3, 0, 2]).tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- scheme contract
def test_dedup_counts_distinct_contexts_and_bad_input():
    s = scheme(width=2)
    loop = [5, 6, 7] * 10  # contexts (-1,-1), (-1,5), (5,6), (6,7), (7,5): 5 distinct
    got = s.score(TokenSequences.from_lists([loop, [], loop[:1]]))
    assert got.n_scored.tolist() == [5, 0, 1]
    assert got.score[1] == 0.0 and got.p_value[1] == 1.0 and math.isnan(got.z[1])
    assert scheme(width=2, dedup=False).score(TokenSequences.from_lists([loop])).n_scored.tolist() == [30]
    empty = s.score(TokenSequences.empty())
    assert len(empty) == 0
    for bad in ([[0, VOCAB]], [[-1, 3]]):
        with pytest.raises(ValueError):
            s.score(TokenSequences.from_lists(bad))
    with pytest.raises(ValueError):
        GumbelScheme(2**64, vocab_size=VOCAB)


@pytest.mark.parametrize("collide", [False, True])
def test_dedup_is_per_item_and_exact_under_colliding_keys(monkeypatch, collide):
    """Contexts repeated across items count in each item; with every 64-bit sort key equal (forced
    collisions) the exact path gives the same tokens and scores."""
    s = scheme(width=3)
    rng = np.random.default_rng(5)
    items = [[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4], [9, 9, 9, 9, 9, 9]] + [
        list(rng.integers(0, 4, 30)) for _ in range(20)]
    seqs = TokenSequences.from_lists(items)
    ref = scheme(width=3, dedup=False)
    expected_n = [len({tuple(([-1] * 3 + it)[i:i + 3]) for i in range(len(it))}) for it in items]
    if collide:
        monkeypatch.setattr(GumbelScheme, "_context_keys", staticmethod(lambda item, cols: np.zeros(len(item), np.uint64)))
    got = s.score(seqs)
    # item 0: contexts (-,-,-) (-,-,1) (-,1,2) (1,2,3) (2,3,4) (3,4,1) (4,1,2) then (1,2,3) again
    assert got.n_scored.tolist()[:3] == [7, 4, 4] and got.n_scored.tolist() == expected_n
    # the scored tokens are the first occurrences: the sum of their scores without dedup, each the
    # difference of two prefix scores (a token's context lies inside its prefix)
    prefixes = TokenSequences.from_lists([it[:k] for it in items for k in range(len(it) + 1)])
    cum = ref.score(prefixes).score
    expected, at = [], 0
    for it in items:
        per_token = np.diff(cum[at:at + len(it) + 1])
        at += len(it) + 1
        seen, total = set(), 0.0
        for i in range(len(it)):
            c = tuple(([-1] * 3 + it)[i:i + 3])
            if c not in seen:
                seen.add(c)
                total += per_token[i]
        expected.append(total)
    np.testing.assert_allclose(got.score, expected, rtol=1e-9, atol=1e-9)


def test_build_from_spec_names_and_params():
    for name, dual in (("gumbel", False), ("gumbel-dual", True)):
        sp = parse_spec({"scheme": name, "key_file": "k.key", "context_width": 2, "flag_p_value": 0.001})
        s = build(sp, KEY, vocab_size=VOCAB)
        assert isinstance(s, GumbelScheme) and s.name == name and s.dual is dual and s.flag_p_value == 0.001
        assert s.params()["context_width"] == 2 and ("alpha" in s.params()) is dual
        assert len(s.key_id) == 16 and str(KEY) not in json.dumps(s.params())
    assert scheme("gumbel").key_id != scheme("dual_key_gumbel").key_id


# -------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("replay", FIXTURE["replay"], ids=lambda r: r["algorithm"])
def test_logits_processor_replays_vllm_sampling(replay):
    """Teacher-forced replay of a vLLM generation: at each step our processor keeps the scores of
    the rows vLLM sampled without the watermark, and picks vLLM's Gumbel-max token elsewhere."""
    import torch

    toy_logits = bench_module().toy_logits
    s = scheme(replay["algorithm"], replay["context_width"], True, replay["alpha"], vocab=replay["vocab_size"])
    proc = s.logits_processor()
    tokens = torch.tensor(replay["tokens"])
    rows, steps = tokens.shape
    prompt = torch.arange(3, 3 + replay["prompt_len"]).repeat(rows, 1)
    picked_b = routed = 0
    for t in range(steps):
        scores = torch.from_numpy(np.stack([toy_logits(replay["seed"], r, t) for r in range(rows)]))
        out = proc(torch.cat([prompt, tokens[:, :t]], 1), scores)
        for r in range(rows):
            if replay["skipped"][r][t]:
                assert torch.equal(out[r], scores[r]), (t, r)
                continue
            assert torch.isfinite(out[r]).sum() == 1
            chosen = int(out[r].argmax())
            if replay["algorithm"] == "gumbel":
                assert chosen == replay["tokens"][r][t], (t, r)
            else:
                a, b = replay["key_a"][r][t], replay["key_b"][r][t]
                assert chosen in (a, b) and replay["tokens"][r][t] in (a, b)
                if a != b:
                    routed += 1
                    picked_b += chosen == b
        if replay["algorithm"] != "gumbel":  # each key's Gumbel argmax, every row and step
            ctx = torch.full((rows, s.context_width), -1)
            k = min(t, s.context_width)
            if k:
                ctx[:, s.context_width - k:] = tokens[:, t - k:t]
            for name, (key, _) in zip(("key_a", "key_b"), s._keys):
                assert proc.gumbel_argmax(scores, ctx, key).tolist() == [replay[name][r][t] for r in range(rows)]
    assert sum(map(sum, replay["skipped"])) > rows * s.context_width  # dedup skips happened too
    if routed:
        p = replay["alpha"]
        assert abs(picked_b / routed - p) <= 6 * math.sqrt(p * (1 - p) / routed)


def test_logits_processor_prompt_len_and_reset():
    import torch

    s = scheme(width=2)
    proc = s.logits_processor()
    scores = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(0))
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert torch.equal(proc(prompt, scores), scores)  # no generated token yet: sampled normally
    assert proc.prompt_len == 3
    out = proc(torch.cat([prompt, torch.tensor([[7, 8], [9, 10]])], 1)[:, :4], scores)  # 1 generated
    assert torch.equal(out, scores)
    out = proc(torch.cat([prompt, torch.tensor([[7, 8], [9, 10]])], 1), scores)  # 2 generated: watermarked
    assert (torch.isfinite(out).sum(1) == 1).all()
    proc.reset()
    assert proc.prompt_len is None


@pytest.mark.slow
def test_logits_processor_reproduces_smollm2_generation():
    """Our processor on SmolLM2's logits (the fixture's batch, replayed with vLLM's tokens) picks
    vLLM's token at every watermarked step and leaves exactly vLLM's skipped steps alone."""
    import torch

    from collapselab.models.smollm2 import load_pretrained

    mod = bench_module()
    model, tok = load_pretrained()
    prompts = mod.chat_prompts(tok)
    for c in FIXTURE["configs"]:
        s = scheme(c["algorithm"], c["context_width"], True, c["alpha"])
        proc = s.logits_processor(prompt_len=0)
        n = len(c["sequences"][0])  # the first row is the longest (200 tokens); the batch runs that long
        forced = torch.tensor([seq + [0] * (n - len(seq)) for seq in c["sequences"]])
        checks = []

        def step(logits, gen, proc=proc, forced=forced, c=c, checks=checks):
            t = gen.shape[1]
            out = proc(gen, logits)
            for r, seq in enumerate(c["sequences"]):
                if t < len(seq):
                    if c["skipped"][r][t]:
                        checks.append(torch.equal(out[r], logits[r]))
                    else:  # dual: the key is routed at random, so only the gumbel tokens must be vLLM's
                        one_hot = bool(torch.isfinite(out[r]).sum() == 1)
                        checks.append(one_hot and (c["algorithm"] != "gumbel" or int(out[r].argmax()) == seq[t]))
            return forced[:, t]

        mod.generate_smollm2(model, prompts, n, step)
        assert all(checks) and len(checks) > 500
