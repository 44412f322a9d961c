"""``filter``: split a corpus file into kept and quarantined records using a scan's sidecar.

Nothing is dropped silently: every record goes to exactly one of ``out`` (kept) or ``quarantine``,
in input order, byte for byte (JSONL lines are copied as read; blank lines, which hold no record,
go to ``out``), so ``kept + quarantined == input``. Why each quarantined record was dropped is in
``QUARANTINE.reasons.jsonl``, one line per record in the same order: file, line, id, and either
the rule with its score and threshold, or ``"malformed"`` (with ``--on-error skip``).

Rules (exactly one):

* ``threshold=T``: quarantine when ``score >= T`` (the watermark's z, KGW's rule);
* ``fpr=a``: quarantine when the exact binomial p-value ``<= a``: each human document is then
  quarantined with probability at most ``a`` whatever its length (needs a ``p_value`` column,
  which watermark scans have).

The sidecar is matched to the input by content (the scan manifest's SHA-256 of each input), else
by path, and is checked row by row against the input's line numbers: a sidecar from another
version of the file is a UserError, never a silent misalignment. ``OUT.json`` records the
inputs' hashes, the rule and the counts; a rerun that finds it matching skips the work.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from collapselab.atomic import atomic_write_json
from collapselab.errors import UserError
from collapselab.pipeline.io import (BATCH, JsonlWriter, ParquetWriter, check_on_error, dumps_line, file_sha256,
                                     kind_of, parquet_schema, read_batches, read_manifest)

FORMAT = "collapselab-filter"


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


def _sidecar_name(scores: Path, inp: Path, inp_hash: str) -> tuple[str, str]:
    """The ``file`` value the sidecar uses for ``inp``, and the scan's text field."""
    man = read_manifest(Path(str(scores) + ".json")) or {}
    text_field = man.get("params", {}).get("text_field", "text")
    for rec in man.get("inputs", []):
        if rec.get("sha256") == inp_hash:
            return rec["path"], text_field
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = pc.unique(pq.read_table(scores, columns=["file"])["file"]).to_pylist()
    for n in names:
        if n == str(inp) or Path(n).resolve() == inp.resolve():
            if man:
                raise UserError(f"{inp}: changed since it was scanned into {scores} (its SHA-256 differs). Scan it again.")
            return n, text_field
    raise UserError(f"{scores}: holds no scores for {inp} (it covers {', '.join(names[:5])}). Scan it first.")


def _sidecar_rows(scores: Path, name: str, need_p: bool) -> Iterator[tuple]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(scores)
    cols = ["file", "line", "id", "score"] + (["p_value"] if need_p else [])
    missing = [c for c in cols if c not in pf.schema_arrow.names]
    if missing:
        raise UserError(f"{scores}: not a scan sidecar (no column {missing[0]!r}).")
    for rb in pf.iter_batches(batch_size=BATCH, columns=cols):
        rb = rb.filter(pc.equal(rb.column(0), name))
        c = [rb.column(i).to_pylist() for i in range(1, len(cols))]
        yield from zip(*c)


def filter_corpus(inp: str | os.PathLike, *, scores: str | os.PathLike, out: str | os.PathLike,
                  quarantine: str | os.PathLike, fpr: float | None = None, threshold: float | None = None,
                  on_error: str = "fail", force: bool = False) -> FilterResult:
    """Split ``inp`` into ``out`` and ``quarantine`` by the scores in ``scores`` (see the module)."""
    check_on_error(on_error)
    inp, scores, out, quarantine = Path(inp), Path(scores), Path(out), Path(quarantine)
    if (fpr is None) == (threshold is None):
        raise UserError("filter: give exactly one of --fpr (e.g. 0.01) or --threshold (e.g. 4).")
    if fpr is not None and not 0.0 < fpr < 1.0:
        raise UserError(f"--fpr {fpr}: must be between 0 and 1 (e.g. 0.01).")
    for p in (inp, scores):
        if not p.is_file():
            raise UserError(f"{p}: no such file.")
    if len({inp.resolve(), out.resolve(), quarantine.resolve()}) < 3:
        raise UserError("filter: --out, --quarantine and the input must be three different files.")
    kind = kind_of(inp)
    if kind_of(out) != kind or kind_of(quarantine) != kind:
        raise UserError(f"filter: --out and --quarantine must have the input's format ({kind}).")
    reasons = Path(str(quarantine) + ".reasons.jsonl")
    rule = f"score >= {threshold:g}" if threshold is not None else f"p_value <= {fpr:g}"
    inp_hash, scores_hash = file_sha256(inp), file_sha256(scores)
    manifest_path = Path(str(out) + ".json")
    key = {"input": {"path": str(inp), "sha256": inp_hash}, "scores": {"path": str(scores), "sha256": scores_hash},
           "rule": rule, "on_error": on_error}
    old = read_manifest(manifest_path)
    if (not force and old and old.get("format") == FORMAT and {k: old.get(k) for k in key} == key
            and all(Path(p).is_file() and file_sha256(p) == h for p, h in old.get("outputs", {}).items())):
        return FilterResult(**{**old["result"], "skipped": True})

    name, text_field = _sidecar_name(scores, inp, inp_hash)
    rows = _sidecar_rows(scores, name, need_p=fpr is not None)
    if kind == "parquet":
        schema = parquet_schema(inp)
        kept_w, quar_w = ParquetWriter(out, schema), ParquetWriter(quarantine, schema)
    else:
        kept_w, quar_w = JsonlWriter(out), JsonlWriter(quarantine)
    why_w = JsonlWriter(reasons)
    n = kept = flagged = malformed = 0
    ok = False
    try:
        for batch in read_batches(inp, text_field=text_field, on_error=on_error):
            for r in batch:
                item = r.raw if kind == "jsonl" else r.obj
                if r.blank:
                    kept_w.write(item)
                    continue
                n += 1
                if r.obj is None:  # malformed, skipped at scan: quarantined here, never lost
                    malformed += 1
                    quar_w.write(item)
                    why_w.write(dumps_line({"file": name, "line": r.line, "id": None, "reason": "malformed", "detail": r.error}))
                    continue
                row = next(rows, None)
                if row is None or row[0] != r.line:
                    raise UserError(f"{scores}: its rows do not match {inp} at line {r.line} "
                                    f"(sidecar {'ends' if row is None else f'has line {row[0]}'}). Scan the file again.")
                _, doc_id, score, *p = row
                if fpr is not None and (p[0] is None or p[0] != p[0]):
                    raise UserError(f"{scores}: no p-value for line {r.line} (only watermark scans have them); "
                                    "filter with --threshold instead.")
                hit = (score is not None and score >= threshold) if threshold is not None else (p[0] is not None and p[0] <= fpr)
                if hit:
                    flagged += 1
                    quar_w.write(item)
                    why = {"file": name, "line": r.line, "id": doc_id, "reason": rule, "score": score}
                    why.update({"threshold": threshold} if threshold is not None else {"p_value": p[0], "fpr": fpr})
                    why_w.write(dumps_line(why))
                else:
                    kept += 1
                    kept_w.write(item)
        if next(rows, None) is not None:
            raise UserError(f"{scores}: has more rows for {inp} than the file has records. Scan the file again.")
        ok = True
    finally:
        for w in (kept_w, quar_w, why_w):
            w.close(ok=ok)
    assert kept + flagged + malformed == n
    result = FilterResult(str(inp), str(out), str(quarantine), str(reasons), n, kept, flagged + malformed, flagged,
                          malformed, rule)
    atomic_write_json(manifest_path, {"format": FORMAT, **key,
                                      "outputs": {str(p): file_sha256(p) for p in (out, quarantine, reasons)},
                                      "result": {k: v for k, v in result.to_dict().items() if k != "skipped"}})
    return result
