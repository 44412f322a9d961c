"""A keyed green-list text watermark (Kirchenbauer et al. 2023, "KGW") over integer token ids.

The scheme
----------
With a secret key, every pair (previous ``h`` tokens, candidate token) is *green* or not; a share
``gamma`` of all pairs is green. A watermarking sampler adds ``delta`` to the logits of green
candidates, so watermarked text holds more green tokens than the ``gamma`` expected of text written
without the key. The detector counts green tokens ``G`` among the ``T`` scored ones and reports
``z = (G - gamma T) / sqrt(T gamma (1 - gamma))`` and the exact one-sided binomial p-value
``P(Binomial(T, gamma) >= G)``.

The green decision, exactly
---------------------------
* Key: ``key`` is secret bytes, at least 16 (128 bits). Longer than 64 bytes (the BLAKE2b key
  limit) is first hashed to 64 bytes with BLAKE2b.
* Key derivation (cryptographic, keyed BLAKE2b)::

      k = BLAKE2b(key=key, digest_size=16, data=b"collapselab watermark v1 / SipHash-2-4 key")

  and ``key_id = BLAKE2b(key=key, digest_size=8, data=b"collapselab watermark v1 / key id")``
  in hex: a public name for the key (a ledger can record it) that reveals nothing about it.
* Message: the ``h`` context tokens, oldest first, then the candidate token, each written as 3
  little-endian bytes (ids must be in ``[0, 2**24)``), so ``3 (h + 1)`` bytes.
* Pseudo-random function (cryptographic): ``r = SipHash-2-4(k, message)``, a 64-bit integer
  (Aumasson & Bernstein 2012: a keyed PRF for short inputs with a 128-bit key; the one behind
  Python's, Rust's and the Linux kernel's hash tables).
* Green: ``r < floor(gamma * 2**64)``. Green lists for the same key are nested in ``gamma``.

:meth:`Watermark.green_reference` is this definition in plain Python, byte by byte; the numpy code
computes the very same integers (tested against it and against SipHash's published test vectors).
Only integer operations are involved, so detection is identical on every machine and device.

Why SipHash rather than BLAKE2 per pair, or a 64-bit mixer
----------------------------------------------------------
BLAKE2 through ``hashlib`` costs about a microsecond per call, far too slow to score a corpus one
pair at a time, and numpy cannot run BLAKE2's 12 rounds over 16 words quickly. A keyed 64-bit
mixer (splitmix64's finaliser over ``secret ^ pair``) runs at about 10x SipHash's speed here but
is no PRF: it is an invertible public map after one XOR with a 64-bit secret, so the green bits of
a few hundred known pairs pin the secret down by a 2**64 search at most, and its algebraic
structure likely allows much less. SipHash-2-4 keeps a 128-bit key and is vectorised here with
64-bit lane arithmetic at about ten million pairs per second per core; since detection evaluates
it once per distinct pair, and sorting to find repeated pairs costs more, it makes detection only
about 1.3x slower than the mixer would (see ``docs/watermark.md``).

Limits of the security argument: (1) SipHash-2-4 is a widely analysed PRF with no known attack
better than brute force on its 128-bit key, but it is not a NIST standard and its output is
64 bits (irrelevant here: only one bit per pair is used). (2) The PRF protects the *key*, not the
green lists: anyone who sees enough watermarked text can estimate the green list of frequent
contexts by counting ("watermark stealing", Jovanovic et al. 2024), more easily for small ``h``,
and then spoof or scrub the watermark without the key. (3) Paraphrasing and token edits remove the
signal gradually (``docs/watermark.md`` measures random replacement).

Detection conventions
---------------------
* An item's first ``h`` tokens have no full context and are not scored, unless ``pad`` is given:
  then every item is treated as preceded by ``h`` copies of ``pad`` (the sampler's start context,
  e.g. the n-gram model's ``<s>`` id 0) and all its tokens are scored.
* A (context, token) pair repeated inside one item is scored once (KGW's
  ``ignore_repeated_ngrams``): repeats are not independent draws.
* One call scores a whole corpus (:class:`~collapselab.corpus.sequences.TokenSequences`) and
  returns arrays with one entry per item; a 1-D token array is one item and gives scalars.
* :meth:`Watermark.detect_windows` looks for watermarked spans inside longer human documents: the
  highest z over sliding windows. Those maxima are *not* z-scores of a single test and their
  normal tail is not a p-value: set the threshold from max-z on human text of the same lengths.

Embedding
---------
:meth:`Watermark.bias` gives the logit bias (``delta`` for green, 0 else) for samplers that hold
logits. :meth:`Watermark.sample` embeds without logits: it draws from any sampler's distribution
``p`` and keeps a draw if it is green, else with probability ``exp(-delta)``, redrawing the rest.
That samples exactly ``p(w) exp(delta * green(w)) / Z``, the biased softmax, while evaluating the
PRF only for drawn tokens (about ``e**delta / Z <= e**delta`` draws per token; 2.6 on average at
``gamma=0.25, delta=2`` for high-entropy text).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError

MIN_KEY_BYTES = 16
ID_BYTES = 3  # bytes per token id in the PRF message
MAX_ID = 2 ** (8 * ID_BYTES)  # ids must be below this
_DOMAIN = b"collapselab watermark v1 / "
_CHUNK_TOKENS = 1 << 18  # detection works on runs of whole items of about this many tokens (larger runs
# share more pairs between items, so fewer PRF calls; the radix sort stays linear: 1 << 16 was 15-35% slower)
_PRF_CHUNK = 1 << 14  # SipHash lanes per numpy pass: keeps the state arrays in cache


class WatermarkError(UserError, ValueError):
    """Bad watermark input (a short key, out-of-range ids): a ``ValueError`` and a ``UserError``."""


def new_key() -> bytes:
    """A fresh random 256-bit key (``secrets.token_bytes(32)``). Keep it secret; never log it."""
    return secrets.token_bytes(32)


# ---------------------------------------------------------------------------------------------
# SipHash-2-4: the byte-level reference, and the same function over numpy uint64 lanes
# ---------------------------------------------------------------------------------------------
_IV = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
_MASK64 = (1 << 64) - 1


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under a 16-byte ``key``, in plain Python (the specification)."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v = [k0 ^ _IV[0], k1 ^ _IV[1], k0 ^ _IV[2], k1 ^ _IV[3]]

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _MASK64

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _MASK64; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)  # noqa: E702
            v[2] = (v[2] + v[3]) & _MASK64; v[3] = rotl(v[3], 16) ^ v[2]  # noqa: E702
            v[0] = (v[0] + v[3]) & _MASK64; v[3] = rotl(v[3], 21) ^ v[0]  # noqa: E702
            v[2] = (v[2] + v[1]) & _MASK64; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)  # noqa: E702

    n_full = len(data) // 8
    blocks = [int.from_bytes(data[8 * i : 8 * i + 8], "little") for i in range(n_full)]
    blocks.append(int.from_bytes(data[8 * n_full :], "little") | ((len(data) & 0xFF) << 56))
    for m in blocks:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _rotl(x: np.ndarray, r: int, tmp: np.ndarray) -> None:
    np.right_shift(x, np.uint64(64 - r), out=tmp)
    np.left_shift(x, np.uint64(r), out=x)
    x |= tmp


def _sipround(v0, v1, v2, v3, tmp) -> None:
    v0 += v1; _rotl(v1, 13, tmp); v1 ^= v0; _rotl(v0, 32, tmp)  # noqa: E702
    v2 += v3; _rotl(v3, 16, tmp); v3 ^= v2  # noqa: E702
    v0 += v3; _rotl(v3, 21, tmp); v3 ^= v0  # noqa: E702
    v2 += v1; _rotl(v1, 17, tmp); v1 ^= v2; _rotl(v2, 32, tmp)  # noqa: E702


def siphash24_blocks(k0: int, k1: int, blocks: Sequence[np.ndarray]) -> np.ndarray:
    """SipHash-2-4 of many equal-length messages given as their 64-bit little-endian blocks.

    ``blocks[i][j]`` is block ``i`` of message ``j``; the last block already holds the message's
    trailing bytes and its length in the top byte, as the algorithm defines it. Integer overflow
    wraps (numpy array arithmetic), as SipHash's additions modulo 2**64 require.
    """
    n = len(blocks[0])
    out = np.empty(n, dtype=np.uint64)
    size = min(n, _PRF_CHUNK)
    v0, v1, v2, v3, tmp = (np.empty(size, dtype=np.uint64) for _ in range(5))
    init = (k0 ^ _IV[0], k1 ^ _IV[1], k0 ^ _IV[2], k1 ^ _IV[3])
    for lo in range(0, n, _PRF_CHUNK):
        m = min(_PRF_CHUNK, n - lo)
        s = [v0[:m], v1[:m], v2[:m], v3[:m]]
        t = tmp[:m]
        for lane, value in zip(s, init):
            lane.fill(value)
        for b in blocks:
            blk = b[lo : lo + m]
            s[3] ^= blk
            _sipround(*s, t)
            _sipround(*s, t)
            s[0] ^= blk
        s[2] ^= np.uint64(0xFF)
        for _ in range(4):
            _sipround(*s, t)
        np.bitwise_xor(s[0], s[1], out=out[lo : lo + m])
        out[lo : lo + m] ^= s[2]
        out[lo : lo + m] ^= s[3]
    return out


def message_blocks(columns: Sequence[np.ndarray]) -> list[np.ndarray]:
    """SipHash blocks of the messages ``id_0 || id_1 || ...``, each id as 3 little-endian bytes.

    ``columns[i]`` holds id ``i`` of every message (uint64, all below ``2**24``).
    """
    n_bytes = ID_BYTES * len(columns)
    n = len(columns[0])
    blocks = [np.zeros(n, dtype=np.uint64) for _ in range(n_bytes // 8 + 1)]
    for i, col in enumerate(columns):
        bit = 8 * ID_BYTES * i
        w, off = divmod(bit, 64)
        blocks[w] |= col << np.uint64(off)
        if off + 8 * ID_BYTES > 64:  # the id straddles two blocks
            blocks[w + 1] |= col >> np.uint64(64 - off)
    blocks[-1] |= np.uint64((n_bytes & 0xFF) << 56)
    return blocks


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """Per-item detection results (numpy arrays; scalars when one token array was scored)."""

    n_scored: np.ndarray  # int64: distinct (context, token) pairs scored
    n_green: np.ndarray  # int64: green among them
    z: np.ndarray  # float64: (G - gamma T) / sqrt(T gamma (1 - gamma)); nan where T == 0
    p_value: np.ndarray  # float64: P(Binomial(T, gamma) >= G), exact; 1 where T == 0

    @property
    def green_fraction(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_scored > 0, self.n_green / np.maximum(self.n_scored, 1), np.nan)[()]

    def flagged(self, z_threshold: float = 4.0):
        """Items whose z reaches ``z_threshold`` (KGW's default decision rule)."""
        return np.nan_to_num(self.z, nan=-np.inf) >= z_threshold


@dataclass(frozen=True)
class WindowDetection:
    """Per item, the window with the highest z (not a p-value: calibrate on human text).

    ``start``/``end`` are token positions inside the item (end exclusive); ``z`` is nan and the
    span empty for items with no scored token.
    """

    z: np.ndarray
    start: np.ndarray
    end: np.ndarray
    n_scored: np.ndarray
    n_green: np.ndarray


# ---------------------------------------------------------------------------------------------
# Grouping the scored pairs of a run of items
# ---------------------------------------------------------------------------------------------
def _first_of_runs(columns: Sequence[np.ndarray]) -> np.ndarray:
    """For rows sorted by ``columns``: True where a row differs from the one before."""
    n = len(columns[0])
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for c in columns:
            new[1:] |= c[1:] != c[:-1]
    return new


def _pack(columns: Sequence[np.ndarray], doc: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """One uint64 per row, ordered like (columns..., doc), and the bits per id and per item
    number, when they fit in 64 bits; else None."""
    bits_id = max(max(int(c.max()) for c in columns).bit_length(), 1)
    bits_doc = int(doc.max()).bit_length()
    if bits_id * len(columns) + bits_doc > 64:
        return None
    key = np.zeros(len(doc), dtype=np.uint64)
    for c in columns:
        key <<= np.uint64(bits_id)
        key |= c
    key <<= np.uint64(bits_doc)
    key |= doc.astype(np.uint64)
    return key, bits_id, bits_doc


def _unpack(key: np.ndarray, n_columns: int, bits_id: int, bits_doc: int) -> tuple[list[np.ndarray], np.ndarray]:
    mask_id = np.uint64((1 << bits_id) - 1)
    doc = (key & np.uint64((1 << bits_doc) - 1)).astype(np.int64)
    rest = key >> np.uint64(bits_doc)
    columns = [(rest >> np.uint64(bits_id * (n_columns - 1 - i))) & mask_id for i in range(n_columns)]
    return columns, doc


def _distinct_pairs(columns: list[np.ndarray], doc: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct (pair, item) rows, sorted pair-major, so equal pairs of different items touch."""
    packed = _pack(columns, doc)
    if packed is not None:  # fast path: one sort of one uint64 per row
        key, bits_id, bits_doc = packed
        key = np.sort(key)
        return _unpack(key[_first_of_runs([key])], len(columns), bits_id, bits_doc)
    order = np.lexsort([doc, *columns[::-1]])  # exact fallback for wide contexts and big ids
    columns = [c[order] for c in columns]
    doc = doc[order]
    keep = _first_of_runs([*columns, doc])
    return [c[keep] for c in columns], doc[keep]


def _pair_keys(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, int] | None:
    """One uint64 per pair, ordered like (columns...), and its width in bits, when it fits; else None."""
    bits_id = max(max(int(c.max()) for c in columns).bit_length(), 1)
    if bits_id * len(columns) > 64:
        return None
    key = columns[0].copy()
    for c in columns[1:]:
        key <<= np.uint64(bits_id)
        key |= c
    return key, bits_id


def _stable_order(key: np.ndarray, bits: int) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for keys below ``2**bits``: a least-significant-digit
    radix sort over 16-bit digits (numpy sorts 16-bit integers stably by counting, in linear time)."""
    order = None
    for shift in range(0, bits, 16):
        digit = (key >> np.uint64(shift)).astype(np.uint16)  # the low 16 bits
        if order is None:
            order = np.argsort(digit, kind="stable")
        else:
            order = order[np.argsort(digit[order], kind="stable")]
    return order


def _radix_pairs(columns: list[np.ndarray], doc: np.ndarray):
    """The rows of :func:`_distinct_pairs` (distinct (pair, item), pair-major) as the pair keys,
    their items and a mask of where a new pair starts; None when a pair does not fit 64 bits.

    Rows come in item order, so a stable sort by pair alone orders them by (pair, item)."""
    packed = _pair_keys(columns)
    if packed is None:
        return None
    key, bits_id = packed
    order = _stable_order(key, bits_id * len(columns))
    key, doc = key[order], doc[order]
    new_pair = _first_of_runs([key])
    keep = new_pair.copy()
    keep[1:] |= doc[1:] != doc[:-1]
    return key[keep], doc[keep], new_pair[keep], bits_id


def _first_occurrence(columns: list[np.ndarray], doc: np.ndarray) -> np.ndarray:
    """True at each row whose (pair, item) did not occur in an earlier row."""
    packed = _pack(columns, doc)
    order = np.argsort(packed[0], kind="stable") if packed is not None else np.lexsort([doc, *columns[::-1]])
    first = np.zeros(len(doc), dtype=bool)
    first[order] = _first_of_runs([c[order] for c in columns] + [doc[order]])
    return first


# ---------------------------------------------------------------------------------------------
# The watermark
# ---------------------------------------------------------------------------------------------
class Watermark:
    """Green-list watermark with green share ``gamma``, logit bias ``delta``, context width ``h``.

    Parameters
    ----------
    key: secret bytes, at least 16 (see the module docstring for how it is used).
    gamma: share of green (context, token) pairs, in (0, 1).
    delta: logit bias added to green candidates when embedding, >= 0.
    context_width: ``h``, how many previous tokens select the green list, >= 1.
    """

    def __init__(self, key: bytes, *, gamma: float = 0.25, delta: float = 2.0, context_width: int = 1) -> None:
        if not isinstance(key, (bytes, bytearray)):
            raise WatermarkError(f"watermark key must be bytes (at least {MIN_KEY_BYTES}), not {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise WatermarkError(
                f"watermark key too short: {len(key)} bytes, need at least {MIN_KEY_BYTES} (128 bits); "
                "make one with collapselab.provenance.watermark.new_key()"
            )
        if not 0.0 < gamma < 1.0:
            raise WatermarkError(f"gamma must be in (0, 1), got {gamma}")
        if not (np.isfinite(delta) and delta >= 0.0):
            raise WatermarkError(f"delta must be finite and >= 0, got {delta}")
        if int(context_width) != context_width or context_width < 1:
            raise WatermarkError(f"context_width must be an integer >= 1, got {context_width}")
        key = bytes(key) if len(key) <= 64 else hashlib.blake2b(bytes(key)).digest()
        k = hashlib.blake2b(_DOMAIN + b"SipHash-2-4 key", key=key, digest_size=16).digest()
        self._k0 = int.from_bytes(k[:8], "little")
        self._k1 = int.from_bytes(k[8:], "little")
        self._sip_key = k
        self.key_id = hashlib.blake2b(_DOMAIN + b"key id", key=key, digest_size=8).hexdigest()
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.h = int(context_width)
        self._threshold = np.uint64(int(self.gamma * 2.0**64))

    def __repr__(self) -> str:  # never shows the key
        return f"Watermark(key_id={self.key_id!r}, gamma={self.gamma}, delta={self.delta}, context_width={self.h})"

    # ----------------------------------------------------------------- the green decision
    def _green_columns(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        if len(columns[0]) == 0:
            return np.zeros(0, dtype=bool)
        return siphash24_blocks(self._k0, self._k1, message_blocks(columns)) < self._threshold

    def green(self, contexts, tokens) -> np.ndarray:
        """Whether each (context, token) pair is green.

        ``contexts``: ids of shape ``(..., h)``, oldest token first; ``tokens``: ids broadcastable
        to ``contexts.shape[:-1]``. E.g. all candidates of ``m`` contexts at once:
        ``green(ctx[:, None, :], np.arange(V))`` has shape ``(m, V)``.
        """
        ctx = _as_ids(contexts)
        tok = _as_ids(tokens)
        if ctx.ndim == 0 or ctx.shape[-1] != self.h:
            raise WatermarkError(f"contexts must have shape (..., {self.h}) (the last {self.h} tokens), got {ctx.shape}")
        shape = np.broadcast_shapes(ctx.shape[:-1], tok.shape)
        ctx = np.broadcast_to(ctx, shape + (self.h,))
        columns = [np.ascontiguousarray(ctx[..., j]).reshape(-1) for j in range(self.h)]
        columns.append(np.ascontiguousarray(np.broadcast_to(tok, shape)).reshape(-1))
        return self._green_columns(columns).reshape(shape)

    def bias(self, contexts, tokens) -> np.ndarray:
        """Logit bias for each (context, candidate): ``delta`` where green, 0 else (see :meth:`green`)."""
        return np.where(self.green(contexts, tokens), self.delta, 0.0)

    def green_reference(self, context: Sequence[int], token: int) -> bool:
        """The green decision for one pair in plain Python, byte by byte: the definition."""
        message = b"".join(int(t).to_bytes(ID_BYTES, "little") for t in [*context, token])
        return siphash24(self._sip_key, message) < int(self._threshold)

    # ----------------------------------------------------------------- embedding without logits
    def accept(self, contexts, tokens, u) -> np.ndarray:
        """Rejection step: keep a draw if its token is green, else if ``u < exp(-delta)``."""
        return self.green(contexts, tokens) | (np.asarray(u) < np.exp(-self.delta))

    def sample(self, draw: Callable[[np.ndarray], np.ndarray], contexts, rng: np.random.Generator) -> np.ndarray:
        """One watermarked token per row: exactly ``p(w) exp(delta green(w)) / Z``.

        ``draw(rows)`` returns one token drawn from row ``rows[i]``'s distribution ``p`` (any
        sampler, with its temperature and truncation); ``contexts`` has shape ``(m, h)``: the
        last ``h`` tokens of each row's text, which detection will see before the new token.
        Rejected rows are redrawn until every row has accepted a draw (each draw is accepted with
        probability at least ``exp(-delta)``).
        """
        ctx = _as_ids(contexts)
        rows = np.arange(len(ctx))
        out = np.asarray(draw(rows)).astype(np.int64)
        pending = rows[~self.accept(ctx, out, rng.random(len(rows)))]
        while len(pending):
            out[pending] = draw(pending)
            pending = pending[~self.accept(ctx[pending], out[pending], rng.random(len(pending)))]
        return out

    # ----------------------------------------------------------------- detection
    def _scored_pairs(self, seqs: TokenSequences, pad: int | None):
        """Columns (h context ids, token) of every scored position, its item, its position."""
        h = self.h
        _check_ids(seqs.tokens)
        tokens = seqs.tokens.astype(np.uint64)  # ids checked: no negative id wraps
        item = seqs.item_index()
        within = np.arange(len(tokens), dtype=np.int64) - seqs.offsets[:-1][item]
        if pad is None:
            stream, pos = tokens, np.flatnonzero(within >= h)
            columns = [stream[pos - j] for j in range(h, -1, -1)]
            return columns, item[pos], within[pos]
        _check_ids(np.asarray([pad]))
        stream = np.full(len(tokens) + h * len(seqs), pad, dtype=np.uint64)
        pos = np.arange(len(tokens), dtype=np.int64) + h * (item + 1)
        stream[pos] = tokens
        return [stream[pos - j] for j in range(h, 0, -1)] + [tokens], item, within

    def _counts(self, seqs: TokenSequences, pad: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Distinct pairs scored, and green among them, per item."""
        n_scored = np.zeros(len(seqs), dtype=np.int64)
        n_green = np.zeros(len(seqs), dtype=np.int64)
        for a, b in _item_runs(seqs):
            columns, doc, _ = self._scored_pairs(_slice(seqs, a, b), pad)
            if len(doc) == 0:
                continue
            fast = _radix_pairs(columns, doc)
            if fast is not None:
                key, doc, new_pair, bits_id = fast
                mask = np.uint64((1 << bits_id) - 1)
                pairs = key[new_pair]
                n_col = len(columns)
                distinct = [(pairs >> np.uint64(bits_id * (n_col - 1 - i))) & mask for i in range(n_col)]
            else:
                columns, doc = _distinct_pairs(columns, doc)
                new_pair = _first_of_runs(columns)
                distinct = [c[new_pair] for c in columns]
            # rows sorted pair-major: one PRF per distinct pair
            green = self._green_columns(distinct)[np.cumsum(new_pair) - 1]
            n_scored[a:b] = np.bincount(doc, minlength=b - a)
            n_green[a:b] = np.bincount(doc[green], minlength=b - a)
        return n_scored, n_green

    def detect(self, seqs, *, pad: int | None = None) -> Detection:
        """z-score, exact binomial p-value and counts for every item of ``seqs``.

        ``seqs``: a :class:`TokenSequences` (arrays per item) or one 1-D token array (scalars).
        ``pad``: see the module docstring (score an item's first ``h`` tokens against pads).
        """
        data, single = _as_sequences(seqs)
        n_scored, n_green = self._counts(data, pad)
        z, p = self.z_and_p(n_green, n_scored)
        result = Detection(n_scored, n_green, z, p)
        return _first_only(result) if single else result

    def z_and_p(self, n_green, n_scored) -> tuple[np.ndarray, np.ndarray]:
        """KGW's z-score and the exact one-sided binomial p-value ``P(Bin(T, gamma) >= G)``."""
        g = np.asarray(n_green, dtype=np.float64)
        t = np.asarray(n_scored, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(t > 0, (g - self.gamma * t) / np.sqrt(t * self.gamma * (1 - self.gamma)), np.nan)
        p = np.where(t > 0, stats.binom.sf(g - 1, t, self.gamma), 1.0)
        return z, p

    def detect_windows(self, seqs, *, sizes: Sequence[int] = (50, 100, 200), pad: int | None = None) -> WindowDetection:
        """Highest z over windows of ``sizes`` scored positions, per item (spans in mixed text).

        Windows slide by one position; an item shorter than a size contributes one window, the
        whole item. A pair counts in a window only at its first occurrence in the item.
        """
        data, single = _as_sequences(seqs)
        n = len(data)
        best_z = np.full(n, np.nan)
        start, end, n_sc, n_gr = (np.zeros(n, dtype=np.int64) for _ in range(4))
        for a, b in _item_runs(data):
            columns, doc, within = self._scored_pairs(_slice(data, a, b), pad)
            if len(doc) == 0:
                continue
            first = _first_occurrence(columns, doc)
            green = self._green_columns(columns) & first
            r = _best_windows(doc, first, green, sizes, self.gamma, b - a)
            has = r[0] > -np.inf
            idx = np.flatnonzero(has)
            best_z[a + idx] = r[0][has]
            start[a + idx] = within[r[1][has]]
            end[a + idx] = within[r[2][has] - 1] + 1
            n_sc[a + idx] = r[3][has]
            n_gr[a + idx] = r[4][has]
        result = WindowDetection(best_z, start, end, n_sc, n_gr)
        return _first_only(result) if single else result


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _best_windows(doc, counted, green, sizes, gamma, n_items):
    """Per item: max z over windows, the window's [lo, hi) rows, its counts (rows are in order)."""
    n = len(doc)
    first_row = np.searchsorted(doc, np.arange(n_items))
    n_rows = np.bincount(doc, minlength=n_items)
    S = np.concatenate([[0], np.cumsum(counted)])
    G = np.concatenate([[0], np.cumsum(green)])
    hi = np.arange(1, n + 1)
    d = doc
    best = (np.full(n, -np.inf), np.zeros(n, np.int64), hi, np.zeros(n, np.int64), np.zeros(n, np.int64))
    for w in sizes:
        lo = np.maximum(hi - w, first_row[d])
        full = hi - first_row[d] >= np.minimum(w, n_rows[d])
        t = S[hi] - S[lo]
        g = G[hi] - G[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(full & (t > 0), (g - gamma * t) / np.sqrt(t * gamma * (1 - gamma)), -np.inf)
        better = z > best[0]
        best = tuple(np.where(better, new, old) for new, old in zip((z, lo, hi, t, g), best))
    z = best[0]
    top = np.full(n_items, -np.inf)
    np.maximum.at(top, d, z)
    # the first row of each item that reaches its maximum
    at_top = np.flatnonzero((z == top[d]) & (z > -np.inf))
    items, first = np.unique(d[at_top], return_index=True)
    pick = at_top[first]
    out_lo, out_hi, out_t, out_g = (np.zeros(n_items, np.int64) for _ in range(4))
    out_lo[items], out_hi[items] = best[1][pick], best[2][pick]
    out_t[items], out_g[items] = best[3][pick], best[4][pick]
    return top, out_lo, out_hi, out_t, out_g


def _as_ids(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        if a.size == 0:
            a = a.astype(np.int64)
        else:
            raise WatermarkError(f"token ids must be integers, got dtype {a.dtype}")
    _check_ids(a)
    return a.astype(np.uint64)


def _check_ids(a: np.ndarray) -> None:
    if a.size and (int(a.min()) < 0 or int(a.max()) >= MAX_ID):
        raise WatermarkError(f"token ids must be in [0, {MAX_ID}), got [{int(a.min())}, {int(a.max())}]")


def _as_sequences(seqs) -> tuple[TokenSequences, bool]:
    if isinstance(seqs, TokenSequences):
        return seqs, False
    a = np.asarray(seqs)
    if a.ndim != 1:
        raise WatermarkError(f"detect takes TokenSequences or one 1-D token array, got shape {a.shape}")
    _check_ids(a)
    return TokenSequences(a.astype(np.int32), np.array([0, len(a)], dtype=np.int64)), True


def _item_runs(seqs: TokenSequences):
    """Consecutive item ranges [a, b) of about ``_CHUNK_TOKENS`` tokens (at least one item)."""
    a, n = 0, len(seqs)
    while a < n:
        b = int(np.searchsorted(seqs.offsets, seqs.offsets[a] + _CHUNK_TOKENS, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def _slice(seqs: TokenSequences, a: int, b: int) -> TokenSequences:
    lo, hi = seqs.offsets[a], seqs.offsets[b]
    return TokenSequences(seqs.tokens[lo:hi], seqs.offsets[a : b + 1] - lo)


def _first_only(result):
    return type(result)(*(np.asarray(getattr(result, f))[0] for f in result.__dataclass_fields__))
