"""Pipeline steps, datatrove-style: small objects with one job each, chained over a shard's records.

- :class:`Reader`: a shard's records, a batch at a time (:func:`~collapselab.pipeline.io.shard_records`:
  every input format, malformed lines failed or counted);
- :class:`Score`: a scorer (:func:`~collapselab.pipeline.scorers.make_scorer`: any detector or
  watermark scheme of the detect stack) on each batch, with its flags;
- :class:`ThresholdFilter`: each record kept or quarantined by a rule on its score; the
  quarantine is its *exclusion writer* (as datatrove's ``exclusion_writer``), with a reason per
  record in a third file;
- :class:`Mix`: vault documents interleaved among the input records at seeded random places.

Each step keeps a :class:`StepStats` (documents in and out, bytes, flagged, malformed, seconds):
a shard's work returns its steps' stats, the runner (:mod:`collapselab.pipeline.runner`) adds them
up over the shards, shows them in the command's result and writes them to its manifest
(``steps``). The commands (``scan``, ``filter``, ``mix``) are compositions of these steps run by
the runner on a backend.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from itertools import compress
from typing import Iterator

import numpy as np

from collapselab.errors import UserError
from collapselab.pipeline.io import BATCH, Found, shard_records


@dataclass
class StepStats:
    """What one step did (over one shard, or summed over all)."""

    step: str
    documents_in: int = 0
    documents_out: int = 0
    bytes: int = 0  # input bytes read (the shards' byte ranges; a compressed file's own size)
    flagged: int = 0
    malformed: int = 0
    seconds: float = 0.0  # time spent in the step (its own work, not the steps before it)

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 6)}


def add_stats(per_shard: list[list[dict]]) -> list[dict]:
    """The steps' stats summed over shards, in the steps' order."""
    total: dict[str, dict] = {}
    for stats in per_shard:
        for s in stats:
            t = total.setdefault(s["step"], StepStats(s["step"]).to_dict())
            for k, v in s.items():
                if k != "step":
                    t[k] += v
    return list(total.values())


class Step:
    name = "step"

    def __init__(self) -> None:
        self.stats = StepStats(self.name)


class Reader(Step):
    """``reader(shard, found)``: the shard's well-formed records, ``batch_size`` at a time; ``found``
    gets the shard's input hash, lines and malformed lines once read through."""

    name = "read"

    def __init__(self, *, text_field: str = "text", on_error: str = "fail", batch_size: int = BATCH, ids: bool = False,
                 whole_rows: bool = False) -> None:
        super().__init__()
        self.kw = dict(text_field=text_field, on_error=on_error, batch_size=batch_size, ids=ids, whole_rows=whole_rows)

    def __call__(self, shard, found: Found) -> Iterator:
        it = shard_records(shard, found=found, **self.kw)
        st = self.stats
        while True:
            t0 = time.perf_counter()
            b = next(it, None)
            st.seconds += time.perf_counter() - t0
            if b is None:
                break
            st.documents_out += len(b.texts)
            yield b
        st.documents_in = st.documents_out + found.malformed
        st.malformed = found.malformed
        st.bytes += shard.end - shard.start


class Score(Step):
    """``score(batches)``: ``(batch, columns, flagged)`` for each non-empty batch, ``columns`` the
    scorer's (the sidecar's score columns), ``flagged`` its flag rule's verdicts."""

    name = "score"

    def __init__(self, scorer) -> None:
        super().__init__()
        self.scorer = scorer

    def __call__(self, batches) -> Iterator:
        st = self.stats
        for b in batches:
            if not b.texts:
                continue
            t0 = time.perf_counter()
            cols = self.scorer.score(b.texts)
            flagged = self.scorer.flagged(cols)
            st.seconds += time.perf_counter() - t0
            st.documents_in += len(b.texts)
            st.documents_out += len(b.texts)
            st.flagged += int(flagged.sum())
            yield b, cols, flagged


def _dumps(obj: dict) -> bytes:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n"


class ThresholdFilter(Step):
    """Keep a record, or send it to the exclusion writer (the quarantine) with its reason.

    Rule: ``score >= threshold``, or ``p_value <= fpr``. ``name`` is the file as the sidecar names
    it (ids default to ``NAME:LINE``), ``source`` the sidecar (or the input) named in errors.
    Malformed records (found by the reader) are quarantined too, with ``"malformed"`` as reason.
    Writers take whole lines (:class:`~collapselab.pipeline.io.JsonlWriter`) or record batches
    (:class:`~collapselab.pipeline.io.ParquetWriter`); ``reasons`` is a JsonlWriter."""

    name = "filter"

    def __init__(self, *, threshold: float | None, fpr: float | None, rule: str, name: str, source: str, file: str,
                 writer=None, exclusion_writer=None, reasons=None) -> None:
        super().__init__()
        self.threshold, self.fpr, self.rule = threshold, fpr, rule
        self.name_, self.source, self.file = name, source, file
        self.writer, self.exclusion_writer, self.reasons = writer, exclusion_writer, reasons

    def misaligned(self, line: int) -> UserError:
        return UserError(f"{self.source}: its rows do not match {self.file} at line {line}. Scan the file again.")

    def decide(self, first: int, n: int, blank: np.ndarray, rows: tuple):
        """Per line of a block whose first line is number ``first``, given the ``(line, id, score,
        p_value)`` of its records: malformed or not, flagged or not, and the flagged ones' reasons."""
        line, ids, score, p = rows
        rel = line - first
        if len(rel) and (rel[0] < 0 or blank[rel].any()):
            raise self.misaligned(int(line[0]))
        if self.threshold is not None:
            hit = score >= self.threshold
        else:
            if np.isnan(p).any():
                raise UserError(f"{self.source}: no p-value for line {int(line[np.isnan(p)][0])} (watermark, "
                                "fast-detectgpt and binoculars scans have them); filter with --threshold instead.")
            hit = p <= self.fpr
        has = np.zeros(n, dtype=bool)
        has[rel] = True
        bad = ~blank & ~has
        flagged = np.zeros(n, dtype=bool)
        flagged[rel[hit]] = True
        at = np.flatnonzero(hit)
        lines = line[at].tolist()
        hit_ids = ids.take(at).to_pylist() if hasattr(ids, "take") else [ids[i] for i in at.tolist()]
        hit_ids = [f"{self.name_}:{k}" if x is None else x for x, k in zip(hit_ids, lines)]  # as the scan names them
        return bad, flagged, dict(zip(rel[at].tolist(), zip(hit_ids, score[at].tolist(),
                                                             p[at].tolist() if p is not None else [None] * len(at))))

    def _reasons(self, first: int, bad_idx, flag_info: dict, details: dict) -> bytes:
        out = []
        for i in sorted([*bad_idx, *flag_info]):
            if i in flag_info:
                doc_id, score, p = flag_info[i]
                why = {"file": self.name_, "line": first + i, "id": doc_id, "reason": self.rule, "score": score}
                why.update({"threshold": self.threshold} if self.threshold is not None else {"p_value": p, "fpr": self.fpr})
            else:
                why = {"file": self.name_, "line": first + i, "id": None, "reason": "malformed", "detail": details[i]}
            out.append(_dumps(why))
        return b"".join(out)

    def _count(self, records: int, quar: np.ndarray, blank: np.ndarray, flagged: int, malformed: int) -> None:
        st = self.stats
        st.documents_in += records
        st.documents_out += int((~quar & ~blank).sum())
        st.flagged += flagged
        st.malformed += malformed

    def lines(self, lines: list[bytes], terminated: bool, first: int, blank: np.ndarray, decided, details: dict) -> None:
        """Write a block of JSONL lines (their bytes as read) to the writer or the exclusion writer."""
        t0 = time.perf_counter()
        bad, flagged, info = decided
        bad_idx = np.flatnonzero(bad).tolist()
        quar = bad | flagged
        _write(self.writer, lines, ~quar, terminated)
        _write(self.exclusion_writer, lines, quar, terminated)
        self.reasons.write_lines(self._reasons(first, bad_idx, info, details), int(quar.sum()))
        self._count(int((~blank).sum()), quar, blank, len(info), len(bad_idx))
        self.stats.seconds += time.perf_counter() - t0

    def batch(self, rb, first: int, decided, details: dict) -> None:
        """Write a Parquet record batch's rows to the writer or the exclusion writer."""
        import pyarrow as pa

        t0 = time.perf_counter()
        bad, flagged, info = decided
        bad_idx = np.flatnonzero(bad).tolist()
        quar = bad | flagged
        self.writer.write_batch(rb.filter(pa.array(~quar)))
        self.exclusion_writer.write_batch(rb.filter(pa.array(quar)))
        self.reasons.write_lines(self._reasons(first, bad_idx, info, details), int(quar.sum()))
        self._count(rb.num_rows, quar, np.zeros(rb.num_rows, dtype=bool), len(info), len(bad_idx))
        self.stats.seconds += time.perf_counter() - t0


def _write(w, lines: list[bytes], mask: np.ndarray, terminated: bool) -> None:
    """Write the lines where ``mask`` holds, each with its newline (the file's last may have none)."""
    sel = list(compress(lines, mask.tolist()))
    if sel:
        w.write_lines(b"\n".join(sel), len(sel))
        if terminated or not mask[-1]:
            w.write_lines(b"\n", 0)


class Mix(Step):
    """Interleave ``human`` documents (``(hash, text)``, drawn from a vault snapshot) among ``n_input``
    input records, written by ``writer``, at uniformly random places: sequential selection sampling
    from ``seed`` (the next slot is human with probability ``r / t``: one pass, constant memory).

    Call :meth:`record` for each input record in order, then :meth:`close`."""

    name = "mix"

    def __init__(self, writer, human: list, n_input: int, *, seed: int, text_field: str, snapshot: str) -> None:
        super().__init__()
        self.w, self.human, self.text_field, self.snapshot = writer, human, text_field, snapshot
        self.rng = np.random.default_rng([seed, 1])
        self.order = self.rng.permutation(len(human))  # vault documents in random order too
        self.r, self.t, self.hi = len(human), len(human) + n_input, 0

    def _human_slots(self) -> None:
        from collapselab.pipeline.io import dumps_line

        while self.r > 0 and self.rng.random() * self.t < self.r:
            hx, text = self.human[self.order[self.hi]]
            self.w.write(dumps_line({"id": f"vault:{hx}", self.text_field: text, "source": f"vault:{self.snapshot}",
                                     "vault_sha256": hx}))
            self.r, self.t, self.hi = self.r - 1, self.t - 1, self.hi + 1
            self.stats.documents_out += 1

    def record(self, line: bytes) -> None:
        """Write one input record (its line, newline included), after the human documents due before it."""
        self._human_slots()
        self.w.write(line)
        self.t -= 1
        self.stats.documents_in += 1
        self.stats.documents_out += 1

    def close(self) -> None:
        self._human_slots()
        assert self.r == 0 and self.t == 0
