"""``filter``: split a corpus into kept and quarantined records using a scan's sidecar.

The input is a file, a folder or a URL (:func:`~collapselab.pipeline.sources.expand_inputs`):
JSON lines (plain, ``.gz``, ``.zst``: kept and quarantined lines are the lines as read, written
to ``--out`` / ``--quarantine`` compressed as *their* names say), text files (``.txt``/``.md``, one
document each: written as JSON lines ``{TEXT_FIELD: text}``, as ``mix`` writes them), Parquet or
Arrow (a ``datasets`` folder's files: written as Parquet rows with the input's columns; all the
files must share them). A folder's files go, in order, into the one ``--out`` and ``--quarantine``.

Nothing is dropped silently: every record goes to exactly one of ``out`` (kept) or ``quarantine``,
in input order, byte for byte (JSONL lines are copied as read, never re-encoded; blank lines,
which hold no record, go to ``out``), so ``kept + quarantined == input``. Why each quarantined
record was dropped is in ``QUARANTINE.reasons.jsonl``, one line per record in the same order: file,
line, id, and either the rule with its score and threshold, or ``"malformed"`` (with
``--on-error skip``; with ``--on-error fail``, the default, a malformed line stops the job).

Rules (exactly one):

* ``threshold=T``: quarantine when ``score >= T`` (the watermark's z, KGW's rule; characters for
  the length detector);
* ``fpr=a``: quarantine when the sidecar's p-value ``<= a``: each human document is then
  quarantined with probability at most ``a`` (needs a ``p_value`` column: watermark scans have the
  exact binomial one, whatever the length; ``fast-detectgpt`` and ``binoculars`` scans the conformal
  one against the vault's human text, which holds for human text exchangeable with the vault's).

Two ways to get the scores:

* ``scores=SIDECAR`` (a scan's): its manifest (``SIDECAR.json``) must name the input (same path,
  or same name and size); ``filter`` works on the scan's shards and never parses JSON: a line is a
  record of the sidecar (its row gives the score), a blank line, or a line the scan found
  malformed. Each shard's input bytes are hashed as they are read and must match the scan's hash:
  a file changed since it was scanned is a UserError, never a silent misalignment.
* ``detector="length"``: score while reading, in one pass, with no sidecar (the length detector
  needs no key, vocabulary or calibration; the others go through ``scan``).

Steps: the shard's lines (or record batches) are read, scored when there is no sidecar
(:class:`~collapselab.pipeline.steps.Score`), and split by
:class:`~collapselab.pipeline.steps.ThresholdFilter`, whose exclusion writer is the quarantine.

Shards run on ``jobs`` local processes (or Ray tasks, ``backend="ray"``) into ``OUT.parts/`` (done-markers as in
:mod:`collapselab.pipeline.shards`), then are concatenated in order (a rename for one shard);
``OUT.json`` records the input's shard hashes, the rule and the counts, written last; a rerun
that finds it matching skips the work, a killed job keeps its finished shards.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from collapselab.atomic import check_output_file
from collapselab.errors import UserError
from collapselab.pipeline import runner as runner_mod
from collapselab.pipeline import shards as sh
from collapselab.pipeline import sources
from collapselab.pipeline.io import (
    BATCH,
    ArrowFile,
    Batch,
    Found,
    JsonlWriter,
    LineReader,
    MalformedLine,
    MalformedRecord,
    ParquetWriter,
    check_on_error,
    dumps_line,
    file_sha256,
    open_parquet,
    parquet_batches,
    parse_lines,
    parse_slowly,
    read_manifest,
    shard_records,
)
from collapselab.pipeline.record import check_ledger, record_step
from collapselab.pipeline.runner import Runner, check_backend, resumable
from collapselab.pipeline.scan import FORMAT as SCAN
from collapselab.pipeline.scan import VERSION as SCAN_VERSION
from collapselab.pipeline.scorers import LengthScorer
from collapselab.pipeline.steps import Score, StepStats, ThresholdFilter, add_stats

FORMAT = "collapselab-filter"
VERSION = 2
TABLES = ("parquet", "arrow")  # formats read as record batches and written as Parquet


@dataclass
class FilterResult:
    input: str
    out: str
    quarantine: str
    reasons: str
    records: int
    kept: int
    quarantined: int
    flagged: int
    malformed: int
    rule: str
    skipped: bool = False
    stats: dict = field(default_factory=dict)  # this run's figures and steps (Runner.summary); not in the manifest's result

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.records} records: {self.kept} kept in {self.out}, {self.quarantined} quarantined in "
                f"{self.quarantine} ({self.flagged} flagged by {self.rule}, {self.malformed} malformed); "
                f"reasons in {self.reasons}.")


def _scanned(scores: Path, files: list[str]) -> tuple[dict, list[tuple[dict, int]]]:
    """The scan manifest, and for each input file its record there and the sidecar row where its rows begin."""
    man = read_manifest(Path(str(scores) + ".json"))
    if not man or man.get("format") != SCAN:
        raise UserError(f"{scores}: no scan manifest {scores}.json next to it; make the sidecar with `collapselab scan`.")
    if man.get("version") != SCAN_VERSION:
        raise UserError(f"{scores}: made by another version of `collapselab scan`; scan {files[0]} again.")
    recs = man.get("inputs", [])
    starts, row = [], 0
    for f in recs:
        starts.append(row)
        row += sum(s["rows"] for s in f["shards"])
    found = []
    for inp in files:
        size = sources.file_size(inp)
        match = [i for i, f in enumerate(recs) if _same_path(f["path"], inp)]
        if not match:
            match = [i for i, f in enumerate(recs)
                     if os.path.basename(f["path"]) == os.path.basename(inp) and f["bytes"] == size]
        if len(match) != 1:
            names = ", ".join(f["path"] for f in recs[:5])
            raise UserError(f"{scores}: holds no scores for {inp} (it covers {names}). Scan it first.")
        rec = recs[match[0]]
        if rec["bytes"] != size:
            raise UserError(f"{inp}: changed since it was scanned into {scores} (its size differs). Scan it again.")
        found.append((rec, starts[match[0]]))
    return man, found


def _same_path(a: str, b: str) -> bool:
    if sources.is_url(a) or sources.is_url(b):
        return a == b
    return Path(a).resolve() == Path(b).resolve()


@dataclass
class _Job:
    shard: sh.Shard
    scanned: dict | None  # the scan's record of this shard (sha256, lines, rows); None: score while reading
    line_base: int  # lines of the file before the shard
    row_groups: list  # the sidecar row groups holding the shard's rows
    name: str  # the file as the sidecar names it
    scores: str | None
    scorer: object  # scores while reading (scores is None)
    threshold: float | None
    fpr: float | None
    rule: str
    text_field: str
    on_error: str
    suffix: str  # the outputs' file-name ending (.jsonl, .jsonl.gz, .jsonl.zst, .parquet)
    parts: str
    digest: str


class _Rows:
    """The sidecar rows of one shard, taken in line order a block at a time."""

    def __init__(self, job: _Job) -> None:
        cols = ["line", "id", "score"] + (["p_value"] if job.fpr is not None else [])
        pf = open_parquet(job.scores)
        self._it = iter(parquet_batches(pf, job.scores, batch_size=BATCH, columns=cols, row_groups=job.row_groups)
                        if job.row_groups else [])
        self._buf = None
        self.fpr = job.fpr

    def _next(self):
        rb = next(self._it, None)
        if rb is None:
            return None
        line = rb.column(0).to_numpy()
        p = rb.column(3).to_numpy(zero_copy_only=False) if self.fpr is not None else None
        return line, rb.column(1), rb.column(2).to_numpy(zero_copy_only=False), p

    def take(self, stop: int):
        """(line, id, score, p_value) of the rows with line < ``stop``."""
        import pyarrow as pa

        out = []
        while True:
            if self._buf is None and (buf := self._next()) is not None:
                self._buf = buf
            if self._buf is None:
                break
            k = int(np.searchsorted(self._buf[0], stop))
            out.append(tuple(None if c is None else c[:k] for c in self._buf))
            if k < len(self._buf[0]):
                self._buf = tuple(None if c is None else c[k:] for c in self._buf)
                break
            self._buf = None
        if not out:
            return np.zeros(0, np.int64), pa.array([], pa.string()), np.zeros(0), np.zeros(0)
        line = np.concatenate([o[0] for o in out])
        ids = pa.concat_arrays([o[1] for o in out])
        score = np.concatenate([o[2] for o in out])
        p = np.concatenate([o[3] for o in out]) if self.fpr is not None else None
        return line, ids, score, p

    def done(self) -> bool:
        """True when no row is left."""
        if self._buf is not None:
            return False
        buf = self._next()
        if buf is None:
            return True
        self._buf = buf
        return False


def _scored(score: Score, batch: Batch):
    """(line, id, score, p_value) of a batch's records (``rows``: their line numbers), scored here."""
    cols = next((c for _, c, _ in score([batch])), None)
    if cols is None:  # no record in the block
        return np.zeros(0, np.int64), [], np.zeros(0), np.zeros(0)
    return np.asarray(batch.rows, dtype=np.int64), batch.ids, cols["score"], cols["p_value"]


def _filter_shard(job: _Job) -> dict:
    parts = Path(job.parts)
    k = job.shard.index
    names = [f"part-{k:05d}.kept{job.suffix}", f"part-{k:05d}.quarantine{job.suffix}", f"part-{k:05d}.reasons.jsonl"]
    paths = [parts / n for n in names]
    fmt = job.shard.fmt
    step = ThresholdFilter(threshold=job.threshold, fpr=job.fpr, rule=job.rule, name=job.name,
                           source=job.scores or job.shard.file, file=job.shard.file)
    score = Score(job.scorer) if job.scorer is not None else None
    read = StepStats("read")
    found = (_filter_table if fmt in TABLES else _filter_text if fmt == "text" else _filter_jsonl)(job, paths, step, score, read)
    sha256 = found.pop("sha256")
    if job.scanned is not None and sha256 != job.scanned["sha256"]:
        for p in paths:
            p.unlink(missing_ok=True)
        raise UserError(f"{job.shard.file}: changed since it was scanned into {job.scores} (bytes {job.shard.start}-"
                        f"{job.shard.end} hash differently). Scan it again.")
    read.bytes = job.shard.end - job.shard.start
    read.documents_in = read.documents_out = found["records"]
    found["stats"] = [read.to_dict(), *([score.stats.to_dict()] if score else []), step.stats.to_dict()]
    return sh.mark_done(parts, job.shard, job.digest, sha256, names, **found)


def _counts(step: ThresholdFilter) -> dict:
    st = step.stats
    return {"records": st.documents_in, "kept": st.documents_out, "flagged": st.flagged, "malformed": st.malformed}


def _filter_jsonl(job: _Job, paths: list[Path], step: ThresholdFilter, score: Score | None, read: StepStats) -> dict:
    """JSON lines: every line copied as read to the kept or the quarantine file (blank lines: kept)."""
    import time

    reader = LineReader(job.shard.file, job.shard.start, job.shard.end)
    rows = _Rows(job) if score is None else None
    seen = 0
    with JsonlWriter(paths[0]) as step.writer, JsonlWriter(paths[1]) as step.exclusion_writer, \
            JsonlWriter(paths[2]) as step.reasons:
        t0 = time.perf_counter()
        for _, lines, terminated in reader:
            read.seconds += time.perf_counter() - t0
            n = len(lines)
            first = job.line_base + seen + 1
            lens = np.fromiter(map(len, lines), dtype=np.int64, count=n)
            blank = (lens == 0) | np.fromiter(map(bytes.isspace, lines), dtype=bool, count=n)
            if rows is not None:
                decided = step.decide(first, n, blank, rows.take(first + n))
                details = _malformed(job, step, lines, first, np.flatnonzero(decided[0]).tolist())
            else:
                try:
                    parsed = parse_lines(lines, text_field=job.text_field, on_error=job.on_error)
                except MalformedLine as e:
                    raise MalformedRecord(job.shard.file, "line", first + e.index, e.detail, e.reason) from None
                batch = Batch(np.asarray(parsed.rows, dtype=np.int64) + first, parsed.texts, parsed.ids, [])
                decided = step.decide(first, n, blank, _scored(score, batch))
                details = dict(parsed.bad)
            step.lines(lines, terminated, first, blank, decided, details)
            seen += n
            t0 = time.perf_counter()
        if rows is not None and not rows.done():
            raise UserError(f"{job.scores}: has more rows for {job.shard.file} than the file has records. Scan it again.")
    return {**_counts(step), "sha256": reader.sha256, "lines": reader.lines}


def _malformed(job: _Job, step: ThresholdFilter, lines: list[bytes], first: int, bad_idx: list[int]) -> dict[int, str]:
    """What is wrong with the lines the scan skipped (a good record there means a wrong sidecar)."""
    details = {}
    for i in bad_idx:
        try:
            parsed = parse_slowly([lines[i]], job.text_field, job.on_error)
        except MalformedLine as e:
            raise MalformedRecord(job.shard.file, "line", first + i, e.detail, e.reason) from None
        if not parsed.bad:
            raise step.misaligned(first + i)
        details[i] = parsed.bad[0][1]
    return details


def _open_table(path: str, fmt: str):
    return open_parquet(path) if fmt == "parquet" else ArrowFile(path)


def _table_batches(table, path: str, fmt: str):
    if fmt == "parquet":
        return parquet_batches(table, path, batch_size=BATCH)
    return table.iter_batches(BATCH)


def _filter_table(job: _Job, paths: list[Path], step: ThresholdFilter, score: Score | None, read: StepStats) -> dict:
    """Parquet or Arrow: record batches filtered into Parquet files with the input's schema."""
    file, fmt = job.shard.file, job.shard.fmt
    table = _open_table(file, fmt)
    rows = _Rows(job) if score is None else None
    first = 1
    with ParquetWriter(paths[0], table.schema_arrow) as step.writer, \
            ParquetWriter(paths[1], table.schema_arrow) as step.exclusion_writer, JsonlWriter(paths[2]) as step.reasons:
        for rb, b in _table_rows(job, table):
            n = rb.num_rows
            scored = rows.take(first + n) if rows is not None else _scored(score, Batch(b.rows + 1, b.texts, b.ids, []))
            decided = step.decide(first, n, np.zeros(n, dtype=bool), scored)
            bad_idx = np.flatnonzero(decided[0]).tolist()
            details = {i: f"malformed record (no string field {job.text_field!r})" for i in bad_idx}
            if bad_idx and job.on_error == "fail":
                raise MalformedRecord(file, "row", first + bad_idx[0], details[bad_idx[0]])
            step.batch(rb, first, decided, details)
            first += n
        if rows is not None and not rows.done():
            raise UserError(f"{job.scores}: has more rows for {file} than the file has records. Scan it again.")
    if fmt == "arrow":
        table.close()
    return {**_counts(step), "sha256": file_sha256(file), "lines": first - 1}


def _table_rows(job: _Job, table):
    """The file's record batches, each with its records as the scan reads them (when scoring here)."""
    batches = _table_batches(table, job.shard.file, job.shard.fmt)
    if job.scorer is None:
        for rb in batches:
            yield rb, None
        return
    for b in shard_records(job.shard, text_field=job.text_field, on_error=job.on_error, batch_size=BATCH, found=Found()):
        yield next(batches), b


def _filter_text(job: _Job, paths: list[Path], step: ThresholdFilter, score: Score | None, read: StepStats) -> dict:
    """A text file: one record, written as the JSON line ``{TEXT_FIELD: text}`` (a file that is not
    UTF-8 is malformed: quarantined with its bytes decoded with replacement characters)."""
    found = Found()
    batches = list(shard_records(job.shard, text_field=job.text_field, on_error=job.on_error, found=found,
                                 whole_rows=True))
    b = batches[0] if batches else Batch(np.zeros(0, np.int64), [], [], [])
    if b.texts:
        line = dumps_line(b.raw[0]).rstrip(b"\n")
    else:
        with sources.open_binary(job.shard.file) as f:
            line = dumps_line({job.text_field: f.read().decode("utf-8", "replace")}).rstrip(b"\n")
    scored = (_Rows(job).take(2) if score is None else _scored(score, Batch(b.rows + 1, b.texts, b.ids, [])))
    with JsonlWriter(paths[0]) as step.writer, JsonlWriter(paths[1]) as step.exclusion_writer, \
            JsonlWriter(paths[2]) as step.reasons:
        decided = step.decide(1, 1, np.zeros(1, dtype=bool), scored)
        step.lines([line], True, 1, np.zeros(1, dtype=bool), decided, dict(found.examples))
    return {**_counts(step), "sha256": found.sha256, "lines": 1}


def _row_groups(scores: Path, first_row: int, rows: list[int]) -> list[list[int]]:
    """The sidecar row groups of each shard (the scan writes every shard into whole row groups)."""
    md = open_parquet(scores).metadata
    starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
    out, lo = [], first_row
    for n in rows:
        a, b = np.searchsorted(starts, [lo, lo + n])
        if starts[a] != lo or starts[b] != lo + n:
            raise UserError(f"{scores}: its row groups do not follow the scan's shards; scan again.")
        out.append(list(range(int(a), int(b))))
        lo += n
    return out


def _output_suffix(files: list[str], out: Path, quarantine: Path) -> tuple[str, bool]:
    """The parts' file-name ending, and whether the outputs are Parquet; the outputs' names must fit the input."""
    fmts = {sources.format_of(f) for f in files}
    table = fmts <= set(TABLES)
    if not table and fmts & set(TABLES):
        raise UserError(f"filter: the input mixes Parquet/Arrow and JSON-lines/text files ({', '.join(sorted(fmts))}); "
                        "filter them separately.")
    want = "parquet" if table else "jsonl"
    o, q = sources.format_of(out, ""), sources.format_of(quarantine, "")
    if not o.startswith(want) or not q.startswith(want):
        raise UserError(f"filter: --out and --quarantine must have the input's format ({want}"
                        + (", Parquet for Parquet and datasets (Arrow) input" if table else ": .jsonl, .jsonl.gz or .jsonl.zst")
                        + ").")
    if o != q:
        raise UserError("filter: --out and --quarantine must both be .gz, both .zst, or neither.")
    return {"parquet": ".parquet", "jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "jsonl.zst": ".jsonl.zst"}[o], table


def filter_corpus(inp: str | os.PathLike, *, scores: str | os.PathLike | None = None, out: str | os.PathLike,
                  quarantine: str | os.PathLike, fpr: float | None = None, threshold: float | None = None,
                  on_error: str = "fail", force: bool = False, jobs: int | None = None, detector: str | None = None,
                  text_field: str = "text", shard_bytes: int = sh.SHARD_BYTES,
                  progress: sh.Progress | None = None, ledger: str | os.PathLike | None = None,
                  backend: str = "local", address: str | None = None) -> FilterResult:
    """Split ``inp`` (a file, folder or URL) into ``out`` and ``quarantine`` by the scores in
    ``scores``, or by the scores of ``detector`` computed while reading (see the module).

    ``backend``: ``"local"`` (``jobs`` processes) or ``"ray"`` (``address``: the cluster to join).
    ``ledger``: a provenance ledger to record the filter in, as a step whose inputs are ``inp`` (and
    the scan's sidecar) and whose outputs are the kept, quarantined and reasons files and the manifest."""
    check_on_error(on_error)
    check_backend(backend, address)
    if backend == "local":
        jobs = sh.check_jobs(jobs)
    sh.check_shard_bytes(shard_bytes)
    out, quarantine = Path(out), Path(quarantine)
    if (scores is None) == (detector is None):
        raise UserError("filter: give exactly one of --scores (a scan's sidecar) or --detector length (score while reading).")
    if detector is not None and detector != "length":
        raise UserError(f"filter --detector {detector!r}: only 'length' scores while reading; for the others, "
                        "`collapselab scan` first, then filter --scores.")
    if (fpr is None) == (threshold is None):
        raise UserError("filter: give exactly one of --fpr (e.g. 0.01) or --threshold (e.g. 4).")
    if fpr is not None and not 0.0 < fpr < 1.0:
        raise UserError(f"--fpr {fpr}: must be between 0 and 1 (e.g. 0.01).")
    if fpr is not None and detector is not None:
        raise UserError("filter --detector length: no p-values; use --threshold.")
    files = sources.expand_inputs([inp])
    if scores is not None and not Path(scores).is_file():
        raise UserError(f"{scores}: no such file.")
    local = {Path(f).resolve() for f in files if not sources.is_url(f)}
    if out.resolve() == quarantine.resolve() or {out.resolve(), quarantine.resolve()} & (local | {Path(inp).resolve()}):
        raise UserError("filter: --out, --quarantine and the input must be three different files.")
    reasons = Path(str(quarantine) + ".reasons.jsonl")
    for path, flag in ((out, "--out"), (quarantine, "--quarantine"), (reasons, "--quarantine's reasons file")):
        check_output_file(path, flag)  # a bad --quarantine fails here, before a record is written
    suffix, table = _output_suffix(files, out, quarantine)
    rule = f"score >= {threshold:g}" if threshold is not None else f"p_value <= {fpr:g}"
    known: dict[str, str] = {}  # digests computed on the way, for the ledger step
    if scores is not None:
        scores = Path(scores)
        man, scanned = _scanned(scores, files)
        scores_hash = file_sha256(scores)
        known[str(scores)] = scores_hash
        if scores_hash != man.get("output", {}).get("sha256"):
            raise UserError(f"{scores}: changed since its manifest was written. Scan again.")
        shards, recs = [], []
        for f, (rec, _) in zip(files, scanned):
            for s in rec["shards"]:
                shards.append(sh.Shard(len(shards), f, s["part"], s["start"], s["end"], s["whole"]))
                recs.append((rec["path"], s))
        text_field = man.get("params", {}).get("text_field", "text")
        source = {"scores": {"path": str(scores), "sha256": scores_hash}}
    else:
        shards = sh.plan([inp], shard_bytes)
        source = {"detector": detector, "text_field": text_field, "shard_bytes": shard_bytes}
    manifest_path = Path(str(out) + ".json")
    parts = Path(str(out) + ".parts")
    check_ledger(ledger)
    read = [inp, *([scores] if scores is not None else [])]
    key = {"version": VERSION, "input": str(inp), **source, "rule": rule, "on_error": on_error}
    outputs = (out, quarantine, reasons)
    with Runner("filter", backend=backend, jobs=jobs, address=address, progress=progress) as runner:
        old = read_manifest(manifest_path)
        if not force and runner.finished(old, format=FORMAT, match=key, outputs=(old or {}).get("outputs", {}),
                                         shards=shards, recorded=(old or {}).get("shards")):
            shutil.rmtree(parts, ignore_errors=True)
            result = FilterResult(**{**old["result"], "skipped": True})
            record_step(ledger, "filter", inputs=read, outputs=[*outputs, manifest_path], params=key, result=result,
                        known=known)
            return result
        if force:
            shutil.rmtree(parts, ignore_errors=True)
        digest = sh.settings_digest({"format": FORMAT, **key})
        common = dict(threshold=threshold, fpr=fpr, rule=rule, text_field=text_field, on_error=on_error, suffix=suffix,
                      parts=str(parts), digest=digest)
        with sh.parts_folder(parts):
            if scores is not None:
                tasks = []
                for f, (rec, first_row) in zip(files, scanned):
                    mine = [(s, r) for s, (path, r) in zip(shards, recs) if s.file == f]
                    groups = _row_groups(scores, first_row, [r["rows"] for _, r in mine])
                    bases = np.cumsum([0] + [r["lines"] for _, r in mine]).tolist()
                    tasks += [_Job(s, r, b, g, rec["path"], str(scores), None, **common)
                              for (s, r), b, g in zip(mine, bases, groups)]
                marks = runner.map_shards(_filter_shard, tasks, "filtering")
            else:
                marks = _score_and_filter(runner, shards, dict(scanned=None, row_groups=[], scores=None,
                                                               scorer=LengthScorer(), **common))
        manifest_path.unlink(missing_ok=True)  # from here on no manifest vouches for outputs being rewritten
        count = {k: sum(m[k] for m in marks) for k in ("records", "kept", "flagged", "malformed")}
        assert count["kept"] + count["flagged"] + count["malformed"] == count["records"]
        steps = add_stats([m.get("stats", []) for m in marks])
        result = FilterResult(str(inp), str(out), str(quarantine), str(reasons), count["records"], count["kept"],
                              count["flagged"] + count["malformed"], count["flagged"], count["malformed"], rule, False,
                              runner.summary(steps, documents=count["records"], flagged=count["flagged"]))
        try:
            for i, dest in enumerate(outputs):
                runner_mod.concat([parts / list(m["outputs"])[i] for m in marks], dest, table and i < 2)
        except BaseException:  # a kept file without its quarantine would drop records silently: none of them stays
            for dest in outputs:
                dest.unlink(missing_ok=True)
            raise
        runner.write_manifest(manifest_path, {
            "format": FORMAT, **key, "shards": [{**s.to_dict(), "sha256": m["sha256"]} for s, m in zip(shards, marks)],
            "outputs": {str(p): Path(p).stat().st_size for p in outputs},
            "result": {k: v for k, v in result.to_dict().items() if k not in ("skipped", "stats")}}, outputs, steps)
    shutil.rmtree(parts, ignore_errors=True)
    record_step(ledger, "filter", inputs=read, outputs=[*outputs, manifest_path], params=key, result=result,
                known=known)
    return result


def _score_and_filter(runner: Runner, shards: list[sh.Shard], job: dict) -> list[dict]:
    """Filter shards scoring as they are read. A shard's first line number is that of its file's
    shards before it: known as they finish when they run in order here (one local process), else
    counted first (only the shards followed by another of the same file)."""
    if (runner.backend_name == "local" and runner.backend.jobs == 1) or len(shards) == 1:
        marks, base = [], 0
        tick = sh.ticker(runner.progress, len(shards), "filtering")
        for s in shards:
            base = 0 if s.part == 0 else base
            marks.append(resumable(_filter_shard)(_Job(s, line_base=base, name=s.file, **job)))
            base += marks[-1]["lines"]
            if tick:
                tick()
        return marks
    counted = [s for s, nxt in zip(shards, shards[1:]) if nxt.file == s.file]
    lines = dict(zip([s.index for s in counted], runner.map(_count_lines, counted)))
    bases, base = [], 0
    for s in shards:
        base = 0 if s.part == 0 else base
        bases.append(base)
        base += lines.get(s.index, 0)
    return runner.map_shards(_filter_shard, [_Job(s, line_base=b, name=s.file, **job) for s, b in zip(shards, bases)],
                             "filtering")


def _count_lines(shard: sh.Shard) -> int:
    r = LineReader(shard.file, shard.start, shard.end)
    r.digest()
    return r.lines
