"""Documents of the corpora users bring, for ``run --corpus`` and ``vault add``.

:func:`read_documents` yields ``(where, text)`` pairs, one per document, where ``where`` names the
file (and line or row) for error messages. It is a thin layer over the pipeline's reader
(:mod:`collapselab.pipeline.sources`, :func:`~collapselab.pipeline.shards.plan`,
:func:`~collapselab.pipeline.io.shard_records`), so it reads what ``scan``, ``filter`` and ``mix``
read: ``.txt``/``.md`` files (one document each), JSON lines (``.jsonl``, ``.jsonl.gz``, dolma's
``.json.gz``, ``.jsonl.zst``), Parquet, HF ``datasets`` folders, folders of them, and fsspec URLs;
``text_field`` may be a dotted path (``meta.body``). Nothing is loaded whole: JSON lines are read
a block at a time, Parquet and Arrow in record batches. Bad input raises :class:`UserError`
naming the file, line (or row) and field, and what to do. A null cell in a Parquet or Arrow text
column is no document (skipped, as a blank line is).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from collapselab.errors import UserError
from collapselab.pipeline import shards
from collapselab.pipeline.io import Found, MalformedRecord, shard_records
from collapselab.pipeline.sources import is_url

BATCH = 4096  # records at a time (a Parquet or Arrow file's rows are read as far as the batch asks)


def read_documents(path: str | os.PathLike, *, text_field: str = "text") -> Iterator[tuple[str, str]]:
    """Yield ``(where, text)`` for every document under ``path`` (a file, a folder or a URL).

    A file whose name says no format is read as text (one document)."""
    name = os.fspath(path)
    if not is_url(name):
        name = str(Path(name))  # documents are named as before: ./a.txt is a.txt
    for shard in shards.plan([name], shards.WHOLE, default_format="text"):
        unit = "row" if shard.fmt in ("parquet", "arrow") else "line"
        try:
            for b in shard_records(shard, text_field=text_field, on_error="fail", found=Found(),
                                    batch_size=BATCH, skip_nulls=True):
                if shard.fmt == "text":
                    yield shard.file, b.texts[0]
                    continue
                for row, text in zip(b.rows.tolist(), b.texts):
                    yield f"{shard.file}, {unit} {row + 1}", text
        except MalformedRecord as e:
            raise UserError(f"{e.file}, {e.unit} {e.number}: {e.reason}") from None
