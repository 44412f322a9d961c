"""Byte-pair encoding of the run's words, trained with Hugging Face ``tokenizers``.

The loop's text is word ids over the run's :class:`~collapselab.corpus.tokenize.Vocabulary`; a
neural model reads and writes sub-word *pieces*. :class:`WordBPE` translates both ways:

* pieces never cross words (a ``WhitespaceSplit`` pre-tokenizer), and every word ends with the
  mark ``▁``, so a word's last piece carries it (the end-of-word marker of Sennrich et al.'s
  original BPE) and any piece sequence decodes back into words without ambiguity. The mark is a
  character of the text rather than the trainer's ``end_of_word_suffix``, because with a suffix
  the ``tokenizers`` trainer numbers pieces in hash-map order and breaks ties between merges
  differently from run to run (huggingface/tokenizers#1794); this way training is deterministic;
* two special pieces: ``</s>`` (id 0) ends a sentence, and the model also reads it as the start
  of one; ``<unk>`` (id 1) is the word ``<unk>`` and any word holding a character the tokenizer
  never saw;
* the vocabulary is fixed for the whole run, so every word is encoded once into a table (a
  :class:`TokenSequences` whose item ``w`` holds the pieces of word id ``w``). Encoding a corpus is
  then one gather, without string work; decoding joins piece strings per item and looks the
  words up (a generated word the vocabulary lacks becomes ``<unk>``, id 2).
"""

from __future__ import annotations

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.tokenize import UNK_ID, Vocabulary

EOS_PIECE, UNK_PIECE = 0, 1
SPECIAL_PIECES = ("</s>", "<unk>")
MARK = "\u2581"  # ▁, ends every word


class WordBPE:
    """BPE pieces of a fixed word vocabulary.

    Parameters
    ----------
    vocab: the run's word vocabulary.
    vocab_size: number of pieces to learn (the two specials included).
    """

    def __init__(self, vocab: Vocabulary, vocab_size: int = 2000) -> None:
        self.vocab = vocab
        self.vocab_size = vocab_size

    def fit(self, data: TokenSequences) -> "WordBPE":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        marked = np.array([w + MARK for w in self.vocab.words.tolist()], dtype=object)
        marked[UNK_ID] = SPECIAL_PIECES[UNK_PIECE]
        o = data.offsets
        text = marked[np.where(data.tokens < len(marked), data.tokens, UNK_ID)]
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_PIECES[UNK_PIECE]))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, special_tokens=list(SPECIAL_PIECES), show_progress=False)
        tokenizer.train_from_iterator((" ".join(text[o[i]: o[i + 1]]) for i in range(len(data))), trainer)
        self.tokenizer_ = tokenizer
        pieces = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
        self.ends_word_ = np.array([p.endswith(MARK) for p in pieces], dtype=bool)
        self.ends_word_[UNK_PIECE] = True
        # what each piece adds to the text: a word's last piece closes it with a space
        self.piece_text_ = np.array([p.replace(MARK, " ") for p in pieces], dtype=object)
        self.piece_text_[EOS_PIECE], self.piece_text_[UNK_PIECE] = " ", " <unk> "
        enc = tokenizer.encode_batch([[w] for w in marked.tolist()], is_pretokenized=True, add_special_tokens=False)
        ids = [e.ids for e in enc]
        # <s>, <unk> and any word with a character the tokenizer never saw are <unk> as a whole
        for w in [0, UNK_ID] + [w for w, p in enumerate(ids) if UNK_PIECE in p]:
            ids[w] = [UNK_PIECE]
        ids[1] = [EOS_PIECE]
        self.table_ = TokenSequences.from_lists(ids)
        return self

    @property
    def n_pieces(self) -> int:
        return len(self.piece_text_)

    def encode(self, data: TokenSequences) -> TokenSequences:
        """The pieces of every item (no ``</s>``); ids outside the vocabulary count as ``<unk>``."""
        words = np.where(data.tokens < len(self.vocab), data.tokens, UNK_ID)
        per_word = self.table_.take(words)
        n_pieces = np.bincount(data.item_index(), weights=per_word.lengths, minlength=len(data))
        offsets = np.zeros(len(data) + 1, dtype=np.int64)
        np.cumsum(n_pieces.astype(np.int64), out=offsets[1:])
        return TokenSequences(per_word.tokens, offsets)

    def decode(self, pieces: TokenSequences) -> TokenSequences:
        """Word ids of every item; a trailing unfinished word counts as a word."""
        text = self.piece_text_[pieces.tokens]
        o = pieces.offsets
        return self.vocab.encode(["".join(text[o[i]: o[i + 1]]).split() for i in range(len(pieces))])
