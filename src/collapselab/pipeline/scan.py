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

Steps and runner: each shard is read (:class:`~collapselab.pipeline.steps.Reader`) and scored
(:class:`~collapselab.pipeline.steps.Score` with the scorer :func:`~collapselab.pipeline.scorers.make_scorer`
builds); :class:`~collapselab.pipeline.runner.Runner` runs the shards on a backend (``backend="local"``
processes, or ``"ray"``), skips a finished output, merges and writes the manifest.

Shards and reruns (:mod:`collapselab.pipeline.shards`): the inputs are cut into shards that
``jobs`` processes (or Ray tasks) score into ``SCORES.parquet.parts/`` (one Parquet file and one
done-marker per shard); the parts are then merged in input order into ``SCORES.parquet`` and
``SCORES.parquet.json`` (the manifest: settings, every shard with the SHA-256 of its input bytes,
the result) is written last; the parts folder is removed. The sidecar is the same whatever
``jobs`` is. A rerun with the same inputs and settings whose sidecar still matches is skipped; a
killed job, rerun, keeps the shards it finished and writes the same sidecar.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from collapselab.atomic import AtomicFile, check_output_file
from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline import sources
from collapselab.pipeline.io import (
    BATCH,
    ParquetWriter,
    MAX_EXAMPLES,
    Found,
    check_on_error,
    file_sha256,
    inputs_record,
    read_manifest,
)
from collapselab.pipeline.record import check_ledger, record_step
from collapselab.pipeline.runner import Runner, check_backend
from collapselab.pipeline.scorers import (  # noqa: F401
    DETECTORS,
    LM_DETECTORS,
    LengthScorer,
    check_detector_options,
    make_scorer,
)
from collapselab.pipeline.steps import Reader, Score, add_stats
from collapselab.pipeline.tokenizer import tokenize_doc  # noqa: F401  (its old home)

FORMAT = "collapselab-scan"
VERSION = 3  # 3: the sidecar's ``scheme`` column; deployed watermark schemes (--watermark SPEC)


def sidecar_schema():
    import pyarrow as pa

    return pa.schema([("file", pa.string()), ("line", pa.int64()), ("id", pa.string()), ("n_tokens", pa.int64()),
                      ("n_scored", pa.int64()), ("n_green", pa.int64()), ("score", pa.float64()),
                      ("z", pa.float64()), ("p_value", pa.float64()), ("scheme", pa.string())])


SCORE_COLUMNS = ("n_tokens", "n_scored", "n_green", "score", "z", "p_value", "scheme")


def sidecar_table(file: str, lines, ids, cols: dict, scheme: str):
    """Sidecar rows (exactly :func:`sidecar_schema`) for records of ``file``: ``lines`` their 1-based
    lines or rows, ``ids`` their ids (None: ``FILE:LINE``), ``cols`` the scorer's columns (arrays,
    None for an all-null column), ``scheme`` the scorer's name."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = sidecar_schema()
    n = len(lines)
    line = lines if isinstance(lines, pa.Array) else pa.array(np.asarray(lines, dtype=np.int64), pa.int64())
    ids = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
    ids = pc.coalesce(ids, pc.binary_join_element_wise(pa.scalar(f"{file}:"), pc.cast(line, pa.string()), ""))

    def column(f):
        v = cols.get(f.name)
        if v is None:
            return pa.nulls(n, f.type)
        return v.cast(f.type) if isinstance(v, pa.Array) else pa.array(v, f.type)

    return pa.Table.from_arrays([pa.repeat(pa.scalar(file), n), line, ids, *map(column, list(schema)[3:9]),
                                 pa.repeat(pa.scalar(scheme), n)], schema=schema)


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
    stats: dict = field(default_factory=dict)  # this run's figures and steps (Runner.summary); not in the manifest's result

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


@dataclass
class ScanConfig:
    """What ``scan`` does besides scoring: reading, the share's estimate, sharding, where it runs."""

    text_field: str = "text"
    on_error: str = "fail"
    tpr: float | None = None
    n_tpr: int | None = None
    fpr: float | None = None
    n_fpr: int | None = None
    tpr_from: Sequence[str | os.PathLike] = ()
    batch_size: int = BATCH
    force: bool = False
    jobs: int | None = None
    shard_bytes: int = sh.SHARD_BYTES
    ids_field: str | None = None
    backend: str = "local"
    address: str | None = None

    def check(self) -> None:
        check_on_error(self.on_error)
        sh.check_shard_bytes(self.shard_bytes)
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1.")
        if self.tpr is not None and self.tpr_from:
            raise UserError("give either --tpr or --tpr-from, not both.")
        if self.tpr is not None and not 0 < self.tpr <= 1:
            raise UserError(f"--tpr {self.tpr:g}: a true-positive rate lies in (0, 1], e.g. 0.9.")
        if self.fpr is not None and not 0 <= self.fpr < 1:
            raise UserError(f"--fpr {self.fpr:g}: a false-positive rate lies in [0, 1), e.g. 0.01.")
        for flag, n in (("--n-tpr", self.n_tpr), ("--n-fpr", self.n_fpr)):
            if n is not None and n < 1:
                raise UserError(f"{flag} {n}: the number of documents a rate was measured on is at least 1.")


DETECTOR_OPTIONS = ("vocab", "key", "watermark", "tokenizer", "ids_field", "z_threshold", "gamma", "context_width",
                    "reference_vault", "snapshot", "fpr_target", "order", "direction", "lm_model", "performer",
                    "device", "dtype", "batch_tokens", "max_tokens")


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
                max_tokens: int | None = 512, dtype: str = "float32", backend: str = "local",
                address: str | None = None) -> ScanResult:
    """Score ``inputs`` into the sidecar ``out`` and estimate the synthetic share (see the module).

    ``inputs``: files, folders or URLs (:func:`~collapselab.pipeline.sources.expand_inputs`).
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

    ``backend``: ``"local"`` (``jobs`` processes) or ``"ray"`` (``jobs`` Ray tasks at once;
    ``address``: the cluster to join, else a local Ray); the sidecar is the same on both.

    ``ledger``: a provenance ledger (path or URL) to record the scan in, as a step whose inputs are
    ``inputs`` and whose outputs are the sidecar and its manifest (:mod:`collapselab.pipeline.record`)."""
    opts = {k: v for k, v in locals().items() if k in DETECTOR_OPTIONS}
    config = ScanConfig(text_field=text_field, on_error=on_error, tpr=tpr, n_tpr=n_tpr, fpr=fpr, n_fpr=n_fpr,
                        tpr_from=tpr_from, batch_size=batch_size, force=force, jobs=jobs, shard_bytes=shard_bytes,
                        ids_field=ids_field, backend=backend, address=address)
    return scan(inputs, out=out, detector=detector, config=config, progress=progress, ledger=ledger, **opts)


def scan(inputs: Sequence[str | os.PathLike], *, out: str | os.PathLike, detector: str = "watermark",
         config: ScanConfig | None = None, progress: sh.Progress | None = None,
         ledger: str | os.PathLike | None = None, **detector_options) -> ScanResult:
    """:func:`scan_corpus` with its settings in a :class:`ScanConfig` and the detector's options
    (:func:`~collapselab.pipeline.scorers.make_scorer`'s) as keywords."""
    c = config or ScanConfig()
    check_detector_options(detector, **detector_options)
    if detector_options.get("ids_field") is None:
        detector_options["ids_field"] = c.ids_field
    lm = detector in LM_DETECTORS
    c.check()
    check_backend(c.backend, c.address)
    if c.backend == "local":  # LM detectors: one process by default, torch's threads use the cores
        jobs = 1 if lm and c.jobs is None else sh.check_jobs(c.jobs)
    else:
        jobs = c.jobs  # None: every CPU of the cluster
    if not inputs:
        raise UserError("scan: no input file given.")
    files = sources.expand_inputs(inputs)
    tpr_files = sources.expand_inputs(c.tpr_from)  # a missing file: one line now, not after the scan
    out = Path(out)
    if out.resolve() in {Path(p).resolve() for p in files if not sources.is_url(p)}:
        raise UserError(f"{out}: is one of the inputs; the input is never modified. Pick another --out.")
    check_output_file(out, "--out")  # a folder, a path under a file, an unwritable folder: before any work
    scorer, dparams = make_scorer(detector, **detector_options)
    if lm and jobs and jobs > 1 and hasattr(os, "sched_getaffinity"):
        scorer.threads = max(1, len(os.sched_getaffinity(0)) // jobs)  # torch threads per worker process
    manifest_path, parts = Path(str(out) + ".json"), Path(str(out) + ".parts")
    check_ledger(ledger)
    params = {"detector": detector, **dparams, "text_field": c.text_field, "on_error": c.on_error, "tpr": c.tpr,
              "n_tpr": c.n_tpr, "fpr": c.fpr, "n_fpr": c.n_fpr, "tpr_from": inputs_record(tpr_files),
              "shard_bytes": c.shard_bytes}
    shards = sh.plan(inputs, c.shard_bytes)
    with Runner("scan", backend=c.backend, jobs=jobs, address=c.address, progress=progress) as runner:
        old = read_manifest(manifest_path)
        if not c.force and runner.finished(
                old, format=FORMAT, match={"version": VERSION, "params": params},
                outputs={out: (old or {}).get("output", {}).get("sha256")}, shards=shards,
                recorded=[s for f in (old or {}).get("inputs", []) for s in f.get("shards", [])]):
            shutil.rmtree(parts, ignore_errors=True)
            result = ScanResult(**{**old["result"], "skipped": True})
            record_step(ledger, "scan", inputs=inputs, outputs=[out, manifest_path], params=params, result=result)
            return result
        if c.force:
            shutil.rmtree(parts, ignore_errors=True)
        scorer.calibrate()  # the LM detectors read the whole snapshot with the model: only when there is work to do
        digest = sh.settings_digest({"format": FORMAT, "version": VERSION, **params})
        job = dict(scorer=scorer, text_field=c.ids_field or c.text_field, on_error=c.on_error, batch_size=c.batch_size,
                   digest=digest, ids=c.ids_field is not None)
        with sh.parts_folder(parts):
            marks = runner.map_shards(_scan_shard, [_Job(s, parts=str(parts), **job) for s in shards], "scanning")
        rows = _merge(shards, marks, parts, out, scorer.scheme_name)
        docs, flagged, malformed = (sum(m[k] for m in marks) for k in ("documents", "flagged", "malformed"))
        if docs == 0:  # nothing to estimate a share of: say so rather than print nan%, and keep no empty sidecar
            out.unlink(missing_ok=True)
            shutil.rmtree(parts, ignore_errors=True)
            raise UserError(f"{', '.join(map(str, inputs))}: no document to scan"
                            + (f" ({malformed} malformed lines skipped)" if malformed else " (the input is empty)")
                            + ". Check the files and --text-field.")
        per_file, inputs_rec, examples = _per_file(shards, marks, rows)
        fpr_v, fpr_src, n_fpr_v = _fpr(scorer, detector, c, marks, docs)
        tpr_v, tpr_src, n_tpr_v = _tpr(c, job, runner)
        est, lo, hi = _estimate(flagged, docs, tpr_v, fpr_v, n_tpr_v, n_fpr_v)
        if detector == "length":
            thr, rule = float("nan"), "none"
        elif scorer.exact:
            thr, rule = scorer.threshold, scorer.rule
        else:
            thr = float(scorer.threshold)
            rule = f"score > {thr:.6g}"
        steps = add_stats([m["stats"] for m in marks])
        result = ScanResult(str(out), docs, malformed, flagged, flagged / docs, thr, rule, fpr_v, fpr_src, tpr_v, tpr_src,
                            est, lo, hi, False, per_file, examples[:MAX_EXAMPLES],
                            runner.summary(steps, documents=docs, flagged=None if detector == "length" else flagged))
        runner.write_manifest(manifest_path, {
            "format": FORMAT, "version": VERSION, "inputs": inputs_rec, "params": params,
            "output": {"path": str(out), "sha256": file_sha256(out)},
            "result": {k: v for k, v in result.to_dict().items() if k not in ("skipped", "stats")}}, [out], steps)
    shutil.rmtree(parts, ignore_errors=True)
    record_step(ledger, "scan", inputs=inputs, outputs=[out, manifest_path], params=params, result=result)
    return result


def _per_file(shards: list[sh.Shard], marks: list[dict], rows: list[int]) -> tuple[list, list, list]:
    """Counts per input file, the manifest's record of each input (its shards), malformed examples."""
    per_file, inputs_rec, examples, base = {}, {}, [], 0
    for s, m, r in zip(shards, marks, rows):
        base = 0 if s.part == 0 else base
        f = per_file.setdefault(s.file, {"file": s.file, "documents": 0, "flagged": 0, "malformed_skipped": 0})
        f["documents"] += m["documents"]
        f["flagged"] += m["flagged"]
        f["malformed_skipped"] += m["malformed"]
        examples += [{"file": s.file, "line": base + i + 1, "detail": d} for i, d in m["examples"]]
        inputs_rec.setdefault(s.file, {"path": s.file, "bytes": sources.file_size(s.file), "shards": []})["shards"].append(
            {**s.to_dict(), "sha256": m["sha256"], "lines": m["lines"], "rows": r})
        base += m["lines"]
    return list(per_file.values()), list(inputs_rec.values()), examples


def _fpr(scorer, detector: str, c: ScanConfig, marks: list[dict], docs: int) -> tuple[float, str, int | None]:
    """The detector's false-positive rate, where it comes from, and its sample size (None: known)."""
    if c.fpr is not None:
        return float(c.fpr), "given" + (f" (n={c.n_fpr})" if c.n_fpr else ""), c.n_fpr
    if scorer.exact:
        hist: Counter = Counter()
        for m in marks:
            hist.update({t: k for t, k in m["n_scored"]})
        return _exact_fpr_sum(scorer, sorted(hist.items())) / docs, "exact binomial at the scanned lengths", None
    if detector == "perplexity":
        return scorer.fpr, f"measured on {scorer.n_fpr} held-out vault documents", scorer.n_fpr
    if detector in LM_DETECTORS:
        return scorer.fpr, f"measured on the {scorer.n_fpr} vault documents the threshold was set on", scorer.n_fpr
    return float("nan"), "none: the length detector flags nothing", None


def _tpr(c: ScanConfig, job: dict, runner: Runner) -> tuple[float, str, int | None]:
    """The detector's true-positive rate: measured on ``tpr_from`` (scored, nothing written), given, or assumed 1."""
    if c.tpr_from:
        tp = runner.map(_scan_shard, [_Job(s, parts=None, **job) for s in sh.plan(c.tpr_from, c.shard_bytes)],
                        "measuring the TPR on")
        t_docs, t_flag = sum(m["documents"] for m in tp), sum(m["flagged"] for m in tp)
        if not t_docs:
            raise UserError("--tpr-from: no document in the given files.")
        return t_flag / t_docs, f"measured on {t_docs} known watermarked documents", t_docs
    if c.tpr is not None:
        return float(c.tpr), "given" + (f" (n={c.n_tpr})" if c.n_tpr else ""), c.n_tpr
    return 1.0, "assumed 1: the estimate is a lower bound", None


def _estimate(flagged: int, docs: int, tpr: float, fpr: float, n_tpr, n_fpr) -> tuple[float, float, float]:
    """Rogan–Gladen's corrected share and its 95 % CI (NaN when the TPR does not exceed the FPR)."""
    from collapselab.detect.calibration import rogan_gladen

    if docs and tpr > fpr:
        pr = rogan_gladen(flagged / docs, tpr, fpr, n=docs, n_tpr=n_tpr, n_fpr=n_fpr)
        return pr.estimate, pr.low, pr.high
    return float("nan"), float("nan"), float("nan")


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
    """Read and score one shard into ``parts/part-NNNNN.parquet`` and write its done-marker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = Path(job.parts) if job.parts else None
    found, n_scored = Found(), Counter()
    read = Reader(text_field=job.text_field, on_error=job.on_error, batch_size=job.batch_size, ids=job.ids)
    score = Score(job.scorer)
    name = f"part-{job.shard.index:05d}.parquet"
    schema = _part_schema()
    out = AtomicFile(parts / name) if parts is not None else None
    w = pq.ParquetWriter(out.tmp, schema) if out is not None else None
    try:
        for b, cols, _ in score(read(job.shard, found)):
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
    counts = {"lines": found.lines, "documents": score.stats.documents_out, "flagged": score.stats.flagged,
              "malformed": found.malformed, "examples": found.examples, "n_scored": sorted(n_scored.items()),
              "stats": [read.stats.to_dict(), score.stats.to_dict()]}
    if parts is None:
        return counts
    return sh.mark_done(parts, job.shard, job.digest, found.sha256, [name], **counts)


# ----------------------------------------------------------------------------------- merge
def _merge(shards: list[sh.Shard], marks: list[dict], parts: Path, out: Path, scheme: str) -> list[int]:
    """Write the parts, in shard order, into the sidecar ``out`` (:func:`sidecar_table`: absolute
    line numbers, ids); returns each shard's row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, base, prev = [], 0, None
    with ParquetWriter(out, sidecar_schema()) as w:
        for shard, mark in zip(shards, marks):
            base = 0 if shard.file != prev or shard.part == 0 else base
            prev = shard.file
            n_rows = 0
            for rb in pq.ParquetFile(parts / f"part-{shard.index:05d}.parquet").iter_batches(batch_size=BATCH):
                line = pa.compute.add(rb.column("line"), base + 1)
                w.write_batch(sidecar_table(shard.file, line, rb.column("id"),
                                            {k: rb.column(k) for k in SCORE_COLUMNS[:-1]}, scheme))
                n_rows += rb.num_rows
            rows.append(n_rows)
            base += mark["lines"]
    return rows


def _exact_fpr_sum(scorer, counts) -> float:
    """Sum of the exact per-document FPR from the histogram of scored lengths (the same sum
    whatever the sharding: integer counts, added in length order)."""
    if not counts:
        return 0.0
    t = np.array([c[0] for c in counts], dtype=np.int64)
    k = np.array([c[1] for c in counts], dtype=np.float64)
    return float(np.dot(scorer.exact_fpr(t), k))
