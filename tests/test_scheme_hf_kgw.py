"""hf-kgw: exact agreement with transformers' WatermarkDetector, the green-list walk against
torch.randperm, int64 wrap-around, BOS and short items, and the p-value's calibration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

import make_hf_scheme_fixtures as ref  # noqa: E402

from collapselab.corpus.sequences import TokenSequences  # noqa: E402
from collapselab.detect.schemes import build, parse_spec  # noqa: E402
from collapselab.detect.schemes import hf_kgw  # noqa: E402
from collapselab.detect.schemes.hf_kgw import HFKGWScheme, green_pairs_mt, green_pairs_torch  # noqa: E402

FIXTURES = ref.load()
V = FIXTURES["vocab_size"]
TIGHT = dict(rtol=1e-9, atol=1e-9)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch.randperm's parallel fill crawls on a loaded 2-core machine; one thread is 10x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scheme_for(cfg: dict, **kw) -> HFKGWScheme:
    cfg = dict(cfg)
    key = cfg.pop("hashing_key")
    kw.setdefault("vocab_size", V)
    kw.setdefault("bos_token_id", FIXTURES["bos_token_id"])
    return HFKGWScheme(key, **cfg, **kw)


def seqs(items) -> TokenSequences:
    return TokenSequences.from_lists([list(map(int, x)) for x in items])


def assert_matches(s, reference: list[dict]) -> None:
    np.testing.assert_array_equal(s.n_scored, [r["num_tokens_scored"] for r in reference])
    np.testing.assert_array_equal(s.n_green, [r["num_green_tokens"] for r in reference])
    np.testing.assert_allclose(s.score, [r["z_score"] for r in reference], **TIGHT)
    np.testing.assert_allclose(s.z, s.score, **TIGHT)


@pytest.mark.parametrize("name", sorted(FIXTURES["kgw"]))
@pytest.mark.parametrize("ignore", [False, True])
def test_agrees_with_transformers_on_smollm2_text(name, ignore):
    fx = FIXTURES["kgw"][name]
    scheme = scheme_for(fx["config"], ignore_repeated_ngrams=ignore)
    for kind, items in (("watermarked", fx["ids"]), ("human", FIXTURES["human"])):
        assert_matches(scheme.score(seqs(items)), fx["reference"][str(ignore)][kind])
    # the watermark is there: every generated sequence beats every human one by a wide margin
    s_wm, s_h = scheme.score(seqs(fx["ids"])), scheme.score(seqs(FIXTURES["human"]))
    assert s_wm.p_value.max() < 1e-3 and s_h.p_value.min() > 1e-3


@pytest.mark.parametrize("name", sorted(FIXTURES["kgw"]))
def test_agrees_with_transformers_live(name):
    """The stored references recomputed now (the detector is cheap; generation is not)."""
    fx = FIXTURES["kgw"][name]
    items = fx["ids"][:4] + FIXTURES["human"][:4]
    assert_matches(scheme_for(fx["config"]).score(seqs(items)), ref.kgw_reference(items, fx["config"]))


@pytest.mark.parametrize("vocab,ratio", [(49152, 0.25), (1000, 0.1), (7, 0.5), (70, 0.9)])
def test_walk_equals_torch_randperm(vocab, ratio):
    k = int(vocab * ratio)
    rng = np.random.default_rng(vocab)
    seeds = rng.integers(0, 2**63, 40, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    seeds[:3] = [0, 2**32 + 1, 2**64 - 2]
    seeds = np.repeat(seeds, 12)
    tokens = rng.integers(0, vocab, len(seeds))
    tokens[:4] = [0, k - 1, k, vocab - 1]
    expected = green_pairs_torch(seeds, tokens, vocab, k)
    np.testing.assert_array_equal(green_pairs_mt(seeds, tokens, vocab, k), expected)
    assert 0 < expected.sum() < len(expected)


def test_seeds_wrap_like_torch_int64():
    """selfhash's h * a * b wraps in int64 and the minimum can be negative; lefthash's product is an
    exact integer; both are reduced modulo 2**64 - 1. Compared with the processor's own set_seed."""
    rng = np.random.default_rng(3)
    for scheme_name, key, width in (("selfhash", 2**63 - 25, 3), ("selfhash", 15485863, 4), ("lefthash", 2**62 + 7, 1),
                                    ("lefthash", 2**63 + 11, 2)):
        s = HFKGWScheme(key, vocab_size=V, seeding_scheme=scheme_name, context_width=width)
        proc = s.logits_processor()
        n = width if scheme_name == "selfhash" else width + 1
        ngrams = rng.integers(0, V, (200, n))
        ours = s.seeds(ngrams)
        theirs = []
        for row in ngrams:
            proc.set_seed(torch.tensor(row if scheme_name == "selfhash" else row[:-1]))
            theirs.append(proc.rng.initial_seed())
        np.testing.assert_array_equal(ours, np.array(theirs, dtype=np.uint64))
        if scheme_name == "selfhash" and key > 2**62:  # the negative-minimum branch was exercised
            low = (hf_kgw._as_int64(key) * (s._table[ngrams % hf_kgw.TABLE_SIZE] + 1)
                   * (s._table[ngrams[:, -1:] % hf_kgw.TABLE_SIZE] + 1)).min(axis=1)
            assert (low < 0).any() and (low >= 0).any()


def test_bos_is_stripped_as_the_detector_does():
    fx = FIXTURES["kgw"]["selfhash-c4"]
    bos = FIXTURES["bos_token_id"]
    items = [[bos] + x for x in fx["ids"][:3]]
    scheme = scheme_for(fx["config"])
    with_bos, without = scheme.score(seqs(items)), scheme.score(seqs(fx["ids"][:3]))
    np.testing.assert_array_equal(with_bos.n_green, without.n_green)
    assert_matches(with_bos, ref.kgw_reference(items, fx["config"]))
    # no bos_token_id: the leading token is text and adds a window
    kept = scheme_for(fx["config"], bos_token_id=None).score(seqs(items))
    np.testing.assert_array_equal(kept.n_scored, with_bos.n_scored + 1)


@pytest.mark.parametrize("seeding,width", [("lefthash", 1), ("lefthash", 3), ("selfhash", 4)])
def test_short_items_score_nothing(seeding, width):
    s = HFKGWScheme(7, vocab_size=100, seeding_scheme=seeding, context_width=width, bos_token_id=0)
    items = [[], [0], [5] * width, [0] + [5] * width, [0] + [5] * (width + 1)]
    r = s.score(seqs(items))
    np.testing.assert_array_equal(r.n_scored[:4], 0)
    np.testing.assert_array_equal(r.n_green[:4], 0)
    np.testing.assert_array_equal(r.score[:4], 0.0)
    assert np.isnan(r.z[:4]).all() and (r.p_value[:4] == 1.0).all()
    assert r.n_scored[4] == (2 if seeding == "selfhash" else 1)
    assert s.score(TokenSequences.empty()).n_scored.shape == (0,)


def test_empty_green_list():
    """int(V * ratio) = 0 (a tiny vocabulary): transformers' green list is empty; so is ours."""
    s = HFKGWScheme(7, vocab_size=3, greenlist_ratio=0.3)
    r = s.score(seqs([[0, 1, 2, 1, 0]]))
    assert r.n_green[0] == 0 and r.n_scored[0] == 4 and r.p_value[0] == 1.0
    np.testing.assert_allclose(r.z, [(0 - 0.3 * 4) / np.sqrt(4 * 0.3 * 0.7)], **TIGHT)


def test_ids_out_of_range():
    s = HFKGWScheme(7, vocab_size=100)
    for bad in ([1, 2, 100], [1, -1, 3]):
        with pytest.raises(ValueError, match=r"\[0, 100\)"):
            s.score(seqs([bad]))


def test_bad_parameters():
    with pytest.raises(ValueError):
        HFKGWScheme(7, vocab_size=100, seeding_scheme="minhash")
    with pytest.raises(ValueError):
        HFKGWScheme(7, vocab_size=100, greenlist_ratio=1.0)


def sample_watermarked(scheme: HFKGWScheme, n_items: int, length: int, seed: int) -> list[list[int]]:
    """Text from transformers' own processor over random logits (a stand-in for a model)."""
    proc = scheme.logits_processor()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, scheme.vocab_size, (n_items, scheme.context_width), generator=gen)
    for _ in range(length):
        logits = 3.0 * torch.randn(n_items, scheme.vocab_size, generator=gen)
        probs = torch.softmax(proc(ids, logits), dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], dim=1)
    return ids[:, scheme.context_width :].tolist()


@pytest.mark.parametrize("seeding,width,ratio", [("lefthash", 1, 0.25), ("selfhash", 2, 0.4)])
def test_watermarked_200_tokens_is_detected(seeding, width, ratio):
    s = HFKGWScheme(12345, vocab_size=300, seeding_scheme=seeding, context_width=width, greenlist_ratio=ratio)
    proc = s.logits_processor()
    assert (proc.greenlist_size, proc.hash_key, proc.context_width, proc.seeding_scheme) == (
        s.greenlist_size, 12345, width, seeding)
    text = seqs(sample_watermarked(s, 2, 200, seed=1))
    r = s.score(text)
    assert (r.n_scored >= 200 - width).all() and (r.p_value < 1e-6).all(), r.p_value
    other_key = HFKGWScheme(54321, vocab_size=300, seeding_scheme=seeding, context_width=width, greenlist_ratio=ratio)
    assert (other_key.score(text).p_value > 1e-4).all()


@pytest.mark.parametrize("width,ratio", [(1, 0.25), (2, 0.5)])
def test_human_p_values_flag_at_the_exact_rate(width, ratio):
    """i.i.d. uniform tokens: each lefthash target is green with probability exactly k / V, so the
    flag rate at alpha = 0.01 must match null_flag_prob within 6 standard errors."""
    vocab, n_items, alpha = 70, 4000, 0.01  # k / V = 17/70 or 35/70: the p-value must use k / V, not the ratio
    rng = np.random.default_rng(width)
    lengths = rng.integers(10, 80, n_items)
    items = [rng.integers(0, vocab, n).tolist() for n in lengths]
    s = HFKGWScheme(99, vocab_size=vocab, greenlist_ratio=ratio, context_width=width)
    r = s.score(seqs(items))
    for level in (alpha, 0.2, 0.5):  # the tail and the bulk
        rates = s.null_flag_prob(r.n_scored, level)
        assert (rates <= level).all() and rates.mean() > 0.4 * level
        se = np.sqrt((rates * (1 - rates)).sum()) / n_items
        assert abs((r.p_value <= level).mean() - rates.mean()) < 6 * se


def test_cache_reuses_and_stays_bounded(monkeypatch):
    s = HFKGWScheme(5, vocab_size=500)
    rng = np.random.default_rng(0)
    data = seqs([rng.integers(0, 500, 60).tolist() for _ in range(20)])
    first = s.score(data)
    assert len(s._cache) > 0
    np.testing.assert_array_equal(s.score(data).n_green, first.n_green)
    monkeypatch.setattr(hf_kgw, "_CACHE_MAX", 100)
    s2 = HFKGWScheme(5, vocab_size=500)
    np.testing.assert_array_equal(s2.score(data).n_green, first.n_green)
    assert len(s2._cache) <= 100


@pytest.mark.parametrize("walk_ok", [True, False])
def test_whole_green_lists_for_busy_seeds(monkeypatch, walk_ok):
    """A context followed by many targets gets one torch.randperm, kept for later calls; with the
    walk disagreeing with torch (a future torch), every decision comes from torch.randperm."""
    vocab = 2000
    monkeypatch.setitem(hf_kgw._MT_OK, (vocab, 500), walk_ok)
    s = HFKGWScheme(77, vocab_size=vocab)
    items = [[5, t] for t in range(0, vocab, 37)] + [[6, 1], [7, 2]]
    r = s.score(seqs(items))
    seeds = np.array([(77 * x[0]) % (2**64 - 1) for x in items], dtype=np.uint64)
    np.testing.assert_array_equal(r.n_green, green_pairs_torch(seeds, np.array([x[1] for x in items]), vocab, 500))
    assert set(s._lists) == ({77 * 5} if walk_ok else {77 * 5, 77 * 6, 77 * 7})
    assert len(s._cache) == (2 if walk_ok else 0)
    np.testing.assert_array_equal(s.score(seqs([[5, 3], [5, 4]])).n_green,
                                  green_pairs_torch(np.full(2, 77 * 5, np.uint64), np.array([3, 4]), vocab, 500))
    assert len(s._cache) == (2 if walk_ok else 0)  # answered from the kept green list


def test_built_from_a_spec():
    spec = parse_spec({"scheme": "hf-kgw", "key_file": "k.key", "seeding_scheme": "selfhash", "context_width": 2,
                       "flag_p_value": 0.001, "bos_token_id": 1})
    s = build(spec, 15485863, vocab_size=V)
    assert isinstance(s, HFKGWScheme) and s.flag_p_value == 0.001
    assert s.params()["seeding_scheme"] == "selfhash" and s.params()["vocab_size"] == V
    assert len(s.key_id) == 16 and "15485863" not in json.dumps(s.params())
    assert s.key_id != HFKGWScheme(15485864, vocab_size=V).key_id


@pytest.mark.slow
def test_live_generation_agrees():
    """SmolLM2-135M generates with transformers' watermark now; detector and scheme agree."""
    from transformers import WatermarkingConfig

    from collapselab.models.smollm2 import load_pretrained

    model, tokenizer = load_pretrained()
    for cfg in ref.KGW_CONFIGS.values():
        ids = ref.generate(model, tokenizer, WatermarkingConfig(**cfg), seed=7)
        r = scheme_for(cfg).score(seqs(ids))
        assert_matches(r, ref.kgw_reference(ids, cfg))
        assert (r.z > 2).mean() >= 0.75


@pytest.mark.parametrize("ignore", [False, True])
def test_p_value_counts_each_seed_and_target_decision_once(ignore):
    """lefthash with context 2 seeds on the last context token only, so the distinct trigrams
    (1,5,7) and (2,5,7) share one coin, (seed of 5, target 7): the p-value counts it once
    (``n_trials``), while ``n_scored`` and the z-score stay transformers' window counts."""
    from scipy import stats

    s = HFKGWScheme(15485863, vocab_size=V, context_width=2, ignore_repeated_ngrams=ignore)
    seqs = TokenSequences.from_lists([[1, 5, 7, 2, 5, 7, 1, 5, 7]])
    r = s.score(seqs)
    windows = [(1, 5, 7), (5, 7, 2), (7, 2, 5), (2, 5, 7), (5, 7, 1), (7, 1, 5), (1, 5, 7)]
    assert r.n_scored[0] == (len(set(windows)) if ignore else len(windows))
    decisions = sorted({(w[1], w[2]) for w in windows})  # (seed token, target)
    assert r.trials[0] == len(decisions) == 5 < r.n_scored[0]
    green = {d: bool(s.green(s.seeds(np.array([[0, *d]])), np.array([d[1]]))[0]) for d in decisions}
    hits = sum(green.values())
    assert r.p_value[0] == pytest.approx(stats.binom.sf(hits - 1, 5, s.green_share), rel=1e-12)
