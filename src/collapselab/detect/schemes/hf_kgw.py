"""``hf-kgw``: the green-list watermark transformers writes (``WatermarkingConfig``), detected exactly.

transformers' ``WatermarkLogitsProcessor`` (Kirchenbauer et al. 2023, the code of their
``lm-watermarking`` repository) adds ``bias`` to the logits of a *green list* of
``k = int(vocab_size * greenlist_ratio)`` token ids; ``WatermarkDetector`` counts green tokens.
This module computes the very same green decisions and scores, much faster (see *Speed*).

The green list, exactly as transformers computes it
---------------------------------------------------
``h`` is the hashing key (an int), ``c`` the context width, ``V`` the vocabulary size.

* ``seed``, for a target token ``x_j`` of an item ``x``:

  - ``lefthash`` (Algorithm 2): ``seed = (h * x_{j-1}) mod (2**64 - 1)`` in exact integers. Only
    the last context token counts, whatever ``c`` is (``c`` sets the n-gram window, see below).
  - ``selfhash`` (Algorithm 3): with ``T = torch.randperm(1_000_003)`` drawn from a generator
    seeded with ``h`` and ``a(x) = T[x mod 1_000_003] + 1``, the window is the ``c`` tokens
    ``x_{j-c+1} .. x_j`` (it ends with the target itself) and
    ``seed = min_i (h * a(x_i) * a(x_j))`` computed in int64 arithmetic that wraps modulo
    ``2**64`` (torch's; numpy's int64 wraps the same way; a key ``>= 2**63``, which transformers'
    selfhash refuses, is taken modulo ``2**64``), the minimum taken as signed int64,
    then ``seed mod (2**64 - 1)`` as a Python integer (so a negative minimum ``s`` becomes
    ``s + 2**64 - 1``).

* green list: ``torch.randperm(V, generator=torch.Generator().manual_seed(seed))[:k]``; the target
  is green when it is in it.

How a seed becomes a permutation (what the fast path reproduces): torch's CPU ``randperm`` is a
forward Fisher-Yates shuffle driven by the generator's MT19937 (seeded from the low 32 bits of
``seed``, standard ``init_genrand``): for ``i = 0 .. V-2``, ``z_i = r_i mod (V - i)`` with ``r_i``
the ``i``-th 32-bit output, swap positions ``i`` and ``i + z_i``. Positions ``< i`` never move
again after step ``i - 1``, so token ``t`` (starting at position ``t``) is green iff some step
``i < k`` puts it at position ``i``. That needs only the first ``k`` outputs and, per token, a walk:
``pos = t``; at each step ``i < k``: if ``i + z_i == pos`` the token lands at ``i`` (green); else if
``i == pos`` it moves to ``i + z_i``. :func:`green_pairs_mt` does that walk vectorised (numpy's
own MT19937 with its legacy seeding is the same generator); :func:`green_pairs_torch` calls
``torch.randperm`` itself. The first call in a process checks the walk against ``torch.randperm``
for the scheme's ``V`` and ``k`` (seeds above ``2**32`` included) and uses torch alone should they
ever differ (a future torch changing its ``randperm``).

Scoring, exactly as ``WatermarkDetector`` does
----------------------------------------------
* An item whose first token is ``bos_token_id`` loses that token (once; the detector strips a
  leading BOS the same way, though it decides for a whole padded batch at once).
* n-gram windows: ``lefthash`` scores every token with ``c`` tokens before it (windows of
  ``c + 1`` tokens, ``len - c`` of them); ``selfhash`` every token that ends a window of ``c``
  (``len - c + 1`` windows). An item needs ``len > c`` tokens (the detector's own
  ``ValueError``); shorter items score nothing.
* ``ignore_repeated_ngrams=False`` (the detector's default): every window counts, ``T`` windows
  with ``G`` green targets. ``True``: each distinct window of the item counts once.
* ``z = (G - r T) / sqrt(T r (1 - r))`` with ``r = greenlist_ratio`` (the detector's formula, its
  ``z_score``); ``score = z``.
* ``p_value``: the exact one-sided binomial tail ``P(Binomial(T', g) >= G')`` with
  ``g = k / V``, the true green share (``r`` rounded down to whole tokens), over the item's
  ``T'`` *distinct (seed, target) decisions*, ``G'`` of them green (``n_trials``). Under a random
  key each distinct decision is an independent coin, but two windows with the same seed and target
  share one: selfhash's seed is a minimum over the window and lefthash's with ``c > 1`` uses only
  the last context token, so distinct n-grams can repeat a decision, and counting them twice
  (transformers' ``T``) over-disperses human text's counts; measured on 4,014 SOTU documents of
  200 tokens, selfhash flagged 1.27% at p <= 0.01 against an expected 0.80% when the p-value
  counted windows (``bench/watermark_robustness.py``). The detector's own p-value is the normal
  tail of ``z``, too small for short texts.
* Items that score nothing: ``n_scored = 0``, ``n_green = 0``, ``score = 0.0``, ``z = NaN``,
  ``p_value = 1.0``.

Speed
-----
``WatermarkDetector`` draws a full ``randperm(V)`` for every window of every item (its
``lru_cache`` keys on fresh tensors and never hits): 0.2-0.7 ms per window for ``V = 49152``.
Here a batch's distinct ``(seed, target)`` pairs are decided once and remembered across calls
(bounded caches): a seed asked about many targets gets one ``torch.randperm`` and its whole green
list is kept, the others the walk above (only ``k`` generator outputs, no shuffle; about a third of
a ``randperm``'s time), kept per pair. ``lefthash`` seeds repeat a lot (one per
distinct previous token), ``selfhash`` windows rarely do. ``bench/bench_schemes_hf.py`` measures
5-15x on a fresh scheme (more as contexts repeat) and 250x+ once the caches hold the contexts; a
new (seed, target) pair cannot cost less than the ``k`` generator outputs it depends on.
"""

from __future__ import annotations

import json

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.detect.schemes.base import Scheme, SchemeScores, binomial_flag_prob, key_digest
from collapselab.extras import require, require_torch

U64_MOD = 2**64 - 1  # transformers reduces seeds modulo this
TABLE_SIZE = 1_000_003  # selfhash's fixed table
_TORCH_PER_SEED = 8  # a seed asked about this many targets or more gets a full torch.randperm
_BLOCK = 64  # seeds per vectorised walk block
_CACHE_MAX = 1 << 20  # (seed, target) decisions remembered across calls
_LISTS_BYTES = 32 << 20  # whole green lists (bit-packed) remembered across calls
_MT_OK: dict[tuple[int, int], bool] = {}  # (V, k) -> the walk agrees with torch.randperm


# ---------------------------------------------------------------------------------- green lists
def green_list_torch(seed: int, vocab_size: int, k: int) -> np.ndarray:
    """The green list of ``seed`` as a boolean mask over the vocabulary, with torch itself."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(int(seed))
    mask = np.zeros(vocab_size, dtype=bool)
    mask[torch.randperm(vocab_size, generator=gen)[:k].numpy()] = True
    return mask


def green_pairs_torch(seeds: np.ndarray, tokens: np.ndarray, vocab_size: int, k: int) -> np.ndarray:
    """``tokens[i] in randperm(V, seeded seeds[i])[:k]``, with torch itself: one ``randperm`` per
    distinct seed (the definition)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    out = np.zeros(len(seeds), dtype=bool)
    uniq, inv = np.unique(seeds, return_inverse=True)
    for u, seed in enumerate(uniq.tolist()):
        idx = np.flatnonzero(inv.reshape(-1) == u)
        out[idx] = green_list_torch(seed, vocab_size, k)[tokens[idx]]
    return out


def green_pairs_mt(seeds: np.ndarray, tokens: np.ndarray, vocab_size: int, k: int) -> np.ndarray:
    """The same decisions by the Fisher-Yates walk (module docstring), vectorised over pairs; each
    distinct seed's generator outputs are drawn once."""
    tokens = np.asarray(tokens, dtype=np.int64)
    uniq, inv = np.unique(np.asarray(seeds, dtype=np.uint64), return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")  # pairs grouped by seed
    bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + _BLOCK, _BLOCK))
    out = np.zeros(len(tokens), dtype=bool)
    mt = np.random.MT19937(0)
    steps = np.arange(k, dtype=np.float64)
    width = vocab_size - steps  # V - i
    for b, lo in enumerate(range(0, len(uniq), _BLOCK)):
        block = uniq[lo : lo + _BLOCK]
        raw = np.empty((len(block), k), dtype=np.float64)
        for row, seed in enumerate((block & np.uint64(0xFFFFFFFF)).tolist()):
            mt._legacy_seeding(seed)
            raw[row] = mt.random_raw(k)
        # target[i] = i + (r_i mod (V - i)); exact in float64 since r_i < 2**32
        q = np.floor(raw / width)
        target = raw - q * width + steps
        pairs = order[bounds[b] : bounds[b + 1]]
        out[pairs] = _walk(target, inv[pairs] - lo, tokens[pairs].astype(np.float64), k)
    return out


def _walk(target: np.ndarray, row_of: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    """Per pair (a row of ``target``, a token starting at ``pos``): does the token land at some
    position ``i < k``?"""
    n = len(pos)
    green = np.zeros(n, dtype=bool)
    rows = np.arange(n)
    start = np.zeros(n, dtype=np.int64)
    cols = np.arange(k)
    while len(rows):
        hit = (target[row_of[rows]] == pos[rows, None]) & (cols >= start[rows, None])
        first = hit.argmax(axis=1)
        found = hit[np.arange(len(rows)), first]
        green[rows[found]] = True
        rows = rows[~found]
        moves = pos[rows] < k  # the token reaches step pos and moves to target[pos]
        rows = rows[moves]
        at = pos[rows].astype(np.int64)
        start[rows] = at + 1
        pos[rows] = target[row_of[rows], at]
    return green


def _mt_matches_torch(vocab_size: int, k: int) -> bool:
    """Once per (V, k) and process: the walk against ``torch.randperm`` itself."""
    key = (vocab_size, k)
    if key not in _MT_OK:
        rng = np.random.default_rng(vocab_size)
        seeds = np.array([0, 15485863 * 7, 2**32 + 5, 2**64 - 2, 123456789], dtype=np.uint64).repeat(16)
        tokens = rng.integers(0, vocab_size, len(seeds))
        tokens[:4] = [0, k - 1, min(k, vocab_size - 1), vocab_size - 1]
        _MT_OK[key] = bool(np.array_equal(green_pairs_mt(seeds, tokens, vocab_size, k),
                                          green_pairs_torch(seeds, tokens, vocab_size, k)))
    return _MT_OK[key]


def selfhash_table(hashing_key: int) -> np.ndarray:
    """``torch.randperm(1_000_003)`` from a generator seeded with the hashing key (int64)."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(hashing_key)
    return torch.randperm(TABLE_SIZE, generator=gen).numpy().astype(np.int64)


def _as_int64(x: int) -> np.int64:
    """``x`` modulo ``2**64`` as a signed int64 (the value torch's int64 arithmetic wraps to)."""
    x %= 2**64
    return np.int64(x - 2**64 if x >= 2**63 else x)


# ---------------------------------------------------------------------------------------- scheme
class HFKGWScheme(Scheme):
    """transformers' KGW watermark (``WatermarkingConfig``); see the module docstring."""

    name = "hf-kgw"

    def __init__(self, hashing_key: int, *, vocab_size: int, greenlist_ratio: float = 0.25, bias: float = 2.0,
                 seeding_scheme: str = "lefthash", context_width: int = 1, ignore_repeated_ngrams: bool = False,
                 bos_token_id: int | None = None) -> None:
        if seeding_scheme not in ("lefthash", "selfhash"):
            raise ValueError(f"seeding_scheme must be 'lefthash' or 'selfhash', not {seeding_scheme!r}")
        if not 0.0 < greenlist_ratio < 1.0:
            raise ValueError(f"greenlist_ratio must lie in (0, 1), not {greenlist_ratio}")
        if context_width < 1 or vocab_size is None or vocab_size < 2:
            raise ValueError("context_width must be >= 1 and vocab_size >= 2")
        self.hashing_key = int(hashing_key)
        self.vocab_size = int(vocab_size)
        self.greenlist_ratio = float(greenlist_ratio)
        self.bias = float(bias)
        self.seeding_scheme = seeding_scheme
        self.context_width = int(context_width)
        self.ignore_repeated_ngrams = bool(ignore_repeated_ngrams)
        self.bos_token_id = bos_token_id
        self.greenlist_size = int(self.vocab_size * self.greenlist_ratio)
        self.green_share = self.greenlist_size / self.vocab_size  # the exact null rate g
        self._table: np.ndarray | None = None
        self._cache: dict[tuple[int, int], bool] = {}  # (seed, target) -> green, from walks
        self._lists: dict[int, np.ndarray] = {}  # seed -> its whole green list, bit-packed

    @property
    def key_id(self) -> str:
        return key_digest(self.name, json.dumps(self.hashing_key).encode("ascii"))

    def params(self) -> dict:
        return {"scheme": self.name, "vocab_size": self.vocab_size, "greenlist_ratio": self.greenlist_ratio,
                "bias": self.bias, "seeding_scheme": self.seeding_scheme, "context_width": self.context_width,
                "ignore_repeated_ngrams": self.ignore_repeated_ngrams, "bos_token_id": self.bos_token_id}

    def logits_processor(self):
        """transformers' own ``WatermarkLogitsProcessor``, configured identically (CPU)."""
        require(("transformers",), "smollm2", "the hf-kgw logits processor")
        require_torch("the hf-kgw logits processor")
        from transformers.generation.logits_process import WatermarkLogitsProcessor

        return WatermarkLogitsProcessor(vocab_size=self.vocab_size, device="cpu", greenlist_ratio=self.greenlist_ratio,
                                        bias=self.bias, hashing_key=self.hashing_key,
                                        seeding_scheme=self.seeding_scheme, context_width=self.context_width)

    # ------------------------------------------------------------------------------- scoring
    def windows(self, seqs: TokenSequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every scored window: (item index, n-gram matrix (one window a row), target position).

        The n-gram is what the detector counts (``c + 1`` tokens for lefthash, ``c`` for
        selfhash); its last column is the target."""
        tokens = seqs.tokens
        if seqs.n_tokens and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        starts, ends = seqs.offsets[:-1].copy(), seqs.offsets[1:]
        if self.bos_token_id is not None:
            nonempty = ends > starts
            starts[nonempty] += tokens[starts[nonempty]] == self.bos_token_id
        c = self.context_width
        n = c if self.seeding_scheme == "selfhash" else c + 1
        counts = np.where(ends - starts > c, ends - starts - n + 1, 0)  # windows per item
        item = np.repeat(np.arange(len(seqs)), counts)
        first = np.repeat(starts + n - 1 - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        target = first + np.arange(len(item))  # position of each window's last token
        ngrams = tokens[target[:, None] + np.arange(-n + 1, 1)].astype(np.int64)
        return item, ngrams, target

    def seeds(self, ngrams: np.ndarray) -> np.ndarray:
        """The seed of each window (uint64), as ``WatermarkLogitsProcessor.set_seed`` computes it."""
        if self.seeding_scheme == "lefthash":
            prev, inv = np.unique(ngrams[:, -2], return_inverse=True)
            seed = np.array([(self.hashing_key * p) % U64_MOD for p in prev.tolist()], dtype=np.uint64)
            return seed[inv.reshape(-1)]
        if self._table is None:
            require_torch("the hf-kgw scheme (selfhash)")
            self._table = selfhash_table(self.hashing_key)
        a = self._table[ngrams % TABLE_SIZE] + 1
        prod = _as_int64(self.hashing_key) * a * a[:, -1:]  # wraps modulo 2**64, as torch's int64 does
        low = prod.min(axis=1)
        # Python's (low mod 2**64 - 1): unchanged when >= 0, else low + 2**64 - 1
        return np.where(low < 0, low.view(np.uint64) - np.uint64(1), low.view(np.uint64))

    def green(self, seeds: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether each target is in its seed's green list. Distinct (seed, target) pairs are decided
        once; a seed with many undecided targets gets its whole green list (``torch.randperm``, kept
        bit-packed for later calls), the others the walk (its answers kept per pair). Both caches
        are bounded: past their size the older half is dropped."""
        require_torch("the hf-kgw scheme")
        if not len(seeds) or self.greenlist_size == 0:  # int(V * ratio) can be 0: nothing is green
            return np.zeros(len(seeds), dtype=bool)
        pairs = np.stack([seeds.astype(np.uint64), targets.astype(np.uint64)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)  # sorted by seed, then target
        useed, utok = uniq[:, 0], uniq[:, 1].astype(np.int64)
        known = np.full(len(uniq), 2, dtype=np.int8)  # 2: not decided yet
        starts = np.flatnonzero(np.concatenate([[True], useed[1:] != useed[:-1]]))
        ends = np.append(starts[1:], len(uniq))
        for a, b, seed in zip(starts.tolist(), ends.tolist(), useed[starts].tolist()):
            packed = self._lists.get(seed)
            if packed is not None:
                t = utok[a:b]
                known[a:b] = (packed[t >> 3] >> (7 - (t & 7))) & 1
        rest = np.flatnonzero(known == 2)
        keys = list(zip(useed[rest].tolist(), utok[rest].tolist()))
        known[rest] = [self._cache.get(key, 2) for key in keys]
        todo = rest[known[rest] == 2]
        if len(todo):
            known[todo] = self._decide(useed[todo], utok[todo])
        return known.astype(bool)[inv.reshape(-1)]

    def _decide(self, seeds: np.ndarray, targets: np.ndarray) -> np.ndarray:
        V, k = self.vocab_size, self.greenlist_size
        out = np.empty(len(seeds), dtype=bool)
        uniq, inv, per_seed = np.unique(seeds, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        exact_only = not _mt_matches_torch(V, k)
        whole = np.flatnonzero((per_seed >= _TORCH_PER_SEED) | exact_only)
        order = np.argsort(inv, kind="stable")  # pairs grouped by seed
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        for u in whole.tolist():  # whole green lists, remembered
            mask = green_list_torch(int(uniq[u]), V, k)
            idx = order[bounds[u] : bounds[u + 1]]
            out[idx] = mask[targets[idx]]
            self._lists[int(uniq[u])] = np.packbits(mask)
        if len(self._lists) * (V // 8 + 1) > _LISTS_BYTES:
            self._lists = dict(list(self._lists.items())[len(self._lists) // 2 :])
        walk = ~np.isin(inv, whole)
        out[walk] = green_pairs_mt(seeds[walk], targets[walk], V, k)
        self._cache.update(zip(zip(seeds[walk].tolist(), targets[walk].tolist()), out[walk].tolist()))
        if len(self._cache) > _CACHE_MAX:  # keep the newest half
            self._cache = dict(list(self._cache.items())[-(_CACHE_MAX // 2) :])
        return out

    def score(self, seqs: TokenSequences) -> SchemeScores:
        item, ngrams, _ = self.windows(seqs)
        seeds = self.seeds(ngrams)
        is_green = self.green(seeds, ngrams[:, -1])
        n = len(seqs)
        # the p-value's independent draws: each distinct (seed, token) decision once per item (two
        # windows with one seed and one target share their coin, whatever transformers counts)
        if len(item):
            _, first = np.unique(np.stack([item.astype(np.uint64), seeds, ngrams[:, -1].astype(np.uint64)], axis=1),
                                 axis=0, return_index=True)
        else:
            first = np.zeros(0, dtype=np.int64)
        trials = np.bincount(item[first], minlength=n).astype(np.int64)
        hits = np.bincount(item[first], weights=is_green[first], minlength=n).astype(np.int64)
        if self.ignore_repeated_ngrams and len(item):
            rows = np.concatenate([item[:, None], ngrams], axis=1)
            _, keep = np.unique(rows, axis=0, return_index=True)
            item, is_green = item[keep], is_green[keep]
        T = np.bincount(item, minlength=n).astype(np.int64)
        G = np.bincount(item, weights=is_green, minlength=n).astype(np.int64)
        r = self.greenlist_ratio
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (G - r * T) / np.sqrt(T * r * (1 - r))
        z = np.where(T > 0, z, np.nan)
        from scipy import stats

        p = np.where(trials > 0, stats.binom.sf(hits - 1, np.maximum(trials, 1), self.green_share), 1.0)
        return SchemeScores(T, np.where(T > 0, z, 0.0), z, np.clip(p, 0.0, 1.0), G, trials)

    def null_flag_prob(self, n_scored: np.ndarray, alpha: float) -> np.ndarray:
        return binomial_flag_prob(n_scored, self.green_share, alpha)
