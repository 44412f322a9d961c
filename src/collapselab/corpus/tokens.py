"""The special tokens, in one place: every text family, detector and metric reads its ids here.

A vocabulary (:class:`~collapselab.corpus.tokenize.Vocabulary`) reserves ids 0, 1 and 2 for
``<s>`` (padding before a sentence), ``</s>`` (its end) and ``<unk>`` (a word it lacks).
"""

from __future__ import annotations

SPECIALS = ("<s>", "</s>", "<unk>")
BOS, EOS, UNK = 0, 1, 2
MAX_LEN = 100  # longest item (sentence) in words: the corpus cuts, and the text families sample, at most this
