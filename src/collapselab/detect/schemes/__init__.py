"""Text-watermark schemes behind one interface: ours and the ones deployed engines emit.

=============  ===========================================  ==========================================
name           what writes it                                its reference detector (agreement tested)
=============  ===========================================  ==========================================
collapselab    our loop's samplers (:mod:`.ours`)            ``collapselab.provenance.watermark``
hf-kgw         transformers ``WatermarkingConfig``           transformers ``WatermarkDetector``
synthid        transformers ``SynthIDTextWatermarkingConfig``  SynthID's mean / weighted-mean scores
gumbel         vLLM ``WatermarkConfig(algorithm="gumbel")``  vLLM ``GumbelWatermarkDetector``
gumbel-dual    vLLM ``algorithm="dual_key_gumbel"``          vLLM ``DualKeyGumbelWatermarkDetector``
=============  ===========================================  ==========================================

::

    from collapselab.detect.schemes import load_scheme
    scheme = load_scheme("kgw.yaml", vocab_size=49152)
    scores = scheme.score(token_sequences)      # SchemeScores: n_scored, score, z, p_value

See :mod:`.base` for what the scores mean and :mod:`.spec` for the spec and key files.
"""

from __future__ import annotations

import os

from collapselab.detect.schemes.base import Scheme, SchemeScores
from collapselab.detect.schemes.spec import SCHEMES, parse_spec, read_key, read_spec
from collapselab.errors import UserError

_NOT_PARAMS = {"scheme", "key_file", "flag_p_value"}


def build(spec, key, *, vocab_size: int | None = None) -> Scheme:
    """The scheme a parsed spec describes, holding ``key``. ``vocab_size`` fills in a spec without one."""
    kw = spec.model_dump(exclude=_NOT_PARAMS)
    kw["vocab_size"] = kw.get("vocab_size") or vocab_size
    if spec.scheme == "collapselab":
        from collapselab.detect.schemes.ours import CollapselabScheme as cls
    elif kw["vocab_size"] is None:
        raise UserError(f"scheme {spec.scheme}: the vocabulary size is unknown; give a tokenizer (--tokenizer) "
                        "or 'vocab_size' in the spec (the generator's logits width).")
    elif spec.scheme == "hf-kgw":
        from collapselab.detect.schemes.hf_kgw import HFKGWScheme as cls
    elif spec.scheme == "synthid":
        from collapselab.detect.schemes.synthid import SynthIDScheme as cls
    else:
        from collapselab.detect.schemes.gumbel import GumbelScheme as cls

        kw["dual"] = spec.scheme == "gumbel-dual"
    scheme = cls(key, **kw)
    scheme.flag_p_value = spec.flag_p_value
    return scheme


def load_scheme(spec: str | os.PathLike | dict, *, vocab_size: int | None = None, key=None) -> Scheme:
    """A scheme from a spec file (or a mapping, with ``key=`` or a ``key_file`` relative to the cwd)."""
    if isinstance(spec, dict):
        parsed, key_path = parse_spec(spec), spec.get("key_file")
    else:
        parsed, key_path = read_spec(spec)
    if key is None:
        key = read_key(parsed.scheme, key_path)
    return build(parsed, key, vocab_size=vocab_size)


__all__ = ["SCHEMES", "Scheme", "SchemeScores", "build", "load_scheme", "parse_spec", "read_key", "read_spec"]
