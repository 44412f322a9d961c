"""Watermark detection's fast path (a radix sort by pair key) equals the reference path.

The reference is the sort of (pair, item) rows it replaced (still the path for pairs wider than
64 bits), and, on small inputs, the plain-Python definition. Scores are recorded in the docs and
watermarks already embedded must still be found, so the counts must be equal, not close.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapselab.corpus.sequences import TokenSequences
from collapselab.provenance import watermark as wmod
from collapselab.provenance.watermark import Watermark

KEY = bytes(range(7, 39))


def _corpus(rng: np.random.Generator, vocab: int, n_items: int, max_len: int, few: int | None = None) -> TokenSequences:
    """Random items; ``few``: draw from that many distinct ids (many repeated pairs)."""
    ids = rng.integers(0, vocab, size=few) if few else None
    items = []
    for n in rng.integers(0, max_len, size=n_items):
        items.append((ids[rng.integers(0, few, size=n)] if few else rng.integers(0, vocab, size=n)).tolist())
    return TokenSequences.from_lists(items)


def _reference(wm: Watermark, seqs: TokenSequences, pad, monkeypatch) -> wmod.Detection:
    with monkeypatch.context() as m:
        m.setattr(wmod, "_pair_keys", lambda columns: None)  # the path before issue 14
        return wm.detect(seqs, pad=pad)


def _plain(wm: Watermark, seqs: TokenSequences, pad) -> tuple[list[int], list[int]]:
    n_scored, n_green = [], []
    for doc in seqs.to_lists():
        stream = [pad] * wm.h + doc if pad is not None else doc
        seen = {(tuple(stream[i - wm.h : i]), stream[i]) for i in range(wm.h, len(stream))}
        n_scored.append(len(seen))
        n_green.append(sum(wm.green_reference(c, t) for c, t in seen))
    return n_scored, n_green


@pytest.mark.parametrize("vocab,h,pad,few", [
    (30, 1, 0, None), (28_022, 1, 0, None), (28_022, 1, None, 50), (49_152, 2, 0, 200),
    (2**20, 1, 3, None), (2**21, 3, None, 40), (2**24 - 1, 1, 0, 60), (5, 4, None, None),
])
def test_fast_counts_equal_the_reference_path(vocab, h, pad, few, monkeypatch):
    rng = np.random.default_rng(vocab % 997 + 13 * h)
    seqs = _corpus(rng, vocab, 400, 300, few)
    wm = Watermark(KEY, context_width=h)
    fast = wm.detect(seqs, pad=pad)
    ref = _reference(wm, seqs, pad, monkeypatch)
    assert np.array_equal(fast.n_scored, ref.n_scored) and np.array_equal(fast.n_green, ref.n_green)
    assert np.array_equal(fast.z, ref.z, equal_nan=True) and np.array_equal(fast.p_value, ref.p_value)
    assert fast.n_green.sum() > 0  # the check is not vacuous
    small = TokenSequences(seqs.tokens[: seqs.offsets[25]], seqs.offsets[:26])
    n_scored, n_green = _plain(wm, small, pad)
    d = wm.detect(small, pad=pad)
    assert d.n_scored.tolist() == n_scored and d.n_green.tolist() == n_green


def test_fast_counts_do_not_depend_on_chunking(monkeypatch):
    rng = np.random.default_rng(3)
    seqs = _corpus(rng, 1000, 300, 120, few=30)
    whole = Watermark(KEY).detect(seqs, pad=0)
    monkeypatch.setattr(wmod, "_CHUNK_TOKENS", 101)
    chunked = Watermark(KEY).detect(seqs, pad=0)
    assert np.array_equal(whole.n_scored, chunked.n_scored) and np.array_equal(whole.n_green, chunked.n_green)


@pytest.mark.parametrize("bits", [1, 15, 16, 17, 30, 48, 64])
def test_radix_order_is_the_stable_argsort(bits):
    rng = np.random.default_rng(bits)
    hi = (1 << bits) - 1
    key = rng.integers(0, hi, size=5000, dtype=np.uint64, endpoint=True)
    key[::7] = key[3]  # ties: stability matters
    assert np.array_equal(wmod._stable_order(key, bits), np.argsort(key, kind="stable"))
