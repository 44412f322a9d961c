"""The run's watermark: what the samplers embed, and how strongly a generation's output carries it.

With ``watermark_key`` (ngram), every sampler embeds our green-list watermark, as it always did:
``watermark_z`` is the pooled z-score of the generation's output and ``watermark_flagged_share`` the
share of its items with z >= :data:`FLAG_Z`. With ``watermark`` (a scheme spec file,
:mod:`collapselab.detect.schemes`), the samplers follow the scheme's generation rule in the token
space of the seed's generation-0 model (``watermark_tokens``, ``watermark_vocab_size``: gpt's BPE
pieces, SmolLM2's tokenizer, the n-gram's word ids), which every later generation shares, and:

* ``watermark_flagged_share``: the share of the generation's items the scheme flags
  (``p_value <= flag_p_value``, the spec's, default 0.01);
* ``watermark_z``: one pooled statistic, standard normal for text written without the key. Where
  the scheme has per-item z-scores (collapselab, hf-kgw, gumbel, gumbel-dual) it is
  ``sum z_i sqrt(n_i) / sqrt(sum n_i)`` over the items with scored tokens (``n_i`` of them): the
  z-score of all the generation's scored tokens taken together. SynthID has no z: there it is
  Stouffer's combination of the items' p-values, ``sum Phi^-1(1 - p_i) / sqrt(k)``.

A share ``watermark_share`` of each generation's items carries the watermark, either way. Keys are
read in each process from their files and never pickled.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from collapselab.config import ExperimentConfig
from collapselab.data import concat
from collapselab.detect.schemes import build, read_key, read_spec
from collapselab.errors import UserError
from collapselab.loop.judges import SchemeDetector
from collapselab.models.base import sample
from collapselab.corpus.tokens import BOS
from collapselab.provenance.keys import load_key
from collapselab.provenance.watermark import Watermark

FLAG_Z = 4.0  # watermark_key runs: an item whose z-score reaches this is flagged (watermark_flagged_share)


def load_loop_scheme(config: ExperimentConfig, vocab_size: int | None):
    """The scheme of ``config.watermark`` over ``vocab_size`` ids, its key read from its key file.

    One UserError line where the loop cannot sample with it: a scheme other than ``collapselab``
    for the n-gram (its sampler forms no logits), or a spec that fixes ``vocab_size`` (the loop's
    model decides the id space). The ``collapselab`` scheme embeds with the config's
    ``watermark_delta`` (its spec has no bias)."""
    spec, key_path = read_spec(config.watermark)
    if config.family == "ngram" and spec.scheme != "collapselab":
        raise UserError(f"watermark: {config.watermark} is a {spec.scheme} spec; the ngram family samples only with the "
                        "collapselab scheme (its sampler forms no logits for a logits processor). Use --family gpt or smollm2.")
    if spec.vocab_size is not None:
        raise UserError(f"watermark: {config.watermark} sets vocab_size ({spec.vocab_size}); leave it out in a run, whose "
                        f"model decides the id space (the {config.family} model's).")
    key = read_key(spec.scheme, key_path)
    scheme = build(spec, key, vocab_size=vocab_size)
    if spec.scheme == "collapselab":
        scheme.watermark = Watermark(key, gamma=spec.gamma, delta=config.watermark_delta, context_width=spec.context_width)
    return scheme


def pooled_z(scores) -> float:
    """A generation's pooled watermark statistic (see the module docstring); NaN if nothing was scored."""
    n = np.asarray(scores.n_scored, dtype=np.float64)
    ok = n > 0
    if not ok.any():
        return float("nan")
    z = np.asarray(scores.z, dtype=np.float64)[ok]
    if np.isfinite(z).all():
        return float(np.sum(z * np.sqrt(n[ok])) / np.sqrt(n[ok].sum()))
    p = np.clip(np.asarray(scores.p_value, dtype=np.float64)[ok], 1e-300, 1.0)
    return float(norm.isf(p).sum() / np.sqrt(ok.sum()))


class Marking:
    """The run's watermark, per process: the key's (``watermark_key``) or a scheme's (``watermark``)
    in each seed's token space, that of ``gen0[seed]`` (generation 0's model of the seed)."""

    def __init__(self, config: ExperimentConfig, gen0: dict) -> None:
        self.config, self.gen0 = config, gen0
        self._schemes: dict = {}
        self._watermark = None

    def __getstate__(self) -> dict:  # keys are loaded in each process, never pickled
        return {**self.__dict__, "_schemes": {}, "_watermark": None}

    @property
    def watermark(self) -> Watermark | None:
        """The run's key watermark (``watermark_key``), or None."""
        if self.config.watermark_key is None:
            return None
        if self._watermark is None:
            self._watermark = Watermark(load_key(self.config.watermark_key), gamma=self.config.watermark_gamma,
                                        delta=self.config.watermark_delta)
        return self._watermark

    def scheme(self, seed: int):
        """The run's scheme (``watermark``) in seed ``seed``'s token space, built once per process."""
        if self.config.watermark is None:
            return None
        if seed not in self._schemes:
            self._schemes[seed] = load_loop_scheme(self.config, self.gen0[seed].watermark_vocab_size())
        return self._schemes[seed]

    def detector(self, seed: int) -> SchemeDetector | None:
        """The scheme as a detector of seed ``seed``'s word-id items (for filter:watermark), or None."""
        if self.config.watermark is None:
            return None
        return SchemeDetector(self.scheme(seed), self.gen0[seed].watermark_tokens)

    def marker(self, seed: int | None):
        """What the samplers of seed ``seed`` embed: the scheme, the key's watermark, or None."""
        if self.config.watermark is None:
            return self.watermark
        if seed is None:
            raise ValueError("a run with a watermark scheme samples in a seed's token space: pass the seed")
        return self.scheme(seed)

    def sample(self, model, n: int, rng, seed: int | None = None):
        """``n`` items; with a watermark, the first ``round(watermark_share n)`` carry it and the
        rest are drawn after them, unmarked, from the same generator (the contaminated web)."""
        wm = self.marker(seed)
        marked = n if wm is None else int(round(self.config.watermark_share * n))
        if wm is None or marked == n:
            return sample(model, n, rng=rng, watermark=wm)
        parts = [sample(model, marked, rng=rng, watermark=wm)] if marked else []
        return concat(parts + [sample(model, n - marked, rng=rng)])

    def measure(self, seed: int, samples) -> dict:
        """``watermark_z`` and ``watermark_flagged_share`` of a generation's output (none without a watermark)."""
        if self.config.watermark is not None:  # how strongly the output carries the scheme's key
            scheme = self.scheme(seed)
            scores = scheme.score(self.gen0[seed].watermark_tokens(samples))
            return {"watermark_z": pooled_z(scores),
                    "watermark_flagged_share": float(np.mean(scores.p_value <= scheme.flag_p_value))}
        wm = self.watermark
        if wm is None:
            return {}
        det = wm.detect(samples, pad=BOS)  # how strongly the output carries the key
        z, _ = wm.z_and_p(det.n_green.sum(), det.n_scored.sum())
        return {"watermark_z": float(z), "watermark_flagged_share": float(np.mean(det.z >= FLAG_Z))}
