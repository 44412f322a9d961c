"""``scan``: score every document of JSONL/Parquet files into a sidecar Parquet, and estimate the
corpus's synthetic share corrected for the detector's error rates (Rogan–Gladen).

The detector is the keyed watermark (:class:`~collapselab.detect.watermark.WatermarkDetector`):
it needs no training, only the key, the vocabulary the generator used (token ids) and the
watermark's ``gamma`` and context width. Text is tokenised as the corpus was
(:func:`~collapselab.corpus.tokenize.tokenize`, with ``<s>``, ``</s>``, ``<unk>`` kept whole) and
each document is scored as one item with ``<s>`` padding.

Flag rule: ``z >= z_threshold`` (4 by default, KGW's rule).

False-positive rate (default: exact). Without the key, each distinct (context, token) pair of a
document is green with probability ``gamma`` independently (the PRF), so a human document with
``T`` scored pairs is flagged with probability ``P(Binomial(T, gamma) >= g*(T))``, ``g*(T)`` the
least green count whose z reaches the threshold. The corpus FPR used is the mean of that exact
probability over the scanned documents (their own lengths), and it is treated as known (no
sampling variance). ``fpr=`` overrides it (``n_fpr=`` gives its sample size for the CI).

True-positive rate: depends on the generator's entropy, so it must be measured or given.
``tpr_from=`` scans files of known watermarked text with the same settings and takes the flagged
share (with its count for the CI); ``tpr=`` gives it (``n_tpr=`` its sample size, else treated as
known). With neither, ``tpr = 1`` is assumed and the estimate is a *lower bound* of the synthetic
share (the result says so in ``tpr_source``).

``detector="perplexity"`` (with ``reference_vault=``): ``direction * log-perplexity`` under an
n-gram fitted on half of a vault snapshot, threshold and FPR from the other half (flag = score >
threshold); see ``docs/pipeline.md``.

``detector="fast-detectgpt"`` or ``"binoculars"`` (:mod:`collapselab.detect.lm`, with
``reference_vault=``): zero-shot scores under a causal language model (``lm_model``, SmolLM2-135M
by default; Binoculars' observer, with ``performer=`` its second model). Nothing is fitted, so
*all* the vault snapshot's human text calibrates: the threshold is set at ``fpr_target`` on it
(flag = score > threshold) and the FPR is its rate there (with its count for the CI; the
threshold's own calibration set, so on new human text expect it up to sampling error). The
sidecar's ``p_value`` is the conformal p-value of the score against the same human scores,
``(1 + #{human >= score}) / (n + 1)``: ``filter --fpr a`` then quarantines a human document
exchangeable with the vault's with probability at most ``a``. ``n_tokens`` (= ``n_scored``) counts
the model's tokens read (at most ``max_tokens``). One process by default (``jobs``): torch uses
the cores; with ``jobs=N`` each process loads its own models and uses ``cores / N`` threads.

``detector="length"``: ``score`` is the text's length in characters (Unicode code points), for
quality rules such as ``filter --threshold 20000`` (quarantine documents of 20 000 characters or
more). It is no detector of synthetic text: it flags nothing and estimates no share.

The input is never modified. The sidecar's rows are aligned with the input's records: one row per
well-formed record, in file order, with ``file`` (as given), ``line`` (1-based line or row) and
``id`` (the record's ``id`` field, else ``FILE:LINE``).

Shards and reruns (:mod:`collapselab.pipeline.shards`): the inputs are cut into shards that
``jobs`` local processes score into ``SCORES.parquet.parts/`` (one Parquet file and one
done-marker per shard); the parts are then merged in input order into ``SCORES.parquet`` and
``SCORES.parquet.json`` (the manifest: settings, every shard with the SHA-256 of its input bytes,
the result) is written last; the parts folder is removed. The sidecar is the same whatever
``jobs`` is. A rerun with the same inputs and settings whose sidecar still matches is skipped; a
killed job, rerun, keeps the shards it finished and writes the same sidecar.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from collapselab.atomic import AtomicFile, atomic_write_json, check_output_file
from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline.record import check_ledger, record_step
from collapselab.pipeline.io import (BATCH, MAX_EXAMPLES, Found, check_on_error, file_sha256, inputs_record,
                                     read_manifest, shard_records)

_TOKEN = re.compile(r"<s>|</s>|<unk>|[a-z0-9]+(?:['’-][a-z0-9]+)*|[^\sa-z0-9]")
FORMAT = "collapselab-scan"
VERSION = 3  # 3: the sidecar's ``scheme`` column; deployed watermark schemes (--watermark SPEC)
LM_DETECTORS = ("fast-detectgpt", "binoculars")
DETECTORS = ("watermark", "perplexity", "length", *LM_DETECTORS)


def tokenize_doc(text: str) -> list[str]:
    """The corpus tokeniser, with the special tokens a generator's decoded output may hold kept whole."""
    return _TOKEN.findall(text.lower())


def sidecar_schema():
    import pyarrow as pa

    return pa.schema([("file", pa.string()), ("line", pa.int64()), ("id", pa.string()), ("n_tokens", pa.int64()),
                      ("n_scored", pa.int64()), ("n_green", pa.int64()), ("score", pa.float64()),
                      ("z", pa.float64()), ("p_value", pa.float64()), ("scheme", pa.string())])


SCORE_COLUMNS = ("n_tokens", "n_scored", "n_green", "score", "z", "p_value", "scheme")


@dataclass
class ScanResult:
    out: str
    documents: int
    malformed_skipped: int
    flagged: int
    flagged_share: float  # raw share flagged by ``rule``
    threshold: float
    rule: str
    fpr: float
    fpr_source: str
    tpr: float
    tpr_source: str
    estimate: float  # Rogan–Gladen corrected synthetic share
    low: float  # 95 % CI
    high: float
    skipped: bool = False  # True: a finished output with matching inputs was found, nothing rescored
    per_file: list = field(default_factory=list)
    malformed_lines: list = field(default_factory=list)  # the first MAX_EXAMPLES: {file, line, detail}

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        bad = f"{self.malformed_skipped} malformed skipped" + (
            f", first {self.malformed_lines[0]['file']}:{self.malformed_lines[0]['line']}" if self.malformed_lines else "")
        if self.rule == "none":
            return f"{self.documents} documents scored into {self.out} ({bad}); the length detector flags nothing."
        if self.estimate is None or self.estimate != self.estimate:  # None (from JSON) or NaN: TPR <= FPR
            share = (f"Estimated synthetic share: not estimable, the detector's TPR {self.tpr:.3f} does not exceed "
                     f"its FPR {self.fpr:.2e}")
        else:
            share = (f"Estimated synthetic share: {self.estimate:.2%} (95% CI {self.low:.2%}-{self.high:.2%}), "
                     f"corrected with FPR {self.fpr:.2e} ({self.fpr_source}) and TPR {self.tpr:.3f} ({self.tpr_source})")
        return (f"{self.documents} documents scanned ({bad}); "
                f"flagged ({self.rule}): {self.flagged} ({self.flagged_share:.2%}). {share}.")


def _tokenizer(vocab):
    """Token ids as :func:`tokenize_doc` and a vocabulary lookup give them, vectorised."""
    from collapselab.corpus.tokenize import UNK_ID
    from collapselab.pipeline.tokenizer import VocabTokenizer

    return VocabTokenizer(vocab.words.tolist(), UNK_ID)


class _SchemeScorer:
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


class _PerplexityScorer:
    """``score = direction * log-perplexity`` under an n-gram fitted on half of a vault snapshot.

    The snapshot's documents (hash order) alternate: even ones fit the reference model, odd ones
    are the held-out human text the threshold is set on (``threshold_at_fpr``, flag = score >
    threshold) and the FPR is measured on (so it has a sample size for the CI)."""

    exact = False
    scheme_name = "perplexity"

    def __init__(self, vault, snapshot, vocab, *, order: int, direction: float, fpr_target: float) -> None:
        from collapselab.detect.calibration import rate_above, threshold_at_fpr
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
        self.direction = float(direction)
        self.model = NGramModel(order, vocab_size=len(vocab)).fit(self.tokenizer.encode(texts[0::2]))
        held = self.score(texts[1::2])["score"]
        self.threshold = threshold_at_fpr(held, fpr_target)
        self.fpr, self.n_fpr = rate_above(held, self.threshold), len(held)

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        from collapselab.detect.likelihood import log_perplexity

        seqs = self.tokenizer.encode(texts)
        n = len(seqs)
        raw = log_perplexity(self.model, seqs)
        nan = np.full(n, np.nan)
        return {"n_tokens": np.diff(seqs.offsets), "n_scored": np.diff(seqs.offsets) + 1,
                "n_green": np.zeros(n, dtype=np.int64), "score": self.direction * raw, "z": nan, "p_value": nan}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.nan_to_num(cols["score"], nan=-np.inf) > self.threshold


class _LMScorer:
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

    def score(self, texts: list[str]) -> dict[str, np.ndarray | None]:
        n = len(texts)
        nan = np.full(n, np.nan)
        return {"n_tokens": None, "n_scored": None, "n_green": None,
                "score": np.fromiter(map(len, texts), dtype=np.float64, count=n), "z": nan, "p_value": nan}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.zeros(len(cols["score"]), dtype=bool)


def _check_numbers(*, tpr, n_tpr, fpr, n_fpr, fpr_target, gamma, context_width) -> None:
    """The detector's rates are probabilities: a TPR in (0, 1], an FPR in [0, 1), counts >= 1; the
    watermark's green share in (0, 1) and its context width >= 1."""
    if tpr is not None and not 0 < tpr <= 1:
        raise UserError(f"--tpr {tpr:g}: a true-positive rate lies in (0, 1], e.g. 0.9.")
    if fpr is not None and not 0 <= fpr < 1:
        raise UserError(f"--fpr {fpr:g}: a false-positive rate lies in [0, 1), e.g. 0.01.")
    if not 0 < gamma < 1:
        raise UserError(f"--gamma {gamma:g}: the watermark's green share lies in (0, 1), e.g. 0.25.")
    if context_width < 1:
        raise UserError(f"--context-width {context_width}: the watermark's context is at least 1 token.")
    if not 0 < fpr_target < 1:
        raise UserError(f"--fpr-target {fpr_target:g}: a false-positive rate lies in (0, 1), e.g. 0.01.")
    for flag, n in (("--n-tpr", n_tpr), ("--n-fpr", n_fpr)):
        if n is not None and n < 1:
            raise UserError(f"{flag} {n}: the number of documents a rate was measured on is at least 1.")


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


# ------------------------------------------------------------------------------ one shard
@dataclass
class _Job:
    shard: sh.Shard
    scorer: object
    text_field: str
    on_error: str
    batch_size: int
    parts: str  # the parts folder; None: count only, write nothing (TPR files)
    digest: str
    ids: bool = False  # the field holds token ids, not text


def _part_schema():
    import pyarrow as pa

    return pa.schema([("line", pa.int64()), *((f.name, f.type) for f in sidecar_schema() if f.name not in ("file", "line"))])


def _scan_shard(job: _Job) -> dict:
    """Score one shard into ``parts/part-NNNNN.parquet`` and write its done-marker (or reuse them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = Path(job.parts) if job.parts else None
    if parts is not None and (done := sh.finished(parts, job.shard, job.digest)):
        return done
    found, docs, flagged, n_scored = Found(), 0, 0, Counter()
    name = f"part-{job.shard.index:05d}.parquet"
    schema = _part_schema()
    out = AtomicFile(parts / name) if parts is not None else None
    w = pq.ParquetWriter(out.tmp, schema) if out is not None else None
    try:
        for b in shard_records(job.shard, text_field=job.text_field, on_error=job.on_error,
                               batch_size=job.batch_size, found=found, ids=job.ids):
            if not b.texts:
                continue
            cols = job.scorer.score(b.texts)
            docs += len(b.texts)
            flagged += int(job.scorer.flagged(cols).sum())
            if job.scorer.exact:  # the exact FPR counts the p-value's own draws
                n_scored.update(cols.get("n_trials", cols["n_scored"]).tolist())
            if w is not None:
                n = len(b.texts)
                cols["scheme"] = pa.repeat(pa.scalar(job.scorer.scheme_name), n)
                w.write_table(pa.Table.from_arrays(
                    [pa.array(b.rows), pa.array(b.ids, pa.string()),
                     *(pa.nulls(n, f.type) if cols[f.name] is None else pa.array(cols[f.name], f.type)
                       for f in list(schema)[2:])], schema=schema))
        if w is not None:
            w.close()
            out.commit()
    except BaseException:
        if w is not None:
            w.close()
            out.abort()
        raise
    counts = {"lines": found.lines, "documents": docs, "flagged": flagged, "malformed": found.malformed,
              "examples": found.examples, "n_scored": sorted(n_scored.items())}
    if parts is None:
        return counts
    return sh.mark_done(parts, job.shard, job.digest, found.sha256, [name], **counts)


# ----------------------------------------------------------------------------------- merge
def _merge(shards: list[sh.Shard], marks: list[dict], parts: Path, out: Path) -> list[int]:
    """Write the parts, in shard order, into the sidecar ``out`` with absolute line numbers and
    ids; returns each shard's row count."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = sidecar_schema()
    af = AtomicFile(out)
    w = pq.ParquetWriter(af.tmp, schema)
    rows, base, prev = [], 0, None
    try:
        for shard, mark in zip(shards, marks):
            base = 0 if shard.file != prev or shard.part == 0 else base
            prev = shard.file
            n_rows = 0
            for rb in pq.ParquetFile(parts / f"part-{shard.index:05d}.parquet").iter_batches(batch_size=BATCH):
                n = rb.num_rows
                line = pc.add(rb.column(0), base + 1)
                ids = pc.coalesce(rb.column(1), pc.binary_join_element_wise(
                    pa.scalar(f"{shard.file}:"), pc.cast(line, pa.string()), ""))
                w.write_table(pa.Table.from_arrays([pa.repeat(pa.scalar(shard.file), n), line, ids,
                                                    *rb.columns[2:]], schema=schema))
                n_rows += n
            rows.append(n_rows)
            base += mark["lines"]
        w.close()
    except BaseException:
        w.close()
        af.abort()
        raise
    af.commit()
    return rows


def _exact_fpr_sum(scorer, counts) -> float:
    """Sum of the exact per-document FPR from the histogram of scored lengths (the same sum
    whatever the sharding: integer counts, added in length order)."""
    if not counts:
        return 0.0
    t = np.array([c[0] for c in counts], dtype=np.int64)
    k = np.array([c[1] for c in counts], dtype=np.float64)
    return float(np.dot(scorer.exact_fpr(t), k))


def _valid_manifest(old: dict | None, params: dict, shards: list[sh.Shard], out: Path, jobs: int) -> bool:
    if not old or old.get("format") != FORMAT or old.get("version") != VERSION or old.get("params") != params:
        return False
    recs = [s for f in old.get("inputs", []) for s in f.get("shards", [])]
    if len(recs) != len(shards) or not all(s.same(r) for s, r in zip(shards, recs)):
        return False
    if not out.is_file() or file_sha256(out) != old.get("output", {}).get("sha256"):
        return False
    return sh.run(sh.input_digest, shards, jobs) == [r["sha256"] for r in recs]


def scan_corpus(inputs: Sequence[str | os.PathLike], *, vocab=None, key=None, out: str | os.PathLike,
                detector: str = "watermark", text_field: str = "text", on_error: str = "fail", z_threshold: float = 4.0,
                gamma: float = 0.25, context_width: int = 1, tpr: float | None = None, n_tpr: int | None = None,
                fpr: float | None = None, n_fpr: int | None = None, tpr_from: Sequence[str | os.PathLike] = (),
                batch_size: int = BATCH, force: bool = False, reference_vault=None, snapshot: str | None = None,
                fpr_target: float = 0.01, order: int = 3, direction: float = 1.0, jobs: int | None = None,
                shard_bytes: int = sh.SHARD_BYTES, progress: sh.Progress | None = None,
                ledger: str | os.PathLike | None = None, watermark=None, tokenizer=None,
                ids_field: str | None = None, lm_model: str | os.PathLike = "smollm2",
                performer: str | os.PathLike | None = None, device: str = "cpu", batch_tokens: int = 4096,
                max_tokens: int | None = 512, dtype: str = "float32") -> ScanResult:
    """Score ``inputs`` into the sidecar ``out`` and estimate the synthetic share (see the module).

    ``watermark``: a scheme spec file (YAML/JSON, :mod:`collapselab.detect.schemes.spec`) or a
    built :class:`~collapselab.detect.schemes.Scheme`; the text is then tokenised with
    ``tokenizer`` (a tokenizer.json, model folder, .gguf file or ``"smollm2"``; the collapselab
    scheme uses ``vocab``), or ``ids_field`` names the field holding each document's token ids.
    Flag rule: ``p_value <= flag_p_value`` (the spec's); ``key=`` (today's collapselab
    watermark with ``gamma`` and ``context_width``) keeps ``z >= z_threshold``.

    ``detector="fast-detectgpt" | "binoculars"``: ``lm_model`` (``"smollm2"`` or a model folder: the
    scoring model, Binoculars' observer), ``performer`` (Binoculars' second model folder),
    ``device`` (``"cpu"``, ``"cuda"``), ``dtype`` (``"float32"``, ``"bfloat16"``), ``batch_tokens``
    (tokens per forward pass, padding included) and ``max_tokens`` (tokens read per document, None:
    all) as in :mod:`collapselab.detect.lm`; calibrated on all of ``reference_vault``'s snapshot.

    ``ledger``: a provenance ledger (path or URL) to record the scan in, as a step whose inputs are
    ``inputs`` and whose outputs are the sidecar and its manifest (:mod:`collapselab.pipeline.record`)."""
    from collapselab.detect.calibration import rogan_gladen

    if detector not in DETECTORS:
        raise UserError(f"--detector {detector!r}: use 'watermark' (with --watermark-key), 'perplexity' (with --vault), "
                        "'fast-detectgpt' or 'binoculars' (with --vault) or 'length'.")
    if watermark is not None and detector != "watermark":
        raise UserError(f"--watermark scores with a watermark scheme; it does not go with --detector {detector}.")
    if detector == "watermark" and key is None and watermark is None:
        raise UserError("--detector watermark needs --watermark SPEC (a scheme spec file) or --watermark-key KEYFILE.")
    if watermark is not None and key is not None:
        raise UserError("give --watermark SPEC (its key_file names the key) or --watermark-key KEYFILE, not both.")
    scheme = _load_scheme(watermark, tokenizer, ids_field, vocab) if watermark is not None else None
    lm = detector in LM_DETECTORS
    if performer is not None and detector != "binoculars":
        raise UserError(f"--performer is Binoculars' second model; it does not go with --detector {detector}.")
    if detector not in ("length", *LM_DETECTORS) and vocab is None and scheme is None:
        raise UserError(f"--detector {detector} needs --vocab VOCABFILE (the generator's vocabulary).")
    if detector == "perplexity" and reference_vault is None:
        raise UserError("--detector perplexity needs --vault DIR (human text to fit and calibrate on).")
    if lm and reference_vault is None:
        raise UserError(f"--detector {detector} needs --vault DIR (human text to set its threshold on).")
    check_on_error(on_error)
    jobs = 1 if lm and jobs is None else sh.check_jobs(jobs)  # LM: one process, torch threads use the cores
    sh.check_shard_bytes(shard_bytes)
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1.")
    if not inputs:
        raise UserError("scan: no input file given.")
    for p in [*inputs, *tpr_from]:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such file.")
    if tpr is not None and tpr_from:
        raise UserError("give either --tpr or --tpr-from, not both.")
    _check_numbers(tpr=tpr, n_tpr=n_tpr, fpr=fpr, n_fpr=n_fpr, fpr_target=fpr_target, gamma=gamma,
                 context_width=context_width)
    out = Path(out)
    if out.resolve() in {Path(p).resolve() for p in inputs}:
        raise UserError(f"{out}: is one of the inputs; the input is never modified. Pick another --out.")
    check_output_file(out, "--out")  # a folder, a path under a file, an unwritable folder: before any work
    if scheme is not None:
        scorer, dparams = scheme
    elif detector == "watermark":
        from collapselab.detect.schemes.ours import CollapselabScheme

        vocab_obj, vocab_hash = _load_vocab(vocab)
        ours = CollapselabScheme(_load_key(key), gamma=gamma, context_width=context_width)
        scorer = _SchemeScorer(ours, _tokenizer(vocab_obj), z_threshold=z_threshold)
        dparams = {"key_id": ours.key_id, "gamma": gamma, "context_width": context_width, "z_threshold": z_threshold,
                   "vocab_sha256": vocab_hash or _vocab_digest(vocab_obj)}
    elif detector == "perplexity":
        vocab_obj, vocab_hash = _load_vocab(vocab)
        scorer = _PerplexityScorer(reference_vault, snapshot, vocab_obj, order=order, direction=direction,
                                   fpr_target=fpr_target)
        dparams = {"reference_vault": str(reference_vault), "snapshot": scorer.snapshot, "merkle_root": scorer.merkle_root,
                   "order": order, "direction": direction, "fpr_target": fpr_target,
                   "vocab_sha256": vocab_hash or _vocab_digest(vocab_obj)}
    elif lm:
        det, dparams = _lm_detector(detector, lm_model=lm_model, performer=performer, device=device, dtype=dtype,
                                    batch_tokens=batch_tokens, max_tokens=max_tokens)
        threads = max(1, len(os.sched_getaffinity(0)) // jobs) if jobs > 1 and hasattr(os, "sched_getaffinity") else None
        scorer = _LMScorer(det, reference_vault, snapshot, fpr_target=fpr_target, threads=threads)
        dparams.update({"reference_vault": str(reference_vault), "snapshot": scorer.snapshot,
                        "merkle_root": scorer.merkle_root, "fpr_target": fpr_target})
    else:
        scorer, dparams = LengthScorer(), {}
    manifest_path = Path(str(out) + ".json")
    parts = Path(str(out) + ".parts")
    check_ledger(ledger)
    params = {"detector": detector, **dparams, "text_field": text_field, "on_error": on_error, "tpr": tpr,
              "n_tpr": n_tpr, "fpr": fpr, "n_fpr": n_fpr, "tpr_from": inputs_record(tpr_from), "shard_bytes": shard_bytes}
    shards = sh.plan(inputs, shard_bytes)
    old = read_manifest(manifest_path)
    if not force and _valid_manifest(old, params, shards, out, jobs):
        shutil.rmtree(parts, ignore_errors=True)
        result = ScanResult(**{**old["result"], "skipped": True})
        record_step(ledger, "scan", inputs=inputs, outputs=[out, manifest_path], params=params, result=result)
        return result
    if force:
        shutil.rmtree(parts, ignore_errors=True)
    if lm:
        scorer.calibrate()  # reads the whole snapshot with the model: only when there is work to do

    digest = sh.settings_digest({"format": FORMAT, "version": VERSION, **params})
    job = dict(scorer=scorer, text_field=ids_field or text_field, on_error=on_error, batch_size=batch_size, digest=digest,
               ids=ids_field is not None)
    with sh.parts_folder(parts):
        marks = sh.run(_scan_shard, [_Job(s, parts=str(parts), **job) for s in shards], jobs,
                       sh.ticker(progress, len(shards), "scanning"))
    rows = _merge(shards, marks, parts, out)

    docs = sum(m["documents"] for m in marks)
    if docs == 0:  # nothing to estimate a share of: say so rather than print nan%, and keep no empty sidecar
        out.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
        skipped = sum(m["malformed"] for m in marks)
        raise UserError(f"{', '.join(map(str, inputs))}: no document to scan"
                        + (f" ({skipped} malformed lines skipped)" if skipped else " (the input is empty)")
                        + ". Check the files and --text-field.")
    flagged = sum(m["flagged"] for m in marks)
    malformed = sum(m["malformed"] for m in marks)
    hist: Counter = Counter()
    for m in marks:
        hist.update({t: c for t, c in m["n_scored"]})
    per_file, inputs_rec, examples, base = {}, {}, [], 0
    for s, m, r in zip(shards, marks, rows):
        base = 0 if s.part == 0 else base
        f = per_file.setdefault(s.file, {"file": s.file, "documents": 0, "flagged": 0, "malformed_skipped": 0})
        f["documents"] += m["documents"]
        f["flagged"] += m["flagged"]
        f["malformed_skipped"] += m["malformed"]
        examples += [{"file": s.file, "line": base + i + 1, "detail": d} for i, d in m["examples"]]
        inputs_rec.setdefault(s.file, {"path": s.file, "bytes": os.path.getsize(s.file), "shards": []})["shards"].append(
            {**s.to_dict(), "sha256": m["sha256"], "lines": m["lines"], "rows": r})
        base += m["lines"]

    if fpr is None and scorer.exact:
        fpr_v = _exact_fpr_sum(scorer, sorted(hist.items())) / docs if docs else 0.0
        fpr_src, n_fpr_v = "exact binomial at the scanned lengths", None
    elif fpr is None and detector == "perplexity":
        fpr_v, fpr_src, n_fpr_v = scorer.fpr, f"measured on {scorer.n_fpr} held-out vault documents", scorer.n_fpr
    elif fpr is None and lm:
        fpr_v, n_fpr_v = scorer.fpr, scorer.n_fpr
        fpr_src = f"measured on the {scorer.n_fpr} vault documents the threshold was set on"
    elif fpr is None:
        fpr_v, fpr_src, n_fpr_v = float("nan"), "none: the length detector flags nothing", None
    else:
        fpr_v, fpr_src, n_fpr_v = float(fpr), "given" + (f" (n={n_fpr})" if n_fpr else ""), n_fpr
    if tpr_from:
        tp = [_scan_shard(_Job(s, parts=None, **job)) for s in sh.plan(tpr_from, shard_bytes)]
        t_docs, t_flag = sum(m["documents"] for m in tp), sum(m["flagged"] for m in tp)
        if not t_docs:
            raise UserError("--tpr-from: no document in the given files.")
        tpr_v, n_tpr_v, tpr_src = t_flag / t_docs, t_docs, f"measured on {t_docs} known watermarked documents"
    elif tpr is not None:
        tpr_v, n_tpr_v, tpr_src = float(tpr), n_tpr, "given" + (f" (n={n_tpr})" if n_tpr else "")
    else:
        tpr_v, n_tpr_v, tpr_src = 1.0, None, "assumed 1: the estimate is a lower bound"
    q = flagged / docs if docs else 0.0
    if docs and tpr_v > fpr_v:
        pr = rogan_gladen(q, tpr_v, fpr_v, n=docs, n_tpr=n_tpr_v, n_fpr=n_fpr_v)
        est, lo, hi = pr.estimate, pr.low, pr.high
    else:
        est = lo = hi = float("nan")
    if detector == "length":
        thr, rule = float("nan"), "none"
    elif scorer.exact:
        thr, rule = scorer.threshold, scorer.rule
    else:
        thr = float(scorer.threshold)
        rule = f"score > {thr:.6g}"
    result = ScanResult(str(out), docs, malformed, flagged, q, thr, rule, fpr_v, fpr_src, tpr_v, tpr_src,
                        est, lo, hi, False, list(per_file.values()), examples[:MAX_EXAMPLES])
    try:
        atomic_write_json(manifest_path, {"format": FORMAT, "version": VERSION, "inputs": list(inputs_rec.values()),
                                          "params": params, "output": {"path": str(out), "sha256": file_sha256(out)},
                                          "result": {k: v for k, v in result.to_dict().items() if k != "skipped"}})
    except BaseException:  # a sidecar no manifest vouches for is not left to look finished, nor an old manifest
        out.unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
        raise
    shutil.rmtree(parts, ignore_errors=True)
    record_step(ledger, "scan", inputs=inputs, outputs=[out, manifest_path], params=params, result=result)
    return result


def _load_scheme(watermark, tokenizer, ids_field, vocab) -> tuple[_SchemeScorer, dict]:
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
    return _SchemeScorer(scheme, tok), params


def _vocab_digest(vocab) -> str:
    import hashlib

    return hashlib.sha256("\n".join(vocab.words.tolist()).encode("utf-8")).hexdigest()
