"""``filter``: split a corpus file into kept and quarantined records using a scan's sidecar.

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

Shards run on ``jobs`` local processes into ``OUT.parts/`` (done-markers as in
:mod:`collapselab.pipeline.shards`), then are concatenated in order (a rename for one shard);
``OUT.json`` records the input's shard hashes, the rule and the counts, written last; a rerun
that finds it matching skips the work, a killed job keeps its finished shards.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from itertools import compress
from pathlib import Path

import numpy as np

from collapselab.atomic import AtomicFile, atomic_write_json, check_output_file
from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline.record import check_ledger, record_step
from collapselab.pipeline.io import (BATCH, Found, JsonlWriter, LineReader, MalformedLine, ParquetWriter, check_on_error,
                                     fail_message, file_sha256, kind_of, open_parquet, parquet_batches, parse_lines,
                                     parse_slowly, read_manifest, shard_records)
from collapselab.pipeline.scan import FORMAT as SCAN, VERSION as SCAN_VERSION, LengthScorer

FORMAT = "collapselab-filter"
VERSION = 2


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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.records} records: {self.kept} kept in {self.out}, {self.quarantined} quarantined in "
                f"{self.quarantine} ({self.flagged} flagged by {self.rule}, {self.malformed} malformed); "
                f"reasons in {self.reasons}.")


def _dumps(obj: dict) -> bytes:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n"


def _scanned(scores: Path, inp: Path) -> tuple[dict, dict, int]:
    """The scan manifest, its record of ``inp`` and the sidecar row where ``inp``'s rows begin."""
    man = read_manifest(Path(str(scores) + ".json"))
    if not man or man.get("format") != SCAN:
        raise UserError(f"{scores}: no scan manifest {scores}.json next to it; make the sidecar with `collapselab scan`.")
    if man.get("version") != SCAN_VERSION:
        raise UserError(f"{scores}: made by another version of `collapselab scan`; scan {inp} again.")
    files = man.get("inputs", [])
    size = inp.stat().st_size
    match = [f for f in files if Path(f["path"]).resolve() == inp.resolve()]
    if not match:
        match = [f for f in files if Path(f["path"]).name == inp.name and f["bytes"] == size]
    if len(match) != 1:
        names = ", ".join(f["path"] for f in files[:5])
        raise UserError(f"{scores}: holds no scores for {inp} (it covers {names}). Scan it first.")
    rec = match[0]
    if rec["bytes"] != size:
        raise UserError(f"{inp}: changed since it was scanned into {scores} (its size differs). Scan it again.")
    first_row = 0
    for f in files:
        if f is rec:
            break
        first_row += sum(s["rows"] for s in f["shards"])
    return man, rec, first_row


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
    suffix: str  # the outputs' file-name ending (.jsonl, .jsonl.gz, .parquet)
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


def _misaligned(job: _Job, line: int) -> UserError:
    return UserError(f"{job.scores}: its rows do not match {job.shard.file} at line {line}. Scan the file again.")


def _scored(job: _Job, lines: list[bytes], first: int):
    """(line, id, score, p_value) of a block's records, scored as read; what is wrong with the malformed."""
    try:
        parsed = parse_lines(lines, text_field=job.text_field, on_error=job.on_error)
    except MalformedLine as e:
        raise UserError(fail_message(f"{job.shard.file}:{first + e.index}: {e.detail}")) from None
    cols = job.scorer.score(parsed.texts)
    return (np.asarray(parsed.rows, dtype=np.int64) + first, parsed.ids, cols["score"], cols["p_value"]), dict(parsed.bad)


def _decide(job: _Job, first: int, n: int, blank: np.ndarray, rows: tuple):
    """Per line of a block whose first line is number ``first``: quarantined or not, flagged or not."""
    line, ids, score, p = rows
    rel = line - first
    if len(rel) and (rel[0] < 0 or blank[rel].any()):
        raise _misaligned(job, int(line[0]))
    if job.threshold is not None:
        hit = score >= job.threshold
    else:
        if np.isnan(p).any():
            raise UserError(f"{job.scores}: no p-value for line {int(line[np.isnan(p)][0])} (watermark, fast-detectgpt "
                            "and binoculars scans have them); filter with --threshold instead.")
        hit = p <= job.fpr
    has = np.zeros(n, dtype=bool)
    has[rel] = True
    bad = ~blank & ~has
    flagged = np.zeros(n, dtype=bool)
    flagged[rel[hit]] = True
    at = np.flatnonzero(hit)
    lines = line[at].tolist()
    hit_ids = ids.take(at).to_pylist() if hasattr(ids, "take") else [ids[i] for i in at.tolist()]
    hit_ids = [f"{job.name}:{k}" if x is None else x for x, k in zip(hit_ids, lines)]  # as the scan names them
    return bad, flagged, dict(zip(rel[at].tolist(), zip(hit_ids, score[at].tolist(),
                                                         p[at].tolist() if p is not None else [None] * len(at))))


def _reasons(job: _Job, first: int, bad_idx, flag_info: dict, details: dict) -> bytes:
    out = []
    for i in sorted([*bad_idx, *flag_info]):
        if i in flag_info:
            doc_id, score, p = flag_info[i]
            why = {"file": job.name, "line": first + i, "id": doc_id, "reason": job.rule, "score": score}
            why.update({"threshold": job.threshold} if job.threshold is not None else {"p_value": p, "fpr": job.fpr})
        else:
            why = {"file": job.name, "line": first + i, "id": None, "reason": "malformed", "detail": details[i]}
        out.append(_dumps(why))
    return b"".join(out)


def _write(w: JsonlWriter, lines: list[bytes], mask: np.ndarray, terminated: bool) -> None:
    """Write the lines where ``mask`` holds, each with its newline (the file's last may have none)."""
    sel = list(compress(lines, mask.tolist()))
    if sel:
        w.write_lines(b"\n".join(sel), len(sel))
        if terminated or not mask[-1]:
            w.write_lines(b"\n", 0)


def _filter_shard(job: _Job) -> dict:
    parts = Path(job.parts)
    if done := sh.finished(parts, job.shard, job.digest):
        return done
    k = job.shard.index
    names = [f"part-{k:05d}.kept{job.suffix}", f"part-{k:05d}.quarantine{job.suffix}", f"part-{k:05d}.reasons.jsonl"]
    if job.shard.whole and kind_of(job.shard.file) == "parquet":
        found = _filter_parquet(job, [parts / n for n in names])
    else:
        found = _filter_jsonl(job, [parts / n for n in names])
    sha256 = found.pop("sha256")
    if job.scanned is not None and sha256 != job.scanned["sha256"]:
        for n in names:
            (parts / n).unlink(missing_ok=True)
        raise UserError(f"{job.shard.file}: changed since it was scanned into {job.scores} (bytes {job.shard.start}-"
                        f"{job.shard.end} hash differently). Scan it again.")
    return sh.mark_done(parts, job.shard, job.digest, sha256, names, **found)


def _filter_jsonl(job: _Job, paths: list[Path]) -> dict:
    reader = LineReader(job.shard.file, job.shard.start, job.shard.end)
    rows = _Rows(job) if job.scorer is None else None
    found = {"records": 0, "kept": 0, "flagged": 0, "malformed": 0}
    seen = 0
    with JsonlWriter(paths[0]) as kept_w, JsonlWriter(paths[1]) as quar_w, JsonlWriter(paths[2]) as why_w:
        for _, lines, terminated in reader:
            n = len(lines)
            first = job.line_base + seen + 1
            lens = np.fromiter(map(len, lines), dtype=np.int64, count=n)
            blank = (lens == 0) | np.fromiter(map(bytes.isspace, lines), dtype=bool, count=n)
            if rows is not None:
                bad, flagged, info = _decide(job, first, n, blank, rows.take(first + n))
                details = _malformed(job, lines, first, np.flatnonzero(bad).tolist())
            else:
                scored, details = _scored(job, lines, first)
                bad, flagged, info = _decide(job, first, n, blank, scored)
            bad_idx = np.flatnonzero(bad).tolist()
            quar = bad | flagged
            _write(kept_w, lines, ~quar, terminated)
            _write(quar_w, lines, quar, terminated)
            why_w.write_lines(_reasons(job, first, bad_idx, info, details), int(quar.sum()))
            found["records"] += int((~blank).sum())
            found["kept"] += int((~quar & ~blank).sum())
            found["flagged"] += len(info)
            found["malformed"] += len(bad_idx)
            seen += n
        if rows is not None and not rows.done():
            raise UserError(f"{job.scores}: has more rows for {job.shard.file} than the file has records. Scan it again.")
    found["sha256"], found["lines"] = reader.sha256, reader.lines
    return found


def _malformed(job: _Job, lines: list[bytes], first: int, bad_idx: list[int]) -> dict[int, str]:
    """What is wrong with the lines the scan skipped (a good record there means a wrong sidecar)."""
    details = {}
    for i in bad_idx:
        parsed = parse_slowly([lines[i]], job.text_field, "skip")
        if not parsed.bad:
            raise _misaligned(job, first + i)
        details[i] = parsed.bad[0][1]
        if job.on_error == "fail":
            raise UserError(fail_message(f"{job.shard.file}:{first + i}: {details[i]}"))
    return details


def _filter_parquet(job: _Job, paths: list[Path]) -> dict:
    import pyarrow as pa

    pf = open_parquet(job.shard.file)
    rows = _Rows(job) if job.scorer is None else None
    found = {"records": 0, "kept": 0, "flagged": 0, "malformed": 0}
    first = 1
    with ParquetWriter(paths[0], pf.schema_arrow) as kept_w, ParquetWriter(paths[1], pf.schema_arrow) as quar_w, \
            JsonlWriter(paths[2]) as why_w:
        for rb, records in _parquet_rows(job, pf):
            n = rb.num_rows
            scored = rows.take(first + n) if rows is not None else _scored_rows(job, records, first)
            bad, flagged, info = _decide(job, first, n, np.zeros(n, dtype=bool), scored)
            bad_idx = np.flatnonzero(bad).tolist()
            details = {i: f"malformed record (no string field {job.text_field!r})" for i in bad_idx}
            if bad_idx and job.on_error == "fail":
                raise UserError(fail_message(f"{job.shard.file}:{first + bad_idx[0]}: {details[bad_idx[0]]}"))
            quar = bad | flagged
            kept_w.write_batch(rb.filter(pa.array(~quar)))
            quar_w.write_batch(rb.filter(pa.array(quar)))
            why_w.write_lines(_reasons(job, first, bad_idx, info, details), int(quar.sum()))
            found["records"] += n
            found["kept"] += int((~quar).sum())
            found["flagged"] += len(info)
            found["malformed"] += len(bad_idx)
            first += n
        if rows is not None and not rows.done():
            raise UserError(f"{job.scores}: has more rows for {job.shard.file} than the file has records. Scan it again.")
    found["sha256"], found["lines"] = file_sha256(job.shard.file), first - 1
    return found


def _parquet_rows(job: _Job, pf):
    """The file's record batches, each with its records as read by the scan (when scoring here)."""
    if job.scorer is None:
        for rb in parquet_batches(pf, job.shard.file, batch_size=BATCH):
            yield rb, None
        return
    batches = parquet_batches(pf, job.shard.file, batch_size=BATCH)
    for b in shard_records(job.shard, text_field=job.text_field, on_error=job.on_error, batch_size=BATCH, found=Found()):
        yield next(batches), b


def _scored_rows(job: _Job, b, first: int):
    cols = job.scorer.score(b.texts)
    return b.rows + 1, b.ids, cols["score"], cols["p_value"]


def _concat(parts: list[Path], dest: Path) -> None:
    """``dest`` = the parts one after the other (a rename when there is one), written atomically."""
    if len(parts) == 1:
        try:
            os.replace(parts[0], dest)
            return
        except OSError:  # another file system: copy
            pass
    f = AtomicFile(dest)
    try:
        with open(f.tmp, "wb") as w:
            for p in parts:
                with open(p, "rb") as r:
                    _copy(r, w)
        f.commit()
    except BaseException:
        f.abort()
        raise


def _copy(r, w) -> None:
    """Append the file ``r`` to ``w``: in the kernel where it can (copy_file_range), else through a buffer."""
    try:
        while os.copy_file_range(r.fileno(), w.fileno(), 1 << 30):
            pass
    except (AttributeError, OSError):  # no copy_file_range here, or not between these files
        shutil.copyfileobj(r, w, 8 << 20)


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


def filter_corpus(inp: str | os.PathLike, *, scores: str | os.PathLike | None = None, out: str | os.PathLike,
                  quarantine: str | os.PathLike, fpr: float | None = None, threshold: float | None = None,
                  on_error: str = "fail", force: bool = False, jobs: int | None = None, detector: str | None = None,
                  text_field: str = "text", shard_bytes: int = sh.SHARD_BYTES,
                  progress: sh.Progress | None = None, ledger: str | os.PathLike | None = None) -> FilterResult:
    """Split ``inp`` into ``out`` and ``quarantine`` by the scores in ``scores``, or by the scores of
    ``detector`` computed while reading (see the module).

    ``ledger``: a provenance ledger to record the filter in, as a step whose inputs are ``inp`` (and
    the scan's sidecar) and whose outputs are the kept, quarantined and reasons files and the manifest."""
    check_on_error(on_error)
    jobs = sh.check_jobs(jobs)
    sh.check_shard_bytes(shard_bytes)
    inp, out, quarantine = Path(inp), Path(out), Path(quarantine)
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
    for path in (inp, *([Path(scores)] if scores is not None else [])):
        if not path.is_file():
            raise UserError(f"{path}: no such file.")
    if len({inp.resolve(), out.resolve(), quarantine.resolve()}) < 3:
        raise UserError("filter: --out, --quarantine and the input must be three different files.")
    reasons = Path(str(quarantine) + ".reasons.jsonl")
    for path, flag in ((out, "--out"), (quarantine, "--quarantine"), (reasons, "--quarantine's reasons file")):
        check_output_file(path, flag)  # a bad --quarantine fails here, before a record is written
    kind = kind_of(inp)
    if kind_of(out) != kind or kind_of(quarantine) != kind:
        raise UserError(f"filter: --out and --quarantine must have the input's format ({kind}).")
    if str(out).lower().endswith(".gz") != str(quarantine).lower().endswith(".gz"):
        raise UserError("filter: --out and --quarantine must both be .gz or neither.")
    rule = f"score >= {threshold:g}" if threshold is not None else f"p_value <= {fpr:g}"
    known: dict[str, str] = {}  # digests computed on the way, for the ledger step
    if scores is not None:
        scores = Path(scores)
        man, rec, first_row = _scanned(scores, inp)
        scores_hash = file_sha256(scores)
        known[str(scores)] = scores_hash
        if scores_hash != man.get("output", {}).get("sha256"):
            raise UserError(f"{scores}: changed since its manifest was written. Scan again.")
        shards = [sh.Shard(i, str(inp), s["part"], s["start"], s["end"], s["whole"]) for i, s in enumerate(rec["shards"])]
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
    old = read_manifest(manifest_path)
    if (not force and old and old.get("format") == FORMAT and {k: old.get(k) for k in key} == key
            and all(Path(p).is_file() and Path(p).stat().st_size == n for p, n in old.get("outputs", {}).items())
            and [s.to_dict() for s in shards] == [{k: r.get(k) for k in s.to_dict()} for s, r in zip(shards, old["shards"])]
            and sh.run(sh.input_digest, shards, jobs) == [r["sha256"] for r in old["shards"]]):
        shutil.rmtree(parts, ignore_errors=True)
        result = FilterResult(**{**old["result"], "skipped": True})
        record_step(ledger, "filter", inputs=read, outputs=[*outputs, manifest_path], params=key, result=result,
                    known=known)
        return result
    if force:
        shutil.rmtree(parts, ignore_errors=True)
    digest = sh.settings_digest({"format": FORMAT, **key})
    suffix = ".parquet" if kind == "parquet" else (".jsonl.gz" if str(out).lower().endswith(".gz") else ".jsonl")
    common = dict(threshold=threshold, fpr=fpr, rule=rule, text_field=text_field, on_error=on_error, suffix=suffix,
                  parts=str(parts), digest=digest)
    with sh.parts_folder(parts):
        if scores is not None:
            groups = _row_groups(scores, first_row, [s["rows"] for s in rec["shards"]])
            bases = np.cumsum([0] + [r["lines"] for r in rec["shards"]]).tolist()
            tasks = [_Job(s, r, b, g, rec["path"], str(scores), None, **common)
                     for s, r, b, g in zip(shards, rec["shards"], bases, groups)]
            marks = sh.run(_filter_shard, tasks, jobs, sh.ticker(progress, len(tasks), "filtering"))
        else:
            marks = _score_and_filter(shards, jobs, dict(scanned=None, row_groups=[], name=str(inp), scores=None,
                                                         scorer=LengthScorer(), **common),
                                      sh.ticker(progress, len(shards), "filtering"))
    manifest_path.unlink(missing_ok=True)  # from here on no manifest vouches for outputs being rewritten
    count = {k: sum(m[k] for m in marks) for k in ("records", "kept", "flagged", "malformed")}
    assert count["kept"] + count["flagged"] + count["malformed"] == count["records"]
    result = FilterResult(str(inp), str(out), str(quarantine), str(reasons), count["records"], count["kept"],
                          count["flagged"] + count["malformed"], count["flagged"], count["malformed"], rule)
    try:
        for i, dest in enumerate(outputs):
            _concat([parts / list(m["outputs"])[i] for m in marks], dest)
        atomic_write_json(manifest_path, {"format": FORMAT, **key,
                                          "shards": [{**s.to_dict(), "sha256": m["sha256"]} for s, m in zip(shards, marks)],
                                          "outputs": {str(p): Path(p).stat().st_size for p in outputs},
                                          "result": {k: v for k, v in result.to_dict().items() if k != "skipped"}})
    except BaseException:  # a kept file without its quarantine would drop records silently: none of them stays
        for dest in outputs:
            dest.unlink(missing_ok=True)
        raise
    shutil.rmtree(parts, ignore_errors=True)
    record_step(ledger, "filter", inputs=read, outputs=[*outputs, manifest_path], params=key, result=result,
                    known=known)
    return result


def _score_and_filter(shards: list[sh.Shard], jobs: int, job: dict, on_done=None) -> list[dict]:
    """Filter shards scoring as they are read: in order in this process (each shard's first line
    number is known once the shards before it are done), else after counting every shard's lines."""
    if jobs == 1 or len(shards) == 1:
        marks, base = [], 0
        for s in shards:
            marks.append(_filter_shard(_Job(s, line_base=base, **job)))
            base += marks[-1]["lines"]
            if on_done:
                on_done()
        return marks
    with sh.Pool(jobs) as pool:
        bases = np.cumsum([0] + pool.map(_count_lines, shards)).tolist()
        return pool.map(_filter_shard, [_Job(s, line_base=b, **job) for s, b in zip(shards, bases)], on_done)


def _count_lines(shard: sh.Shard) -> int:
    r = LineReader(shard.file, shard.start, shard.end)
    r.digest()
    return r.lines
