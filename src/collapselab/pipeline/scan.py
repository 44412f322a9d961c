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

The input is never modified. The sidecar's rows are aligned with the input's records: one row per
well-formed record, in file order, with ``file`` (as given), ``line`` (1-based line or row) and
``id`` (the record's ``id`` field, else ``FILE:LINE``). Next to it, ``SCORES.parquet.json`` (the
manifest) records the inputs' SHA-256, the settings and the result; a rerun with the same inputs
and settings whose sidecar still matches its recorded hash is skipped.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from collapselab.atomic import atomic_write_json
from collapselab.errors import UserError
from collapselab.atomic import AtomicFile
from collapselab.pipeline.io import BATCH, check_on_error, file_sha256, inputs_record, read_batches, read_manifest

_TOKEN = re.compile(r"<s>|</s>|<unk>|[a-z0-9]+(?:['’-][a-z0-9]+)*|[^\sa-z0-9]")
FORMAT = "collapselab-scan"
VERSION = 1


def tokenize_doc(text: str) -> list[str]:
    """The corpus tokeniser, with the special tokens a generator's decoded output may hold kept whole."""
    return _TOKEN.findall(text.lower())


def sidecar_schema():
    import pyarrow as pa

    return pa.schema([("file", pa.string()), ("line", pa.int64()), ("id", pa.string()), ("n_tokens", pa.int64()),
                      ("n_scored", pa.int64()), ("n_green", pa.int64()), ("score", pa.float64()),
                      ("z", pa.float64()), ("p_value", pa.float64())])


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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.documents} documents scanned ({self.malformed_skipped} malformed skipped); "
                f"flagged ({self.rule}): {self.flagged} ({self.flagged_share:.2%}). "
                f"Estimated synthetic share: {self.estimate:.2%} (95% CI {self.low:.2%}-{self.high:.2%}), "
                f"corrected with FPR {self.fpr:.2e} ({self.fpr_source}) and TPR {self.tpr:.3f} ({self.tpr_source}).")


class _WatermarkScorer:
    exact = True

    def __init__(self, key: bytes, vocab, *, gamma: float, context_width: int, z_threshold: float) -> None:
        from collapselab.provenance.watermark import Watermark

        self.wm = Watermark(key, gamma=gamma, context_width=context_width)
        self.vocab = vocab
        self._ids = {w: i for i, w in enumerate(vocab.words.tolist())}  # dict lookups beat pandas here
        self.z_threshold = float(z_threshold)
        self._fpr_cache: dict[int, float] = {}

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        from collapselab.models.ngram import BOS

        from collapselab.corpus.sequences import TokenSequences
        from collapselab.corpus.tokenize import UNK_ID

        get, find = self._ids.get, _TOKEN.findall
        docs = [[get(w, UNK_ID) for w in find(t.lower())] for t in texts]
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=offsets[1:])
        tokens = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(offsets[-1]))
        seqs = TokenSequences(tokens, offsets)
        d = self.wm.detect(seqs, pad=BOS)
        z = np.asarray(d.z, dtype=np.float64)
        return {"n_tokens": np.diff(seqs.offsets), "n_scored": np.asarray(d.n_scored), "n_green": np.asarray(d.n_green),
                "score": np.nan_to_num(z, nan=0.0), "z": z, "p_value": np.asarray(d.p_value, dtype=np.float64)}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.nan_to_num(cols["z"], nan=-np.inf) >= self.z_threshold

    def exact_fpr(self, n_scored: np.ndarray) -> np.ndarray:
        """P(flagged | human) per document: P(Bin(T, gamma) >= least G with z(G, T) >= threshold)."""
        from scipy import stats

        out = np.empty(len(n_scored))
        for T in np.unique(n_scored).tolist():
            if T not in self._fpr_cache:
                if T == 0:
                    self._fpr_cache[T] = 0.0
                else:
                    g = self.wm.gamma
                    cand = np.arange(max(0, math.floor(g * T + self.z_threshold * math.sqrt(T * g * (1 - g))) - 2),
                                     T + 2)
                    z, _ = self.wm.z_and_p(cand, np.full(len(cand), T))
                    ok = cand[(z >= self.z_threshold) & (cand <= T)]
                    self._fpr_cache[T] = float(stats.binom.sf(ok[0] - 1, T, g)) if len(ok) else 0.0
            out[n_scored == T] = self._fpr_cache[T]
        return out


class _PerplexityScorer:
    """``score = direction * log-perplexity`` under an n-gram fitted on half of a vault snapshot.

    The snapshot's documents (hash order) alternate: even ones fit the reference model, odd ones
    are the held-out human text the threshold is set on (``threshold_at_fpr``, flag = score >
    threshold) and the FPR is measured on (so it has a sample size for the CI)."""

    exact = False

    def __init__(self, vault, snapshot, vocab, *, order: int, direction: float, fpr_target: float) -> None:
        from collapselab.detect.calibration import rate_above, threshold_at_fpr
        from collapselab.models.ngram import NGramModel
        from collapselab.provenance.vault import Vault

        v = vault if isinstance(vault, Vault) else Vault(vault)
        self.snapshot = snapshot or v.latest_snapshot()
        self.merkle_root = v.snapshot(self.snapshot).merkle_root
        texts = v.texts(self.snapshot)
        if len(texts) < 20:
            raise UserError(f"--reference-vault: snapshot {self.snapshot!r} holds {len(texts)} documents; the perplexity "
                            "detector needs at least 20 (half fit the reference, half calibrate the threshold).")
        self._ids = {w: i for i, w in enumerate(vocab.words.tolist())}
        self.direction = float(direction)
        self.model = NGramModel(order, vocab_size=len(vocab)).fit(self._encode(texts[0::2]))
        held = self.score(texts[1::2])["score"]
        self.threshold = threshold_at_fpr(held, fpr_target)
        self.fpr, self.n_fpr = rate_above(held, self.threshold), len(held)

    def _encode(self, texts):
        from collapselab.corpus.sequences import TokenSequences
        from collapselab.corpus.tokenize import UNK_ID

        get, find = self._ids.get, _TOKEN.findall
        docs = [[get(w, UNK_ID) for w in find(t.lower())] for t in texts]
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=offsets[1:])
        tokens = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(offsets[-1]))
        return TokenSequences(tokens, offsets)

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        from collapselab.detect.likelihood import log_perplexity

        seqs = self._encode(texts)
        n = len(seqs)
        raw = log_perplexity(self.model, seqs)
        nan = np.full(n, np.nan)
        return {"n_tokens": np.diff(seqs.offsets), "n_scored": np.diff(seqs.offsets) + 1,
                "n_green": np.zeros(n, dtype=np.int64), "score": self.direction * raw, "z": nan, "p_value": nan}

    def flagged(self, cols: dict) -> np.ndarray:
        return np.nan_to_num(cols["score"], nan=-np.inf) > self.threshold


def _load_vocab(vocab):
    from collapselab.corpus.tokenize import Vocabulary

    if isinstance(vocab, Vocabulary):
        return vocab, None
    p = Path(vocab)
    if not p.is_file():
        raise UserError(f"{p}: no such vocabulary file (one word a line, as `Vocabulary.save` writes it).")
    return Vocabulary.load(p), file_sha256(p)


def _load_key(key) -> bytes:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    from collapselab.provenance.keys import load_key

    return load_key(key)


def _score_files(scorer, inputs, *, text_field, on_error, batch_size, writer=None):
    """Stream every file; returns (per-file counts, flagged count, documents, sum of exact fpr)."""
    per_file, flagged, docs, fpr_sum, malformed = [], 0, 0, 0.0, 0
    for path in inputs:
        f_docs = f_flag = f_bad = 0
        name = str(path)
        for batch in read_batches(path, text_field=text_field, on_error=on_error, batch_size=batch_size):
            good = [r for r in batch if r.obj is not None]
            f_bad += sum(1 for r in batch if r.error is not None)
            if not good:
                continue
            cols = scorer.score([r.obj[text_field] for r in good])
            fl = scorer.flagged(cols)
            f_flag += int(fl.sum())
            f_docs += len(good)
            if scorer.exact:
                fpr_sum += float(scorer.exact_fpr(cols["n_scored"]).sum())
            if writer is not None:
                writer(name, good, cols)
        per_file.append({"file": name, "documents": f_docs, "flagged": f_flag, "malformed_skipped": f_bad})
        flagged += f_flag
        docs += f_docs
        malformed += f_bad
    return per_file, flagged, docs, fpr_sum, malformed


def scan_corpus(inputs: Sequence[str | os.PathLike], *, vocab, key=None, out: str | os.PathLike, detector: str = "watermark",
         text_field: str = "text", on_error: str = "fail", z_threshold: float = 4.0, gamma: float = 0.25,
         context_width: int = 1, tpr: float | None = None, n_tpr: int | None = None, fpr: float | None = None,
         n_fpr: int | None = None, tpr_from: Sequence[str | os.PathLike] = (), batch_size: int = BATCH,
         force: bool = False, reference_vault=None, snapshot: str | None = None, fpr_target: float = 0.01,
         order: int = 3, direction: float = 1.0) -> ScanResult:
    """Score ``inputs`` into the sidecar ``out`` and estimate the synthetic share (see the module)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collapselab.detect.calibration import rogan_gladen

    if detector not in ("watermark", "perplexity"):
        raise UserError(f"--detector {detector!r}: use 'watermark' (with --key) or 'perplexity' (with --reference-vault).")
    if detector == "watermark" and key is None:
        raise UserError("--detector watermark needs --key KEYFILE.")
    if detector == "perplexity" and reference_vault is None:
        raise UserError("--detector perplexity needs --reference-vault DIR (human text to fit and calibrate on).")
    check_on_error(on_error)
    if not inputs:
        raise UserError("scan: no input file given.")
    for p in [*inputs, *tpr_from]:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such file.")
    if tpr is not None and tpr_from:
        raise UserError("give either --tpr or --tpr-from, not both.")
    out = Path(out)
    if out.resolve() in {Path(p).resolve() for p in inputs}:
        raise UserError(f"{out}: is one of the inputs; the input is never modified. Pick another --out.")
    vocab_obj, vocab_hash = _load_vocab(vocab)
    if detector == "watermark":
        scorer = _WatermarkScorer(_load_key(key), vocab_obj, gamma=gamma, context_width=context_width, z_threshold=z_threshold)
        dparams = {"key_id": scorer.wm.key_id, "gamma": gamma, "context_width": context_width, "z_threshold": z_threshold}
    else:
        scorer = _PerplexityScorer(reference_vault, snapshot, vocab_obj, order=order, direction=direction,
                                   fpr_target=fpr_target)
        dparams = {"reference_vault": str(reference_vault), "snapshot": scorer.snapshot, "merkle_root": scorer.merkle_root,
                   "order": order, "direction": direction, "fpr_target": fpr_target}
    manifest_path = Path(str(out) + ".json")
    params = {"detector": detector, **dparams, "text_field": text_field, "on_error": on_error,
              "vocab_sha256": vocab_hash or _vocab_digest(vocab_obj), "tpr": tpr, "n_tpr": n_tpr, "fpr": fpr,
              "n_fpr": n_fpr, "tpr_from": inputs_record(tpr_from)}
    ins = inputs_record(inputs)
    old = read_manifest(manifest_path)
    if (not force and old and old.get("format") == FORMAT and old.get("inputs") == ins and old.get("params") == params
            and out.is_file() and file_sha256(out) == old.get("output", {}).get("sha256")):
        return ScanResult(**{**old["result"], "skipped": True})

    schema = sidecar_schema()
    af = AtomicFile(out)
    w = pq.ParquetWriter(af.tmp, schema)

    def write(name, good, cols):
        n = len(good)
        w.write_table(pa.Table.from_arrays([
            pa.array([name] * n, pa.string()), pa.array([r.line for r in good], pa.int64()),
            pa.array([r.doc_id(name) for r in good], pa.string()),
            *(pa.array(cols[c]) for c in ("n_tokens", "n_scored", "n_green", "score", "z", "p_value"))], schema=schema))

    try:
        per_file, flagged, docs, fpr_sum, malformed = _score_files(
            scorer, inputs, text_field=text_field, on_error=on_error, batch_size=batch_size, writer=write)
        w.close()
    except BaseException:
        w.close()
        af.abort()
        raise
    af.commit()

    if fpr is None and scorer.exact:
        fpr_v, fpr_src, n_fpr_v = (fpr_sum / docs if docs else 0.0), "exact binomial at the scanned lengths", None
    elif fpr is None:
        fpr_v, fpr_src, n_fpr_v = scorer.fpr, f"measured on {scorer.n_fpr} held-out vault documents", scorer.n_fpr
    else:
        fpr_v, fpr_src, n_fpr_v = float(fpr), "given" + (f" (n={n_fpr})" if n_fpr else ""), n_fpr
    if tpr_from:
        _, t_flag, t_docs, _, _ = _score_files(scorer, tpr_from, text_field=text_field, on_error=on_error,
                                               batch_size=batch_size)
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
    thr = float(z_threshold) if scorer.exact else float(scorer.threshold)
    rule = f"z >= {thr:g}" if scorer.exact else f"score > {thr:.6g}"
    result = ScanResult(str(out), docs, malformed, flagged, q, thr, rule, fpr_v, fpr_src, tpr_v, tpr_src,
                        est, lo, hi, False, per_file)
    atomic_write_json(manifest_path, {"format": FORMAT, "version": VERSION, "inputs": ins, "params": params,
                                      "output": {"path": str(out), "sha256": file_sha256(out)},
                                      "result": {k: v for k, v in result.to_dict().items() if k != "skipped"}})
    return result


def _vocab_digest(vocab) -> str:
    import hashlib

    return hashlib.sha256("\n".join(vocab.words.tolist()).encode("utf-8")).hexdigest()
