"""Scorers: what ``scan`` (and ``filter --detector length``) compute for each document, built by
:func:`make_scorer` from scan's detector options.

A scorer wraps a detector or watermark scheme of the detect stack (:mod:`collapselab.detect`),
nothing re-implemented: ``score(texts) -> {column: array | None}`` (the sidecar's score columns),
``flagged(cols) -> bool array`` (its flag rule), ``scheme_name`` (the sidecar's ``scheme``
column), ``calibrate()`` (the LM detectors set their threshold on the vault's human text; a no-op
for the others), ``exact`` (the FPR is an exact binomial tail, ``exact_fpr(n_scored)``), and
``threshold`` / ``rule``.

- ``watermark``: :class:`~collapselab.detect.schemes.ours.CollapselabScheme` with ``key``,
  ``gamma``, ``context_width`` over the run's word vocabulary, or any scheme spec
  (``watermark=SPEC``, :mod:`collapselab.detect.schemes`) with ``tokenizer`` or ``ids_field``;
- ``perplexity``: :class:`~collapselab.detect.likelihood.PerplexityDetector` with a reference
  n-gram fitted on half of a vault snapshot, its threshold set on the other half;
- ``fast-detectgpt``, ``binoculars``: :mod:`collapselab.detect.lm`, calibrated on all the vault
  snapshot's human text;
- ``length``: the text's length in characters (flags nothing).

Word-vocabulary text is tokenised by :class:`~collapselab.pipeline.tokenizer.VocabTokenizer`
(the corpus tokeniser, :func:`collapselab.corpus.tokenize.tokenize`, with ``<s>``, ``</s>`` and
``<unk>`` kept whole; vectorised).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from collapselab.errors import UserError
from collapselab.pipeline.io import file_sha256

LM_DETECTORS = ("fast-detectgpt", "binoculars")
DETECTORS = ("watermark", "perplexity", "length", *LM_DETECTORS)


def _tokenizer(vocab):
    """Token ids as :func:`~collapselab.pipeline.tokenizer.tokenize_doc` and a vocabulary lookup give them, vectorised."""
    from collapselab.corpus.tokenize import UNK_ID
    from collapselab.pipeline.tokenizer import VocabTokenizer

    return VocabTokenizer(vocab.words.tolist(), UNK_ID)


class SchemeScorer:
    """A watermark scheme (:mod:`collapselab.detect.schemes`) over the ids a tokenizer gives.

    ``tokenizer``: ``encode(texts) -> TokenSequences`` (the run's word vocabulary for the
    collapselab scheme, a model's BPE for the deployed ones), or None: the field holds token ids.
    Flag rule: ``z >= z_threshold`` when given (KGW's rule, the collapselab scheme's default),
    else ``p_value <= scheme.flag_p_value``."""

    exact = True

    def __init__(self, scheme, tokenizer, *, z_threshold: float | None = None) -> None:
        self.scheme, self.tokenizer = scheme, tokenizer
        self.scheme_name = scheme.name
        self.z_threshold = None if z_threshold is None else float(z_threshold)
        self.threshold = self.z_threshold if self.z_threshold is not None else float(scheme.flag_p_value)
        self.rule = f"z >= {self.threshold:g}" if self.z_threshold is not None else f"p <= {self.threshold:g}"

    def score(self, texts: list) -> dict[str, np.ndarray]:
        from collapselab.corpus.sequences import TokenSequences

        seqs = TokenSequences.from_lists(texts) if self.tokenizer is None else self.tokenizer.encode(texts)
        try:
            s = self.scheme.score(seqs)
        except ValueError as e:  # ids outside the scheme's vocabulary
            raise UserError(f"scheme {self.scheme_name}: {e}; check --tokenizer / --ids-field against the spec's "
                            "vocab_size.") from None
        return {"n_tokens": seqs.lengths, "n_scored": s.n_scored, "n_green": s.n_green, "score": s.score, "z": s.z,
                "p_value": s.p_value, "n_trials": s.trials}

    def calibrate(self) -> None:
        """Nothing to do: a watermark's null distribution is known exactly."""

    def flagged(self, cols: dict) -> np.ndarray:
        if self.z_threshold is not None:
            return np.nan_to_num(cols["z"], nan=-np.inf) >= self.z_threshold
        return cols["p_value"] <= self.threshold

    def exact_fpr(self, n_scored: np.ndarray) -> np.ndarray:
        """P(flagged | human) per document with ``n_scored`` scored tokens."""
        if self.z_threshold is None:
            return self.scheme.null_flag_prob(n_scored, self.threshold)
        return _z_rule_fpr(self.scheme.watermark, n_scored, self.z_threshold)


def _z_rule_fpr(wm, n_scored: np.ndarray, z_threshold: float) -> np.ndarray:
    """P(Bin(T, gamma) >= least G with z(G, T) >= threshold), per document."""
    from scipy import stats

    t_all = np.asarray(n_scored, dtype=np.int64)
    t, inverse = np.unique(t_all, return_inverse=True)
    g = wm.gamma
    # the least green count whose z reaches the threshold lies a step or two from the real root
    low = np.maximum(0, np.floor(g * t + z_threshold * np.sqrt(t * g * (1 - g))).astype(np.int64) - 2)
    least = np.full(len(t), -1, dtype=np.int64)
    for k in range(6):
        cand = low + k
        z, _ = wm.z_and_p(cand, t)
        new = (least < 0) & (cand <= t) & (np.nan_to_num(z, nan=-np.inf) >= z_threshold)
        least[new] = cand[new]
    fpr = np.where((least >= 0) & (t > 0), stats.binom.sf(np.maximum(least, 0) - 1, np.maximum(t, 1), g), 0.0)
    return fpr[inverse]


class PerplexityScorer:
    """:class:`~collapselab.detect.likelihood.PerplexityDetector` (``score = direction *
    log-perplexity``) with a reference n-gram fitted on half of a vault snapshot.

    The snapshot's documents (hash order) alternate: even ones fit the reference model, odd ones
    are the held-out human text the threshold is set on (``threshold_at_fpr``, flag = score >
    threshold) and the FPR is measured on (so it has a sample size for the CI)."""

    exact = False
    scheme_name = "perplexity"

    def __init__(self, vault, snapshot, vocab, *, order: int, direction: float, fpr_target: float) -> None:
        from collapselab.detect.calibration import rate_above, threshold_at_fpr
        from collapselab.detect.likelihood import PerplexityDetector
        from collapselab.models.ngram import NGramModel
        from collapselab.provenance.vault import Vault

        v = vault if isinstance(vault, Vault) else Vault(vault)
        self.snapshot = snapshot or v.latest_snapshot()
        self.merkle_root = v.snapshot(self.snapshot).merkle_root
        texts = v.texts(self.snapshot)
        if len(texts) < 20:
            raise UserError(f"--vault: snapshot {self.snapshot!r} holds {len(texts)} documents; the perplexity "
                            "detector needs at least 20 (half fit the reference, half calibrate the threshold).")
        self.tokenizer = _tokenizer(vocab)
        reference = NGramModel(order, vocab_size=len(vocab)).fit(self.tokenizer.encode(texts[0::2]))
        self.detector = PerplexityDetector(reference, direction=float(direction))
        held = self.score(texts[1::2])["score"]
        self.threshold = threshold_at_fpr(held, fpr_target)
        self.fpr, self.n_fpr = rate_above(held, self.threshold), len(held)

    def calibrate(self) -> None:
        """Nothing to do: the threshold was set on the held-out half when the scorer was made."""

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        seqs = self.tokenizer.encode(texts)  # the scan's tokens: <s>, </s>, <unk> whole
        n = len(seqs)
        nan = np.full(n, np.nan)
        return {"n_tokens": np.diff(seqs.offsets), "n_scored": np.diff(seqs.offsets) + 1,
                "n_green": np.zeros(n, dtype=np.int64), "score": self.detector.score(seqs), "z": nan, "p_value": nan}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.nan_to_num(cols["score"], nan=-np.inf) > self.threshold


class LMScorer:
    """A zero-shot LM detector (:mod:`collapselab.detect.lm`), its threshold at ``fpr_target`` on
    all the human text of a vault snapshot (:meth:`calibrate`, after the rerun check: it reads the
    whole snapshot with the model) and conformal p-values against those human scores."""

    exact = False

    def __init__(self, detector, vault, snapshot, *, fpr_target: float, threads: int | None = None) -> None:
        from collapselab.provenance.vault import Vault

        v = vault if isinstance(vault, Vault) else Vault(vault)
        self.detector = detector
        self.scheme_name = detector.name
        self.vault_path = str(v.path)
        self.snapshot = snapshot or v.latest_snapshot()
        snap = v.snapshot(self.snapshot)
        self.merkle_root = snap.merkle_root
        if len(snap.hashes) < 20:
            raise UserError(f"--vault: snapshot {self.snapshot!r} holds {len(snap.hashes)} documents; the {detector.name} "
                            "detector needs at least 20 human documents to set its threshold on.")
        self.fpr_target = fpr_target
        self.threads = threads  # torch threads in a worker process (None: leave torch's default)
        self._pid = os.getpid()
        self.threshold = float("nan")

    def calibrate(self) -> None:
        from collapselab.detect.calibration import _clean, rate_above, threshold_at_fpr
        from collapselab.provenance.vault import Vault

        human = self.detector.score(Vault(self.vault_path).texts(self.snapshot))
        self.human = np.sort(_clean(human))
        self.threshold = threshold_at_fpr(human, self.fpr_target)
        self.fpr, self.n_fpr = rate_above(human, self.threshold), len(human)

    def p_values(self, score: np.ndarray) -> np.ndarray:
        """``(1 + #{human >= score}) / (n + 1)``; NaN (no token) counts as least synthetic: 1."""
        from collapselab.detect.calibration import _clean

        n = len(self.human)
        at_least = n - np.searchsorted(self.human, _clean(score), side="left")
        return (1.0 + at_least) / (n + 1.0)

    def score(self, texts: list[str]) -> dict[str, np.ndarray | None]:
        if self.threads and os.getpid() != self._pid:  # a worker process: share the cores with the others
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        st = self.detector.stats(texts)
        score = self.detector.from_stats(st)
        n_tok = np.bincount(st.item, minlength=st.n_items).astype(np.int64)
        nan = np.full(len(texts), np.nan)
        return {"n_tokens": n_tok, "n_scored": n_tok, "n_green": None, "score": score, "z": nan,
                "p_value": self.p_values(score)}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.nan_to_num(cols["score"], nan=-np.inf) > self.threshold


def _lm_detector(detector: str, *, lm_model, performer, device: str, dtype: str, batch_tokens: int,
                 max_tokens: int | None) -> tuple[object, dict]:
    """The detector and the settings the manifest records (each model by name and by its files' SHA-256)."""
    from collapselab.detect.lm import Binoculars, FastDetectGPT, resolve_model

    if detector == "binoculars":
        if performer is None:
            raise UserError("--detector binoculars needs --performer DIR: a second model (e.g. a SmolLM2 fine-tuned by "
                            "the loop: python bench/lm_performer.py), the observer being --lm-model.")
        det = Binoculars(observer=str(lm_model), performer=str(performer), device=device, dtype=dtype,
                         batch_tokens=batch_tokens, max_tokens=max_tokens)
    else:
        if performer is not None:
            raise UserError("--performer is Binoculars' second model; it does not go with --detector fast-detectgpt.")
        det = FastDetectGPT(str(lm_model), device=device, dtype=dtype, batch_tokens=batch_tokens, max_tokens=max_tokens)
    params = {"lm_model": str(lm_model), "lm_model_sha256": _model_digest(resolve_model(lm_model)),
              "performer": None if performer is None else str(performer),
              "performer_sha256": None if performer is None else _model_digest(resolve_model(performer)),
              "device": device, "dtype": dtype, "batch_tokens": int(batch_tokens), "max_tokens": max_tokens}
    return det, params


def _model_digest(folder: str) -> str:
    """SHA-256 over the SHA-256 of a model folder's files (config, weights, tokenizer), by name."""
    import hashlib

    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    return hashlib.sha256("".join(f"{p.name} {file_sha256(p)}\n" for p in files).encode()).hexdigest()


class LengthScorer:
    """``score`` = the text's length in characters; no token counts, flags nothing."""

    exact = False
    threshold = float("nan")
    scheme_name = "length"

    def calibrate(self) -> None:
        """Nothing to do: the length detector has no threshold."""

    def score(self, texts: list[str]) -> dict[str, np.ndarray | None]:
        n = len(texts)
        nan = np.full(n, np.nan)
        return {"n_tokens": None, "n_scored": None, "n_green": None,
                "score": np.fromiter(map(len, texts), dtype=np.float64, count=n), "z": nan, "p_value": nan}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.zeros(len(cols["score"]), dtype=bool)


def _load_vocab(vocab):
    from collapselab.corpus.tokenize import Vocabulary

    if isinstance(vocab, Vocabulary):
        return vocab, None
    p = Path(vocab)
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not a vocabulary file; name the file itself (a run folder's vocab.txt).")
    if not p.is_file():
        raise UserError(f"{p}: no such vocabulary file (one word a line, as `Vocabulary.save` writes it).")
    try:
        v = Vocabulary.load(p)
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{p}: line {line} is not UTF-8 text; a vocabulary file holds one word a line, as "
                        "`Vocabulary.save` writes it (a run folder's vocab.txt).") from None
    words = v.words.tolist()
    if len(set(words)) != len(words):
        seen: set = set()
        dup = next(w for w in words if w in seen or seen.add(w))
        raise UserError(f"{p}: the word {dup!r} is listed twice; a vocabulary file holds each word once "
                        "(a run folder's vocab.txt).")
    return v, file_sha256(p)


def _load_key(key) -> bytes:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    from collapselab.provenance.keys import load_key

    return load_key(key)



def _load_scheme(watermark, tokenizer, ids_field, vocab) -> tuple[SchemeScorer, dict]:
    """The scorer for ``--watermark SPEC`` and the settings its manifest records (never the key)."""
    from collapselab.detect.schemes import Scheme, build, read_key, read_spec
    from collapselab.detect.schemes.tokenizer import TextTokenizer, load_tokenizer

    if ids_field is not None and tokenizer is not None:
        raise UserError("give --tokenizer (to tokenise --text-field) or --ids-field (token ids already), not both.")
    parsed, key_path = (None, None) if isinstance(watermark, Scheme) else read_spec(watermark)
    name = watermark.name if parsed is None else parsed.scheme
    tparams: dict = {"ids_field": ids_field}
    tok = None
    if name == "collapselab" and ids_field is None:
        if vocab is None:
            raise UserError("the collapselab scheme scores word ids: give --vocab VOCABFILE (the run's vocab.txt), "
                            "or --ids-field.")
        vocab_obj, vocab_hash = _load_vocab(vocab)
        tok, vocab_size = _tokenizer(vocab_obj), len(vocab_obj)
        tparams["vocab_sha256"] = vocab_hash or _vocab_digest(vocab_obj)
    elif ids_field is None:
        if tokenizer is None:
            raise UserError(f"scheme {name}: give --tokenizer PATH (the generator's tokenizer.json, model folder, .gguf "
                            "file or 'smollm2'), or --ids-field FIELD when the records hold token ids.")
        tok = tokenizer if isinstance(tokenizer, TextTokenizer) else load_tokenizer(tokenizer)
        vocab_size = tok.vocab_size
        tparams["tokenizer_sha256"] = tok.sha256
    else:
        vocab_size = None
    scheme = watermark if parsed is None else build(parsed, read_key(name, key_path), vocab_size=vocab_size)
    params = {"scheme": scheme.name, "key_id": scheme.key_id, "scheme_params": scheme.params(),
              "flag_p_value": scheme.flag_p_value, **tparams}
    return SchemeScorer(scheme, tok), params


def _vocab_digest(vocab) -> str:
    import hashlib

    return hashlib.sha256("\n".join(vocab.words.tolist()).encode("utf-8")).hexdigest()


def make_scorer(detector: str = "watermark", *, vocab=None, key=None, watermark=None, tokenizer=None,
                ids_field: str | None = None, z_threshold: float = 4.0, gamma: float = 0.25, context_width: int = 1,
                reference_vault=None, snapshot: str | None = None, fpr_target: float = 0.01, order: int = 3,
                direction: float = 1.0, lm_model: str | os.PathLike = "smollm2", performer=None, device: str = "cpu",
                dtype: str = "float32", batch_tokens: int = 4096, max_tokens: int | None = 512) -> tuple[object, dict]:
    """The scorer for ``detector`` and the settings the scan manifest records (never a key).

    The options are :func:`~collapselab.pipeline.scan.scan_corpus`'s detector keywords; each wrong
    or missing one is a UserError naming the flag. The LM detectors are calibrated by
    ``scorer.calibrate()`` (it reads the whole vault snapshot with the model), the others when made."""
    check_detector_options(detector, vocab=vocab, key=key, watermark=watermark, performer=performer,
                           reference_vault=reference_vault, fpr_target=fpr_target, gamma=gamma,
                           context_width=context_width)  # the cheap checks first
    if watermark is not None:
        return _load_scheme(watermark, tokenizer, ids_field, vocab)
    if detector == "watermark":
        from collapselab.detect.schemes.ours import CollapselabScheme

        vocab_obj, vocab_hash = _load_vocab(vocab)
        ours = CollapselabScheme(_load_key(key), gamma=gamma, context_width=context_width)
        return SchemeScorer(ours, _tokenizer(vocab_obj), z_threshold=z_threshold), {
            "key_id": ours.key_id, "gamma": gamma, "context_width": context_width, "z_threshold": z_threshold,
            "vocab_sha256": vocab_hash or _vocab_digest(vocab_obj)}
    if detector == "perplexity":
        vocab_obj, vocab_hash = _load_vocab(vocab)
        scorer = PerplexityScorer(reference_vault, snapshot, vocab_obj, order=order, direction=direction,
                                  fpr_target=fpr_target)
        return scorer, {"reference_vault": str(reference_vault), "snapshot": scorer.snapshot,
                        "merkle_root": scorer.merkle_root, "order": order, "direction": direction,
                        "fpr_target": fpr_target, "vocab_sha256": vocab_hash or _vocab_digest(vocab_obj)}
    if detector in LM_DETECTORS:
        det, params = _lm_detector(detector, lm_model=lm_model, performer=performer, device=device, dtype=dtype,
                                   batch_tokens=batch_tokens, max_tokens=max_tokens)
        scorer = LMScorer(det, reference_vault, snapshot, fpr_target=fpr_target)
        params.update({"reference_vault": str(reference_vault), "snapshot": scorer.snapshot,
                       "merkle_root": scorer.merkle_root, "fpr_target": fpr_target})
        return scorer, params
    return LengthScorer(), {}


def check_detector_options(detector: str, *, vocab=None, key=None, watermark=None, performer=None, reference_vault=None,
                           fpr_target: float = 0.01, gamma: float = 0.25, context_width: int = 1, **_other) -> None:
    """The cheap checks of :func:`make_scorer` (no file read), for a command to make before any work;
    takes all of :func:`make_scorer`'s options (those it does not check are ignored)."""
    if detector not in DETECTORS:
        raise UserError(f"--detector {detector!r}: use 'watermark' (with --watermark-key), 'perplexity' (with --vault), "
                        "'fast-detectgpt' or 'binoculars' (with --vault) or 'length'.")
    if watermark is not None and detector != "watermark":
        raise UserError(f"--watermark scores with a watermark scheme; it does not go with --detector {detector}.")
    if detector == "watermark" and key is None and watermark is None:
        raise UserError("--detector watermark needs --watermark SPEC (a scheme spec file) or --watermark-key KEYFILE.")
    if watermark is not None and key is not None:
        raise UserError("give --watermark SPEC (its key_file names the key) or --watermark-key KEYFILE, not both.")
    if performer is not None and detector != "binoculars":
        raise UserError(f"--performer is Binoculars' second model; it does not go with --detector {detector}.")
    if detector in ("watermark", "perplexity") and vocab is None and watermark is None:
        raise UserError(f"--detector {detector} needs --vocab VOCABFILE (the generator's vocabulary).")
    if detector == "perplexity" and reference_vault is None:
        raise UserError("--detector perplexity needs --vault DIR (human text to fit and calibrate on).")
    if detector in LM_DETECTORS and reference_vault is None:
        raise UserError(f"--detector {detector} needs --vault DIR (human text to set its threshold on).")
    if not 0 < gamma < 1:
        raise UserError(f"--gamma {gamma:g}: the watermark's green share lies in (0, 1), e.g. 0.25.")
    if context_width < 1:
        raise UserError(f"--context-width {context_width}: the watermark's context is at least 1 token.")
    if not 0 < fpr_target < 1:
        raise UserError(f"--fpr-target {fpr_target:g}: a false-positive rate lies in (0, 1), e.g. 0.01.")
