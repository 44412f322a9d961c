"""Collapse Lab's reader, scorer and filter as datatrove pipeline steps.

datatrove (HuggingFace's data-processing library) runs a list of ``PipelineStep``s over a stream of
``Document``s, cut into ``tasks`` by ``rank``/``world_size``, on its Local, Slurm or Ray executor.
These steps put Collapse Lab's detectors into such a pipeline, with nothing re-implemented: the
scorer is :func:`collapselab.pipeline.scorers.make_scorer`'s (the one ``collapselab scan`` uses),
the reader is the one every ``collapselab`` command reads with.

- :class:`CollapseLabReader` reads ``inputs`` (files, folders, URLs, every format
  :mod:`collapselab.pipeline.sources` knows) with Collapse Lab's reader. A task takes whole files
  (file ``i`` goes to task ``i % world_size``), so each document keeps its place: its metadata holds
  ``collapselab_file`` (the file as the inputs name it), ``collapselab_line`` (1-based line or row)
  and ``collapselab_file_index``; its ``id`` is the record's ``id`` field, else ``FILE:LINE``.
- :class:`CollapseLabScore` scores documents in batches and stores the sidecar's score columns in
  ``metadata["collapselab"]`` and the detector's flag in ``metadata["collapselab_flagged"]``.
  The scorer is made (and calibrated, for the LM detectors) in each task, from the options.
- :class:`CollapseLabFilter` drops what the scorer flagged, or what ``threshold`` (score at least)
  or ``fpr`` (p-value at most) says, into datatrove's ``exclusion_writer`` with the reason.
- :class:`SidecarWriter` writes each input file's rows, in the sidecar's schema
  (:func:`collapselab.pipeline.scan.sidecar_table`), to ``folder/part-NNNNN.parquet`` (one part a
  file); :func:`merge_sidecar` joins the parts, in input order, into the sidecar ``collapselab scan``
  writes for the same inputs and detector.

A pipeline ``[CollapseLabReader(inputs), CollapseLabScore(...), SidecarWriter(folder)]`` on any
executor and any number of tasks, then ``merge_sidecar(folder, out)``, gives the rows of
``collapselab scan INPUTS --out out`` (tested against it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.utils.batching import batched
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("collapselab.integrations.datatrove needs datatrove: pip install 'datatrove>=0.3'") from e

from collapselab.pipeline.io import BATCH, Found, shard_records

FILE, LINE, INDEX, SCORES, FLAGGED = ("collapselab_file", "collapselab_line", "collapselab_file_index",
                                      "collapselab", "collapselab_flagged")


class CollapseLabReader(PipelineStep):
    """Documents of ``inputs`` as Collapse Lab's reader reads them (see the module)."""

    name = "collapselab reader"
    type = "📖 - READER"

    def __init__(self, inputs: Sequence[str | os.PathLike], *, text_field: str = "text", on_error: str = "fail",
                 batch_size: int = BATCH) -> None:
        super().__init__()
        self.inputs = [str(p) for p in inputs]
        self.text_field, self.on_error, self.batch_size = text_field, on_error, batch_size

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from collapselab.pipeline import shards as sh
        from collapselab.pipeline.sources import expand_inputs

        if data:
            yield from data
        files = expand_inputs(self.inputs)
        for index in range(rank, len(files), world_size):
            for shard in sh.plan([files[index]], sh.WHOLE):  # one shard: rows count from the file's start
                found = Found()
                for b in shard_records(shard, text_field=self.text_field, on_error=self.on_error,
                                       batch_size=self.batch_size, found=found):
                    for row, text, rid in zip(b.rows.tolist(), b.texts, b.ids):
                        self.stat_update("documents")
                        yield Document(text=text, id=rid if rid is not None else f"{shard.file}:{row + 1}",
                                       metadata={FILE: shard.file, LINE: row + 1, INDEX: index, "collapselab_id": rid})
                if found.malformed:
                    self.stat_update("malformed_skipped", value=found.malformed)


class CollapseLabScore(PipelineStep):
    """Score documents with a Collapse Lab detector: ``detector`` and ``options`` as
    :func:`collapselab.pipeline.scorers.make_scorer` (``collapselab scan``'s flags) take them."""

    name = "collapselab score"
    type = "🔢 - SCORER"

    def __init__(self, detector: str = "watermark", *, batch_size: int = BATCH, **options) -> None:
        from collapselab.pipeline.scorers import check_detector_options

        super().__init__()
        check_detector_options(detector, **options)  # the cheap checks, once, where the pipeline is built
        self.detector, self.batch_size, self.options = detector, batch_size, options
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            from collapselab.pipeline.scorers import make_scorer

            self._scorer, self.params = make_scorer(self.detector, **self.options)
            self._scorer.calibrate()
        return self._scorer

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if not data:
            return
        scorer = self.scorer
        for batch in batched(data, self.batch_size):
            with self.track_time("batch"):
                cols = scorer.score([d.text for d in batch])
                flagged = scorer.flagged(cols)
            for i, doc in enumerate(batch):
                doc.metadata[SCORES] = {c: (None if v is None else _py(v[i])) for c, v in cols.items()}
                doc.metadata[SCORES]["scheme"] = scorer.scheme_name
                doc.metadata[FLAGGED] = bool(flagged[i])
                self.stat_update("flagged" if flagged[i] else "not_flagged")
                yield doc


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


class CollapseLabFilter(BaseFilter):
    """Drop the documents :class:`CollapseLabScore` flagged; or, with ``threshold``, those whose score
    is at least it, or with ``fpr``, those whose p-value is at most it (``collapselab filter``'s
    rules). Dropped documents go to ``exclusion_writer`` with the reason ``collapselab``."""

    name = "collapselab filter"

    def __init__(self, exclusion_writer=None, *, threshold: float | None = None, fpr: float | None = None) -> None:
        super().__init__(exclusion_writer)
        if threshold is not None and fpr is not None:
            from collapselab.errors import UserError

            raise UserError("CollapseLabFilter: give threshold or fpr, not both.")
        self.threshold, self.fpr = threshold, fpr

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if SCORES not in doc.metadata:
            from collapselab.errors import UserError

            raise UserError(f"document {doc.id}: no Collapse Lab scores; put CollapseLabScore before CollapseLabFilter.")
        s = doc.metadata[SCORES]
        if self.threshold is not None:
            hit = s["score"] is not None and s["score"] >= self.threshold
        elif self.fpr is not None:
            hit = s.get("p_value") is not None and s["p_value"] <= self.fpr
        else:
            hit = doc.metadata[FLAGGED]
        return (False, "collapselab") if hit else True


class SidecarWriter(PipelineStep):
    """Each input file's scored rows, in the sidecar's schema, to ``folder/part-NNNNN.parquet``
    (NNNNN: the file's place among the inputs); documents pass on unchanged."""

    name = "collapselab sidecar"
    type = "💽 - WRITER"

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.folder = str(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if not data:
            return
        rows: list[Document] = []
        for doc in data:
            if rows and doc.metadata[INDEX] != rows[0].metadata[INDEX]:
                self._write(rows)
                rows = []
            rows.append(doc)
            yield doc
        if rows:
            self._write(rows)

    def _write(self, docs: list[Document]) -> None:
        import pyarrow.parquet as pq

        from collapselab.atomic import AtomicFile
        from collapselab.pipeline.scan import sidecar_table

        if any(SCORES not in d.metadata or FILE not in d.metadata for d in docs):
            from collapselab.errors import UserError

            raise UserError("SidecarWriter needs documents from CollapseLabReader, scored by CollapseLabScore.")
        names = [c for c in docs[0].metadata[SCORES] if c != "scheme"]
        cols = {c: (None if docs[0].metadata[SCORES][c] is None
                    else np.array([d.metadata[SCORES][c] for d in docs])) for c in names}
        table = sidecar_table(docs[0].metadata[FILE], np.array([d.metadata[LINE] for d in docs], dtype=np.int64),
                              [d.metadata["collapselab_id"] for d in docs], cols, docs[0].metadata[SCORES]["scheme"])
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        out = AtomicFile(Path(self.folder) / f"part-{docs[0].metadata[INDEX]:05d}.parquet")
        try:
            pq.write_table(table, out.tmp)
        except BaseException:
            out.abort()
            raise
        out.commit()
        self.stat_update("rows", value=len(docs))


def merge_sidecar(folder: str | os.PathLike, out: str | os.PathLike) -> int:
    """Join :class:`SidecarWriter`'s parts, in input order, into the sidecar ``out``; returns its rows."""
    import pyarrow.parquet as pq

    from collapselab.errors import UserError
    from collapselab.pipeline.io import ParquetWriter
    from collapselab.pipeline.scan import sidecar_schema

    parts = sorted(Path(folder).glob("part-*.parquet"))
    if not parts:
        raise UserError(f"{folder}: no sidecar parts; run the pipeline with SidecarWriter({str(folder)!r}) first.")
    with ParquetWriter(out, sidecar_schema()) as w:
        for p in parts:
            for rb in pq.ParquetFile(p).iter_batches(batch_size=BATCH):
                w.write_batch(rb)
    return w.count
