"""synthid: exact agreement with transformers' SynthID processor (g-values, repetition and EOS masks)
and detector_mean.py's scores; the p-values' calibration and the saddlepoint's accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

import make_hf_scheme_fixtures as ref  # noqa: E402

from collapselab.corpus.sequences import TokenSequences  # noqa: E402
from collapselab.detect.schemes import build, parse_spec  # noqa: E402
from collapselab.detect.schemes.synthid import SynthIDScheme, sampling_table, weighted_tail  # noqa: E402

FIXTURES = ref.load()
V, EOS = FIXTURES["vocab_size"], FIXTURES["eos_token_id"]
CFG = FIXTURES["synthid"]["config"]
TIGHT = dict(rtol=1e-9, atol=1e-9)


def scheme_for(cfg: dict = CFG, **kw) -> SynthIDScheme:
    cfg = dict(cfg)
    keys = kw.pop("keys", cfg.pop("keys"))
    kw.setdefault("vocab_size", V)
    kw.setdefault("eos_token_id", EOS)
    return SynthIDScheme(keys, **{**cfg, **kw})


def seqs(items) -> TokenSequences:
    return TokenSequences.from_lists([list(map(int, x)) for x in items])


def assert_matches(scheme_kw: dict, items, reference: list[dict]) -> None:
    for statistic in ("mean", "weighted_mean"):
        s = scheme_for(**scheme_kw, statistic=statistic).score(seqs(items))
        n = np.array([r["n_scored"] for r in reference])
        np.testing.assert_array_equal(s.n_scored, n)
        want = np.array([r[statistic] for r in reference])
        np.testing.assert_allclose(s.score[n > 0], want[n > 0], **TIGHT)
        assert (s.score[n == 0] == 0).all() and (s.p_value[n == 0] == 1).all() and np.isnan(s.z[n == 0]).all()


def test_agrees_with_the_reference_on_smollm2_text():
    fx = FIXTURES["synthid"]
    assert_matches({}, fx["ids"], fx["reference"]["watermarked"])
    assert_matches({}, FIXTURES["human"], fx["reference"]["human"])
    wm, human = scheme_for().score(seqs(fx["ids"])), scheme_for().score(seqs(FIXTURES["human"]))
    assert wm.p_value.max() < 1e-4 and human.p_value.min() > 1e-3


def test_agrees_with_the_reference_live():
    items = FIXTURES["synthid"]["ids"][:4] + FIXTURES["human"][:4]
    assert_matches({}, items, ref.synthid_reference(items, CFG))


@pytest.mark.parametrize("history", [1, 3, 1024])
@pytest.mark.parametrize("eos", [None, 2])
def test_repetition_and_eos_masks(history, eos):
    """A 4-letter alphabet repeats contexts all the time; token 2 doubles as EOS."""
    rng = np.random.default_rng(history)
    items = [rng.integers(0, 3, n).tolist() for n in (3, 4, 5, 9, 30, 60, 60)]
    items[4][:3] = [5, 6, 7]  # no EOS at the start of one item
    cfg = {**CFG, "ngram_len": 3, "context_history_size": history}
    reference = ref.synthid_reference(items, cfg, eos_token_id=eos)
    assert_matches({"ngram_len": 3, "context_history_size": history, "eos_token_id": eos}, items, reference)
    n_scored = sum(r["n_scored"] for r in reference)
    assert n_scored < sum(max(len(x) - 2, 0) for x in items) - (20 if history > 1 or eos else 0)  # masks did something


@pytest.mark.parametrize("table_size", [2**16, 1000])
def test_table_sizes(table_size):
    """A power-of-two table is indexed with a mask, any other size with floor modulo."""
    items = FIXTURES["human"][:3]
    cfg = {**CFG, "sampling_table_size": table_size}
    assert_matches({"sampling_table_size": table_size}, items, ref.synthid_reference(items, cfg))


def test_large_keys_wrap_like_torch():
    keys = [2**63 - 1, 2**62 + 3, 0, 1]
    items = FIXTURES["human"][:3]
    assert_matches({"keys": keys}, items, ref.synthid_reference(items, {**CFG, "keys": keys}))


def test_short_items_and_bad_ids():
    s = scheme_for()
    r = s.score(seqs([[], [5] * 4, [5, 6, 7, 8, 9]]))
    np.testing.assert_array_equal(r.n_scored, [0, 0, 1])
    assert r.score[0] == 0 and np.isnan(r.z[:2]).all() and (r.p_value[:2] == 1).all()
    for bad in ([1, 2, V], [3, -1]):
        with pytest.raises(ValueError, match="token ids"):
            s.score(seqs([bad]))
    with pytest.raises(ValueError):
        SynthIDScheme([], vocab_size=V)
    with pytest.raises(ValueError):
        SynthIDScheme([1], vocab_size=V, statistic="median")


def test_sampling_table_is_transformers():
    proc = scheme_for().logits_processor()
    np.testing.assert_array_equal(sampling_table(2**16, 0), proc.sampling_table.numpy())
    assert proc.ngram_len == 5 and proc.keys.tolist() == CFG["keys"] and proc.context_history_size == 1024
    assert abs(scheme_for().p1 - 0.5) < 0.01


def sample_watermarked(scheme: SynthIDScheme, n_items: int, length: int, seed: int) -> list[list[int]]:
    """Text from transformers' own processor over random logits (a stand-in for a model)."""
    proc = scheme.logits_processor()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, scheme.vocab_size, (n_items, 1), generator=gen)
    for _ in range(length):
        logits = 3.0 * torch.randn(n_items, scheme.vocab_size, generator=gen)
        probs = torch.exp(proc(ids, logits))
        ids = torch.cat([ids, torch.multinomial(probs / probs.sum(1, keepdim=True), 1, generator=gen)], dim=1)
    return ids[:, 1:].tolist()


@pytest.mark.parametrize("statistic", ["mean", "weighted_mean"])
def test_watermarked_200_tokens_is_detected(statistic):
    s = SynthIDScheme(CFG["keys"], vocab_size=300, statistic=statistic)
    text = seqs(sample_watermarked(s, 4, 200, seed=2))
    r = s.score(text)
    assert (r.n_scored > 150).all() and (r.p_value < 1e-6).all(), r.p_value
    other = SynthIDScheme([k + 1 for k in CFG["keys"]], vocab_size=300, statistic=statistic)
    assert (other.score(text).p_value > 1e-4).all()


@pytest.mark.parametrize("statistic", ["mean", "weighted_mean"])
def test_human_p_values_are_calibrated(statistic):
    """Uniform random ids (contexts almost never repeat): the flag rate at several levels is the
    exact rate (mean) or the level (weighted mean, saddlepoint) within 6 standard errors."""
    n_items = 20000
    rng = np.random.default_rng(11)
    lengths = rng.integers(10, 60, n_items)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    data = TokenSequences(rng.integers(0, 5000, offsets[-1]), offsets)
    s = SynthIDScheme(CFG["keys"], vocab_size=5000, statistic=statistic)
    r = s.score(data)
    assert (r.n_scored == lengths - 4).mean() > 0.99
    for level in (0.01, 0.1, 0.5):
        rates = s.null_flag_prob(r.n_scored, level)
        se = np.sqrt((rates * (1 - rates)).sum()) / n_items
        assert rates.mean() > 0.4 * level
        assert abs((r.p_value <= level).mean() - rates.mean()) < 6 * se, (level, (r.p_value <= level).mean())
    assert abs(np.nanmean(r.z)) < 0.05 and abs(np.nanstd(r.z) - 1) < 0.05


def exact_weighted_tail(n: int, depth: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """P(sum_d w_d B_d >= x) exactly: (D - 1) w_d are integers up to a common factor, so the law is a
    convolution of scaled binomials on an integer lattice. Returns (x per lattice point, tail)."""
    c = 10 * (depth - 1) - 9 * np.arange(depth)  # linspace(10, 1, D) * (D - 1)
    pmf = np.array([1.0])
    for cd in c:
        comp = np.zeros(n * cd + 1)
        comp[::cd] = stats.binom.pmf(np.arange(n + 1), n, p)
        pmf = np.convolve(pmf, comp)
    tail = pmf[::-1].cumsum()[::-1]
    return np.arange(len(tail)) * depth / c.sum(), tail


@pytest.mark.parametrize("n,depth", [(30, 4), (20, 9), (60, 9), (10, 30), (100, 2)])
def test_saddlepoint_tail_accuracy(n, depth):
    p = 0.5007
    x, tail = exact_weighted_tail(n, depth, p)
    s = SynthIDScheme(list(range(depth)), vocab_size=10)
    w = s.weights
    atom = np.concatenate([tail[:-1] > tail[1:], [True]])  # reachable values only
    sel = atom & (tail > 1e-10) & (tail < 0.5)
    approx = weighted_tail(x[sel], np.full(sel.sum(), n), w, p, step=s.lattice_step)
    assert np.abs(approx / tail[sel] - 1).max() < 0.01
    assert np.abs(weighted_tail(x[sel], np.full(sel.sum(), n), w, p) / tail[sel] - 1).max() > 0.0015  # it matters
    np.testing.assert_allclose(weighted_tail(np.array([0.0, n * depth]), np.array([n, n]), w, p), [1.0, p ** (n * depth)],
                               rtol=1e-12)


def test_built_from_a_spec():
    spec = parse_spec({"scheme": "synthid", "key_file": "k.key", "ngram_len": 4, "statistic": "mean"})
    s = build(spec, CFG["keys"], vocab_size=V)
    assert isinstance(s, SynthIDScheme) and s.ngram_len == 4 and s.flag_p_value == 0.01
    assert s.params()["statistic"] == "mean" and "keys" not in s.params()
    assert len(s.key_id) == 16 and s.key_id != SynthIDScheme(CFG["keys"][::-1], vocab_size=V).key_id


@pytest.mark.slow
def test_live_generation_agrees():
    from transformers import SynthIDTextWatermarkingConfig

    from collapselab.models.smollm2 import load_pretrained

    model, tokenizer = load_pretrained()
    ids = ref.generate(model, tokenizer, SynthIDTextWatermarkingConfig(**CFG), seed=9)
    assert_matches({}, ids, ref.synthid_reference(ids, CFG))
    assert (scheme_for().score(seqs(ids)).p_value < 1e-3).mean() >= 0.75
