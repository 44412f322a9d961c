"""Text to token ids for the scan's detectors, vectorised over UTF-8 bytes with numpy.

It gives exactly what :func:`tokenize_doc` (the corpus tokeniser,
:func:`collapselab.corpus.tokenize.tokenize`, with the special tokens kept whole) and a vocabulary
lookup give (tested against it on real and adversarial text): the text is lower-cased (``str.lower``), then cut
into ``<s>``, ``</s>``, ``<unk>``, words (``[a-z0-9]+`` joined by inner ``'``, ``’`` or ``-``) and
single characters other than whitespace (Python's ``\\s``); each token's id is its place in the
vocabulary, else ``<unk>``'s. The regex and a dict lookup cost about 150 ns a token in Python; here
every step is an array operation over the batch's bytes and tokens:

1. the batch's texts, lower-cased and UTF-8 encoded, joined by spaces into one byte array;
2. each byte classed (word character, whitespace, joiner, UTF-8 continuation, other) by
   comparisons; the few multi-byte characters that matter (Unicode whitespace, ``’``) found among
   the non-ASCII lead bytes, the special tokens among the ``<`` bytes;
3. token starts and ends where the classes change; each token of up to 16 bytes read as two
   64-bit integers, zero past its end: an exact key, not a hash (no token holds a zero byte but
   the one-character token NUL, whose key is the only all-zero one);
4. keys looked up in an open-addressing table of the vocabulary's keys (a few gathers a token);
   the rare longer tokens in a dict.
"""

from __future__ import annotations

import re

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import tokenize

_SPECIAL = re.compile(r"(<s>|</s>|<unk>)")


def tokenize_doc(text: str) -> list[str]:
    """The corpus tokeniser with the special tokens a generator's decoded output may hold kept whole.

    No word or joiner holds a ``<``, so cutting the lower-cased text at the special tokens and
    tokenising the pieces between them is the one-regex tokeniser ``<s>|</s>|<unk>|WORD|MARK``."""
    out: list[str] = []
    for i, piece in enumerate(_SPECIAL.split(text.lower())):
        if i % 2:
            out.append(piece)
        elif piece:
            out += tokenize(piece)
    return out

# the non-ASCII characters str.isspace() (and so re's \s) accepts
_SPACES = np.array([0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
_APOSTROPHE = 0x2019  # ’, a joiner inside words
_SPECIALS = (b"<s>", b"</s>", b"<unk>")
_KEY_BYTES = 16  # tokens up to this long are looked up by packed key
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)  # odd multipliers for table slots


_MASK = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)  # low k bytes
_PAD = 16  # bytes of padding after the data: every 8-byte read below stays inside


def _pack(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each token's bytes 0-7 and 8-15 as two little-endian uint64, zero past its end (an exact key
    for tokens of up to 16 bytes). ``data`` ends in ``_PAD`` spare bytes."""
    words = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # the 8 bytes at each offset
    lo = words[starts] & _MASK[np.minimum(lengths, 8)]
    hi = words[starts + 8] & _MASK[np.clip(lengths - 8, 0, 8)]
    return lo, hi


class VocabTokenizer:
    """Token ids of texts under a fixed word list (``words[i]`` has id ``i``; unknown: ``unk_id``)."""

    def __init__(self, words, unk_id: int) -> None:
        self.unk_id = int(unk_id)
        enc = [w.encode("utf-8", "surrogatepass") for w in words]
        short = [i for i, e in enumerate(enc) if 0 < len(e) <= _KEY_BYTES]
        self._long = {e: i for i, e in enumerate(enc) if len(e) > _KEY_BYTES}
        flat = np.frombuffer(b"".join(enc[i] for i in short) + bytes(_PAD), dtype=np.uint8)
        lens = np.array([len(enc[i]) for i in short], dtype=np.int64)
        lo, hi = _pack(flat, np.cumsum(lens) - lens, lens)
        bits = max(4, int(4 * max(len(short), 1) - 1).bit_length())  # load factor at most 1/4
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self._lo = np.zeros(1 << bits, dtype=np.uint64)
        self._hi = np.zeros(1 << bits, dtype=np.uint64)
        self._id = np.full(1 << bits, -1, dtype=np.int64)
        slots = self._slots(lo, hi)
        for k, i in enumerate(short):  # once, at construction: linear probing
            s = int(slots[k])
            while self._id[s] >= 0 and not (self._lo[s] == lo[k] and self._hi[s] == hi[k]):
                s = (s + 1) & self._mask
            self._lo[s], self._hi[s], self._id[s] = lo[k], hi[k], i  # a repeated word gets its last id

    def _slots(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (((lo * _K1) ^ (hi * _K2)) >> self._shift).astype(np.int64)

    def _lookup(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Ids of the packed tokens (unknown: ``unk_id``), probing the table for all at once."""
        slot = self._slots(lo, hi)
        found = self._id[slot]
        hit = (self._lo[slot] == lo) & (self._hi[slot] == hi) & (found >= 0)
        ids = np.where(hit, found, self.unk_id)
        todo = np.flatnonzero((found >= 0) & ~hit)  # another key sits there: probe the next slots
        slot, lo, hi = slot[todo], lo[todo], hi[todo]
        while len(todo):
            slot = (slot + 1) & self._mask
            found = self._id[slot]
            hit = (self._lo[slot] == lo) & (self._hi[slot] == hi) & (found >= 0)
            ids[todo[hit]] = found[hit]
            more = (found >= 0) & ~hit
            todo, slot, lo, hi = todo[more], slot[more], lo[more], hi[more]
        return ids

    def encode(self, texts: list[str]) -> TokenSequences:
        enc = [t.lower().encode("utf-8", "surrogatepass") for t in texts]
        n_bytes = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        doc_start = np.cumsum(n_bytes + 1) - (n_bytes + 1)
        data = np.frombuffer(b" ".join(enc) + b" " * _PAD, dtype=np.uint8)  # spaces: no token crosses a text
        word = ((data >= ord("a")) & (data <= ord("z"))) | ((data >= ord("0")) & (data <= ord("9")))
        space = (data == 32) | ((data >= 9) & (data <= 13)) | ((data >= 28) & (data <= 31))  # str.isspace() in ASCII
        glued = (data & 0xC0) == 0x80  # UTF-8 continuation bytes continue the token before them
        inword = word.copy()
        j = np.flatnonzero((data == ord("'")) | (data == ord("-")))
        inword[j[word[j - 1] & word[j + 1]]] = True
        lead = np.flatnonzero(data >= 0xC0)
        if len(lead):
            self._non_ascii(data, lead, word, space, glued, inword)
        less = np.flatnonzero(data == ord("<"))
        for pat in _SPECIALS if len(less) else ():
            m = less[np.logical_and.reduce([data[np.minimum(less + k, len(data) - 1)] == pat[k] for k in range(1, len(pat))])]
            for k in range(1, len(pat)):
                glued[m + k] = True
                inword[m + k] = False
        tok = ~space
        start = tok & ~glued
        start[1:] &= ~(inword[1:] & inword[:-1])
        end = tok.copy()
        end[:-1] &= start[1:] | ~tok[1:]
        starts, ends = np.flatnonzero(start), np.flatnonzero(end) + 1
        lengths = ends - starts
        ids = self._lookup(*_pack(data, starts, lengths))
        for k in np.flatnonzero(lengths > _KEY_BYTES).tolist():
            ids[k] = self._long.get(data[starts[k] : ends[k]].tobytes(), self.unk_id)
        offsets = np.searchsorted(starts, np.append(doc_start, len(data)))
        offsets[-1] = len(starts)
        return TokenSequences(ids.astype(np.int32), offsets - offsets[0])

    @staticmethod
    def _non_ascii(data, lead, word, space, glued, inword) -> None:
        """Mark Unicode whitespace as space and ``’`` between word characters as part of the word."""
        b0 = data[lead].astype(np.int64)
        b1 = data[lead + 1].astype(np.int64) & 0x3F
        b2 = data[lead + 2].astype(np.int64) & 0x3F
        cp = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | b1, ((b0 & 0x0F) << 12) | (b1 << 6) | b2)
        cp[b0 >= 0xF0] = -1  # 4-byte characters: none of them matters here
        is_space = np.isin(cp, _SPACES)
        sp, three = lead[is_space], b0[is_space] >= 0xE0
        for k in range(3):
            at = (sp if k < 2 else sp[three]) + k
            space[at] = True
            glued[at] = False
        ap = lead[cp == _APOSTROPHE]
        ap = ap[word[ap - 1] & word[ap + 3]]
        for k in range(3):
            inword[ap + k] = True
