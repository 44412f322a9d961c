"""Dolma attributes from a scan's sidecar, so that a dolma mixer filters on our scores.

Dolma keeps documents and their scores apart: documents under ``.../documents/**.json.gz``, each
*attribute set* under ``.../attributes/<name>/`` with the same relative paths, one line per
document line, in the same order, each ``{"id": <the document's id>, "attributes": {"<name>__<tagger>__
<attribute>": [[start, end, value]]}}``. The mixer (``dolma mix``) reads a document file and its
attribute files line by line, refuses a line whose ids differ, and filters on the attributes with
JSONPath, so a threshold is chosen at mix time without rescoring.

:func:`write_attributes` writes that layout from a sidecar of ``collapselab scan``: for every input
file the sidecar names, one gzip attributes file whose line *i* holds the document's own ``id``
(the JSON value as written, absent when the document has none) and the document-level spans
``[[0, len(text), value]]`` of the sidecar's ``score``, ``z`` and ``p_value`` (those that are not
null or NaN), under ``<name>__<detector>__score`` and so on (``<detector>`` is the scan's detector, or
its watermark scheme). The document file is read again, for each id and text length (characters)
and to check the alignment: dolma has no room for a line the sidecar lacks, so a scan that
skipped malformed lines, or a file with blank lines, is refused with the file and line.

Where the files go: a document path holding ``/documents/`` maps to the same path with
``/attributes/<name>/`` in its place (dolma's own rule); any other path needs ``root``, under which
the file's name is kept. Each file is written to a temporary name and renamed.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from collapselab.atomic import AtomicFile
from collapselab.errors import UserError

ATTRIBUTES = ("score", "z", "p_value")
JSONL_FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst")


@dataclass
class DolmaAttributes:
    name: str  # the attribute set (dolma's "experiment")
    prefix: str  # every attribute's name starts with it: ``<name>__<detector>__``
    files: list = field(default_factory=list)  # [{"documents", "attributes", "lines"}]
    documents: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"dolma attributes '{self.name}' for {self.documents} documents in {len(self.files)} files "
                f"({self.prefix}score, ...); mix with: attributes: [{self.name}]")


def attributes_path(document: str, name: str, root: str | os.PathLike | None = None) -> Path:
    """Where the attributes of ``document`` go (see the module)."""
    doc = str(document)
    if root is not None:
        return Path(root) / Path(doc).name
    from collapselab.pipeline.sources import is_url

    if is_url(doc):
        raise UserError(f"{doc}: attribute files are written locally; pass --attributes-root DIR, then copy DIR's files "
                        f"to the store's attributes/{name}/ beside documents/.")
    probe = "/" + doc.replace(os.sep, "/")  # a relative documents/x.json.gz too
    if "/documents/" not in probe:
        raise UserError(f"{doc}: not under a 'documents/' folder, so dolma's attributes path cannot be derived. "
                        "Pass --attributes-root DIR to say where the attributes go.")
    return Path(probe.replace("/documents/", f"/attributes/{name}/", 1)[1:])


def _tagger(manifest: dict) -> str:
    params = manifest.get("params", {})
    scheme = params.get("scheme") or params.get("watermark_scheme")
    return str(scheme or params.get("detector", "scan")).replace("-", "_")


def _documents(path: str, text_field: str):
    """``(line, id, has_id, n_chars)`` of each record of a JSON-lines file, in order (lines 1-based,
    blank lines counted)."""
    from collapselab.pipeline import shards as sh
    from collapselab.pipeline.io import Found, shard_records
    from collapselab.pipeline.sources import format_of

    if format_of(path) not in JSONL_FORMATS:
        raise UserError(f"{path}: dolma attributes mirror JSON-lines documents (.json.gz, .jsonl.gz, .jsonl, "
                        f".jsonl.zst), not {format_of(path)} files.")
    for shard in sh.plan([path], sh.WHOLE):  # one shard: rows count from the file's start
        for b in shard_records(shard, text_field=text_field, on_error="fail", found=Found()):
            for row, raw, text in zip(b.rows.tolist(), b.raw, b.texts):
                obj = orjson.loads(raw)
                yield row + 1, obj.get("id"), "id" in obj, len(text)


def write_attributes(sidecar: str | os.PathLike, *, name: str = "collapselab", root: str | os.PathLike | None = None,
                     text_field: str | None = None) -> DolmaAttributes:
    """Write dolma attribute files for every document file ``sidecar`` (a scan's output) scored.

    ``name``: the attribute set, which ``dolma mix`` names in a stream's ``attributes: [...]``;
    ``root``: where the files go when the documents are not under ``documents/``; ``text_field``:
    as the scan read it (default: the scan manifest's)."""
    from collapselab.pipeline.io import open_parquet, read_manifest

    if not name or "/" in name or "__" in name:
        raise UserError(f"--attributes-name {name!r}: give a plain name (no '/', no '__'), e.g. collapselab.")
    sidecar = Path(sidecar)
    manifest = read_manifest(str(sidecar) + ".json")
    if manifest is None:
        raise UserError(f"{sidecar}: no scan manifest beside it ({sidecar}.json). Write the sidecar with collapselab scan.")
    text_field = text_field or manifest.get("params", {}).get("text_field", "text")
    table = open_parquet(sidecar).read(columns=["file", "line", *ATTRIBUTES])
    prefix = f"{name}__{_tagger(manifest)}__"
    result = DolmaAttributes(name, prefix)
    files = table.column("file").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, files[1:] != files[:-1]]) if len(files) else np.array([], dtype=int)
    bounds = list(zip(starts.tolist(), [*starts[1:].tolist(), len(files)]))
    seen = set()
    for lo, hi in bounds:
        doc = str(files[lo])
        if doc in seen:
            raise UserError(f"{sidecar}: rows of {doc} are not contiguous; write the sidecar with collapselab scan.")
        seen.add(doc)
        lines = table.column("line").slice(lo, hi - lo).to_numpy()
        values = {c: table.column(c).slice(lo, hi - lo).to_pylist() for c in ATTRIBUTES}
        dest = attributes_path(doc, name, root)
        result.files.append({"documents": doc, "attributes": str(dest), "lines": _write_file(
            doc, dest, lines, values, prefix, text_field)})
        result.documents += hi - lo
    return result


def _write_file(doc: str, dest: Path, lines: np.ndarray, values: dict, prefix: str, text_field: str) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = AtomicFile(dest)
    n = 0
    try:
        with open(out.tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for line, doc_id, has_id, n_chars in _documents(doc, text_field):
                if line != n + 1:
                    raise UserError(f"{doc}:{n + 1}: a blank line; dolma reads every line of a document file as a "
                                    "document. Remove blank lines from the file, then scan it again.")
                if n >= len(lines) or lines[n] != line:
                    want = int(lines[n]) if n < len(lines) else None
                    raise UserError(
                        f"{doc}:{line}: the sidecar has no row for this document line"
                        + (f" (its next row is line {want})" if want else "")
                        + "; dolma needs one attribute line per document line. Rescan with --on-error fail, "
                          "and remove blank or malformed lines from the document file.")
                attrs = {f"{prefix}{c}": [[0, n_chars, v]] for c in ATTRIBUTES
                         if (v := values[c][n]) is not None and v == v}  # null and NaN: not scored
                rec = {"id": doc_id, "attributes": attrs} if has_id else {"attributes": attrs}
                gz.write(orjson.dumps(rec) + b"\n")
                n += 1
            if n != len(lines):
                raise UserError(f"{doc}: the sidecar has {len(lines)} rows for it but the file now holds {n} "
                                "documents; the file changed since the scan. Scan it again.")
    except BaseException:
        out.abort()
        raise
    out.commit()
    return n
