"""Scheme spec files: a scheme's public parameters in YAML or JSON, its key in a 0600 key file.

A spec file names the scheme, its key file (a path relative to the spec file) and its
parameters; anything left out takes the reference implementation's default::

    # kgw.yaml: transformers' WatermarkingConfig
    scheme: hf-kgw
    key_file: kgw.key           # {"hashing_key": 15485863}
    greenlist_ratio: 0.25
    seeding_scheme: lefthash    # or selfhash
    context_width: 1

    # synthid.yaml: transformers' SynthIDTextWatermarkingConfig
    scheme: synthid
    key_file: synthid.key       # {"keys": [654, 400, 836, 123, 340, 443, 597, 160, 57]}
    ngram_len: 5

    # gumbel.yaml: vLLM's WatermarkConfig (algorithm "gumbel" or "dual_key_gumbel")
    scheme: gumbel              # or gumbel-dual (then alpha: 0.1)
    key_file: gumbel.key        # {"key": 1234567890123}
    context_width: 4

    # ours: the keyed SipHash green list over a run's word vocabulary
    scheme: collapselab
    key_file: wm.key            # `collapselab keys new wm.key`
    gamma: 0.25

Key files are JSON objects (the collapselab scheme's is the hex file `collapselab keys new`
writes), created with ``collapselab keys new --scheme NAME FILE`` (mode 0600) and read only when no
one else can read them (:func:`collapselab.provenance.core.check_secret_file`). A key never
appears on a command line, in output or in a manifest: ``Scheme.key_id`` names it.

``flag_p_value`` (every scheme; default 0.01, vLLM's detector default) is the flag rule used by
``scan``, ``filter`` and the loop: an item is flagged when its p-value is at most this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collapselab.errors import UserError

SCHEMES = ("collapselab", "hf-kgw", "synthid", "gumbel", "gumbel-dual")
U64 = 2**64 - 1


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key_file: str = Field(description="path of the 0600 key file, relative to the spec file")
    flag_p_value: float = Field(0.01, gt=0, lt=1, description="flag an item when its p-value is at most this")
    vocab_size: int | None = Field(None, ge=2, description="the generator's logits width; default: the tokenizer's")


class CollapselabSpec(_Spec):
    scheme: Literal["collapselab"]
    gamma: float = Field(0.25, gt=0, lt=1)
    context_width: int = Field(1, ge=1)


class HFKGWSpec(_Spec):
    scheme: Literal["hf-kgw"]
    greenlist_ratio: float = Field(0.25, gt=0, lt=1)
    bias: float = 2.0
    seeding_scheme: Literal["lefthash", "selfhash"] = "lefthash"
    context_width: int = Field(1, ge=1)
    ignore_repeated_ngrams: bool = False  # WatermarkDetector's default
    bos_token_id: int | None = None  # stripped from the front of an item, as WatermarkDetector does


class SynthIDSpec(_Spec):
    scheme: Literal["synthid"]
    ngram_len: int = Field(5, ge=2)
    sampling_table_size: int = Field(2**16, ge=2)
    sampling_table_seed: int = 0
    context_history_size: int = Field(1024, ge=1)
    skip_first_ngram_calls: bool = False
    eos_token_id: int | None = None  # masked (with everything after it), as the reference scoring does
    statistic: Literal["mean", "weighted_mean"] = "weighted_mean"


class GumbelSpec(_Spec):
    scheme: Literal["gumbel", "gumbel-dual"]
    context_width: int = Field(4, ge=1)
    deduplicate_contexts: bool = True
    prf: Literal["philox"] = "philox"
    alpha: float = Field(0.1, ge=0, le=1, description="gumbel-dual only: the weight of key B")


Spec = Annotated[Union[CollapselabSpec, HFKGWSpec, SynthIDSpec, GumbelSpec], Field(discriminator="scheme")]


class _SpecFile(BaseModel):
    spec: Spec


def parse_spec(data: dict, where: str = "spec") -> _Spec:
    """A spec from a mapping; a UserError naming the field that is wrong."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: a spec is a mapping (scheme: ..., key_file: ...), not {type(data).__name__}.")
    if data.get("scheme") not in SCHEMES:
        raise UserError(f"{where}: field 'scheme' is {data.get('scheme')!r}; use one of {', '.join(SCHEMES)}.")
    try:
        return _SpecFile(spec=data).spec
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"][2:]) or "spec"
        raise UserError(f"{where}: field {field!r}: {err['msg']} (docs/watermark.md lists every field).") from None


def read_spec(path: str | os.PathLike) -> tuple[_Spec, Path]:
    """The spec in a YAML/JSON file, and its key file's path (resolved against the spec's folder)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such watermark spec file (YAML or JSON; docs/watermark.md shows one).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; a spec file is YAML or JSON.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{at} not valid YAML/JSON ({getattr(e, 'problem', None) or e}).") from None
    spec = parse_spec(data, str(path))
    key = Path(spec.key_file).expanduser()
    return spec, key if key.is_absolute() else path.parent / key


# ------------------------------------------------------------------------------------ key files
_KEY_FIELDS = {"hf-kgw": "hashing_key", "synthid": "keys", "gumbel": "key", "gumbel-dual": "key"}


def read_key(scheme: str, path: str | os.PathLike):
    """The key a key file holds: bytes (collapselab), an int (hf-kgw, gumbel) or a list of ints (synthid)."""
    from collapselab.provenance import core
    from collapselab.provenance.keys import load_key

    if scheme == "collapselab":
        return load_key(path)
    hint = f"Create one with `collapselab keys new --scheme {scheme} FILE`."
    p = core.check_secret_file(path, "key file", hint)
    field = _KEY_FIELDS[scheme]
    try:
        value = json.loads(p.read_bytes())[field]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        raise UserError(f"{p}: not a {scheme} key file (expected JSON with field {field!r}). {hint}") from None
    ok_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U64  # noqa: E731
    if scheme == "synthid":
        if not (isinstance(value, list) and value and all(ok_int(v) for v in value)):
            raise UserError(f"{p}: field 'keys' must be a non-empty list of integers in [0, 2**64). {hint}")
    elif not ok_int(value):
        raise UserError(f"{p}: field {field!r} must be an integer in [0, 2**64). {hint}")
    return value


def new_key(scheme: str, *, depth: int = 30):
    """A fresh random key for ``scheme`` (``depth``: SynthID's number of keys, the reference's 30)."""
    import secrets

    if scheme == "synthid":
        return [secrets.randbits(63) for _ in range(depth)]
    return secrets.randbits(63) if scheme == "hf-kgw" else secrets.randbits(64)


def write_key(scheme: str, path: str | os.PathLike, key) -> Path:
    """Write ``key`` as ``scheme``'s 0600 key file (refuses to overwrite)."""
    from collapselab.atomic import check_output_file
    from collapselab.provenance import core

    check_output_file(Path(path), "key")
    return core.write_secret_file(path, (json.dumps({_KEY_FIELDS[scheme]: key}) + "\n").encode("ascii"))
