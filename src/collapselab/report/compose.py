"""``compose``: the public summary of a training set's content, every number traced to its record.

Structured after the European Commission's template for the public summary of training content
(July 2025): 1. general information; 2. data sources by kind (public datasets, data licensed from
third parties, crawled data, user data, synthetic data with its generating models, other);
3. data processing (filtering, deduplication, detection of synthetic content).

The training set is read once, streamed (:func:`collapselab.pipeline.io.shard_records`), and each
record is given one provenance category from the SHA-256 of its text (``content_hash``):

* ``verified_human``: the hash is in the sealed vault snapshot the mix manifest names (the
  snapshot's signature, count and Merkle root are checked again, and the root must be the one the
  manifest recorded), or a ledger records the document with origin ``human``;
* ``synthetic``: a ledger records the document, or the whole input file it came from (a document
  whose hash is the file's SHA-256, as the mix manifest records it), with origin ``synthetic``;
  its *depth* is ``1 + synthetic_depth(generating model)`` (the ledger's rule), or its
  ``generation`` (at least 1) when no model is recorded;
* ``unverified``: anything else (including a ledger origin ``unknown``).

The first rule that applies wins, in that order. Records that mix drew from the vault (``id`` =
``vault:HASH``) are counted apart and checked against the manifest; the other records are
attributed, in order, to the manifest's sources by their record counts (mix copies them in order).

Every number in the JSON is ``{"value": ..., "trace": [...]}``: the files it was read from (path
and SHA-256, and the manifest field), the vault snapshot (name, Merkle root, key id), the ledger
entries (ledger, head, entry seqs). The Markdown puts the same traces in footnotes.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline.io import Found, file_sha256, read_manifest, shard_records

FORMAT = "collapselab-compose"
TEMPLATE = "European Commission, template for the public summary of training content (July 2025)"
KINDS = {"public": "Publicly available datasets", "licensed": "Private datasets licensed from third parties",
         "crawled": "Data crawled and scraped from online sources", "user": "User data", "other": "Other sources"}
CATEGORIES = ("verified_human", "synthetic", "unverified")
MAX_SEQS = 20  # ledger entry seqs listed per trace (all are counted)


def num(value, *trace: dict) -> dict:
    """A number and where it comes from."""
    return {"value": value, "trace": list(trace)}


def file_trace(path, sha256: str, field_name: str | None = None) -> dict:
    return {"file": str(path), "sha256": sha256, **({"field": field_name} if field_name else {})}


# ----------------------------------------------------------------------------------- ledgers
class Ledgers:
    """The ledgers given (files, URLs, or run folders holding ledger.sqlite), looked up in order."""

    def __init__(self, targets: Sequence[str | os.PathLike]) -> None:
        from collapselab.provenance.ledger import Ledger

        self.ledgers, self.traces = [], []
        for t in targets:
            p = Path(t)
            path = p / "ledger.sqlite" if p.is_dir() else t
            led = Ledger(path, create=False)
            report = led.verify()
            seq, head = led.head()
            self.ledgers.append(led)
            self.traces.append({"ledger": led.label, "head": f"{seq}:{head}", "verified": report.ok,
                                "problems": [str(x) for x in report.problems[:5]]})
        self._depth: dict[tuple[int, str], int] = {}
        self.steps = [led.steps() for led in self.ledgers]  # each ledger's pipeline steps, read once

    def lookup(self, hashes: Sequence[str]) -> dict[str, tuple[int, object]]:
        """``hash -> (ledger index, Document)`` for the hashes some ledger records (the first wins)."""
        import sqlalchemy as sa

        from collapselab.provenance.ledger import documents_table as t
        from collapselab.provenance.ledger.lookup import from_row

        found: dict[str, tuple[int, object]] = {}
        for i, led in enumerate(self.ledgers):
            todo = [h for h in hashes if h not in found]
            with led.engine.connect() as conn:
                for lo in range(0, len(todo), 500):
                    for r in conn.execute(sa.select(t).where(t.c.content_hash.in_(todo[lo:lo + 500]))).mappings():
                        found[r["content_hash"]] = (i, from_row("document", conn, r))
        return found

    def steps_behind(self, digest: str) -> list[dict]:
        """The recorded pipeline steps that made the file with SHA-256 ``digest``, nearest first: the
        step that wrote it, then the steps that wrote that step's inputs, and so on."""
        made_by: dict[str, tuple[int, object]] = {}  # output digest -> (ledger index, step); the latest wins
        for i, steps in enumerate(self.steps):
            for step in steps:
                for _, d in step.outputs:
                    made_by[d] = (i, step)
        out, seen, todo = [], set(), [digest]
        while todo:
            d = todo.pop(0)
            if d not in made_by or (made_by[d][0], made_by[d][1].seq) in seen:
                continue
            i, step = made_by[d]
            seen.add((i, step.seq))
            out.append({"name": step.name, "step_id": step.step_id, "created_at": step.created_at,
                        "inputs": [{"name": n, "sha256": h} for n, h in step.inputs],
                        "outputs": [{"name": n, "sha256": h} for n, h in step.outputs],
                        "result": step.parameters.get("result", {}),
                        "trace": [{"ledger": self.traces[i]["ledger"], "head": self.traces[i]["head"], "seqs": [step.seq]}]})
            todo += [h for _, h in step.inputs]
        return out

    def depth(self, i: int, doc) -> int:
        """Synthetic depth of a training set holding ``doc``: 1 + its maker's depth, or its generation."""
        if doc.model_id is None:
            return max(doc.generation or 1, 1)
        key = (i, doc.model_id)
        if key not in self._depth:
            self._depth[key] = 1 + self.ledgers[i].synthetic_depth(doc.model_id)
        return self._depth[key]

    def model_seq(self, i: int, model_id: str) -> int | None:
        m = self.ledgers[i].model(model_id)
        return None if m is None else m.seq

    def close(self) -> None:
        for led in self.ledgers:
            led.close()


# -------------------------------------------------------------------------------- the pass
@dataclass
class _Group:
    """Records of one kind of provenance: a count and the ledger entries behind it (first few)."""

    documents: int = 0
    seqs: set = field(default_factory=set)
    depth: int = 0

    def add(self, ledger: int, seq: int) -> None:
        self.documents += 1
        if len(self.seqs) < MAX_SEQS:
            self.seqs.add((ledger, seq))


@dataclass
class _Tally:
    records: int = 0
    malformed: int = 0
    categories: Counter = field(default_factory=Counter)
    per_source: list = field(default_factory=list)  # one Counter per source (categories)
    n_input: int = 0  # records mix did not draw from the vault
    vault_drawn: int = 0  # records mix drew from the vault, re-verified
    vault_claims_unverified: int = 0  # records whose id says vault:HASH but that are not in the snapshot
    vault_sources: dict = field(default_factory=dict)  # vault index source -> Counter of (licence, captured_before)
    human_ledger: _Group = field(default_factory=_Group)
    models: dict = field(default_factory=dict)  # (ledger index, model id or "", generation) -> _Group
    prefixes: list = field(default_factory=list)  # uint64 prefixes of the text hashes (deduplication)


def _read(trainset: Path, text_field: str, snap_hashes: frozenset, vault_index: dict, ledgers: Ledgers | None,
          sources: list[dict]) -> _Tally:
    tally = _Tally(per_source=[Counter() for _ in sources])
    shard_docs = ledgers.lookup([s["sha256"] for s in sources]) if ledgers else {}
    bounds = np.cumsum([s["records"] for s in sources])  # record counts of the sources, in order
    for shard in sh.plan([trainset]):
        found = Found()
        for b in shard_records(shard, text_field=text_field, on_error="skip", found=found):
            hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in b.texts]
            known = ledgers.lookup(sorted(set(hashes) - snap_hashes)) if ledgers else {}
            tally.prefixes.append(np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64))
            for h, rid in zip(hashes, b.ids):
                drawn = rid == f"vault:{h}" and h in snap_hashes
                if rid is not None and rid.startswith("vault:") and not drawn:
                    tally.vault_claims_unverified += 1
                src = None
                if drawn:
                    tally.vault_drawn += 1
                else:
                    src = min(int(np.searchsorted(bounds, tally.n_input, side="right")), len(sources) - 1)
                    tally.n_input += 1
                cat = _classify(h, snap_hashes, vault_index, known.get(h) or (shard_docs.get(sources[src]["sha256"])
                                                                             if src is not None else None), ledgers, tally)
                tally.categories[cat] += 1
                if src is not None:
                    tally.per_source[src][cat] += 1
                tally.records += 1
        tally.malformed += found.malformed
    return tally


def _classify(h: str, snap_hashes: frozenset, vault_index: dict, hit, ledgers: Ledgers | None, tally: _Tally) -> str:
    if h in snap_hashes:
        rec = vault_index.get(h, {})
        tally.vault_sources.setdefault(rec.get("source", "(not in the vault index)"), Counter())[
            (rec.get("licence"), rec.get("captured_before"))] += 1
        return "verified_human"
    if hit is None:
        return "unverified"
    i, doc = hit
    if doc.origin == "human":
        tally.human_ledger.add(i, doc.seq)
        return "verified_human"
    if doc.origin == "synthetic":
        g = tally.models.setdefault((i, doc.model_id or "", doc.generation), _Group(depth=ledgers.depth(i, doc)))
        g.add(i, doc.seq)
        return "synthetic"
    return "unverified"


# ----------------------------------------------------------------------------- the summary
@dataclass
class Composition:
    """What :func:`compose_trainset` found; ``data`` is the JSON summary."""

    data: dict

    def to_dict(self) -> dict:
        return self.data

    def value(self, *path: str):
        node = self.data
        for key in path:
            node = node[key]
        return node["value"] if isinstance(node, dict) and "value" in node else node

    def markdown(self) -> str:
        return render(self.data)


def _manifest(trainset: Path, manifest) -> tuple[Path, dict | None, str | None]:
    path = Path(manifest) if manifest else Path(str(trainset) + ".json")
    if not path.is_file():
        if manifest:
            raise UserError(f"{path}: no such manifest (mix writes TRAIN.jsonl.json beside TRAIN.jsonl).")
        return path, None, None
    m = read_manifest(path)
    if not isinstance(m, dict) or m.get("format") != "collapselab-mix":
        raise UserError(f"{path}: not a mix manifest (no \"format\": \"collapselab-mix\"); pass --manifest with the "
                        "TRAIN.jsonl.json that `collapselab mix` wrote.")
    return path, m, file_sha256(path)


def _step_manifest(path, fmt: str, flag: str, what: str) -> tuple[Path, dict, str]:
    """A pipeline step's manifest (``path`` itself when it ends in .json, else ``path.json``), its SHA-256."""
    p = Path(path)
    mp = p if str(p).endswith(".json") else Path(str(p) + ".json")
    m = read_manifest(mp)
    if not isinstance(m, dict) or m.get("format") != fmt or "result" not in m:
        raise UserError(f"{mp}: not a {fmt.removeprefix('collapselab-')} manifest; pass {flag} with {what}.")
    return mp, m, file_sha256(mp)


def _traced(r: dict, mp: Path, sha: str, keys: Sequence[str]) -> dict:
    return {k: num(r.get(k), file_trace(mp, sha, f"result.{k}")) for k in keys}


def _scan_entry(path) -> dict:
    """One scan sidecar's result, traced to its manifest (and the sidecar checked against it)."""
    mp, m, sha = _step_manifest(path, "collapselab-scan", "--scores", "the sidecar S.parquet that `collapselab scan` "
                                "wrote (its manifest S.parquet.json beside it)")
    side = Path(str(mp)[: -len(".json")])
    if not side.is_file() or file_sha256(side) != m.get("output", {}).get("sha256"):
        raise UserError(f"{side}: missing or changed since its manifest {mp} was written. Scan again.")
    r = m["result"]
    return {"sidecar": str(side), "manifest": str(mp), "manifest_sha256": sha,
            "detector": m.get("params", {}).get("detector"), "rule": r.get("rule"),
            "inputs": [i.get("path") for i in m.get("inputs", [])],
            **_traced(r, mp, sha, ("documents", "flagged", "flagged_share", "estimate", "low", "high", "fpr", "tpr")),
            "tpr_source": r.get("tpr_source"), "fpr_source": r.get("fpr_source")}


def _filter_entry(path) -> dict:
    mp, m, sha = _step_manifest(path, "collapselab-filter", "--filtered", "the KEPT file `collapselab filter` wrote "
                                "(its manifest KEPT.json beside it)")
    r = m["result"]
    return {"input": r.get("input"), "kept_file": r.get("out"), "manifest": str(mp), "manifest_sha256": sha,
            "rule": r.get("rule"), **_traced(r, mp, sha, ("records", "kept", "quarantined"))}


def parse_kinds(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME=KIND`` pairs (NAME a vault source or an input file of the mix) into a mapping."""
    out = {}
    for pair in pairs:
        name, sep, kind = pair.rpartition("=")
        if not sep or not name or kind not in KINDS:
            raise UserError(f"--kind {pair!r}: write NAME=KIND with KIND one of {', '.join(KINDS)} "
                            "(NAME: a vault source, or an input file of the mix), e.g. --kind web.jsonl=crawled.")
        out[name] = kind
    return out


def _kind(kinds: dict, *names: str) -> str:
    for n in names:
        if n in kinds:
            return kinds[n]
    return "other"


def compose_trainset(trainset: str | os.PathLike, *, manifest: str | os.PathLike | None = None,
                     scores: Sequence[str | os.PathLike] = (), ledgers: Sequence[str | os.PathLike] = (),
                     vault: str | os.PathLike | None = None, snapshot: str | None = None,
                     filtered: Sequence[str | os.PathLike] = (), kinds: dict[str, str] | None = None,
                     text_field: str | None = None) -> Composition:
    """Summarise ``trainset`` (see the module)."""
    from collapselab.provenance.vault import Vault

    trainset = Path(trainset)
    if not trainset.is_file():
        raise UserError(f"{trainset}: no such file (the training set, e.g. the TRAIN.jsonl `collapselab mix` wrote).")
    kinds = kinds or {}
    mpath, m, msha = _manifest(trainset, manifest)
    tsha = file_sha256(trainset)
    checks: list[str] = []
    if m is not None and m.get("output", {}).get("sha256") != tsha:
        raise UserError(f"{trainset}: changed since its manifest {mpath} was written (SHA-256 differs); mix again.")
    text_field = text_field or (m or {}).get("params", {}).get("text_field", "text")
    vault_path = vault or (m or {}).get("vault", {}).get("vault")
    snap_name = snapshot or (m or {}).get("vault", {}).get("snapshot")
    snap, v, vtrace = None, None, None
    if vault_path:
        v = Vault(vault_path)
        snap = v.snapshot(snap_name or v.latest_snapshot())  # signature, count and Merkle root checked again
        if m is not None and snap.merkle_root != m["vault"].get("merkle_root"):
            raise UserError(f"vault snapshot {snap.name!r}: Merkle root {snap.merkle_root[:16]}... is not the one "
                            f"{mpath} recorded ({str(m['vault'].get('merkle_root'))[:16]}...); pass the vault the mix used.")
        vtrace = {"vault": str(v.path), "snapshot": snap.name, "merkle_root": snap.merkle_root, "key_id": snap.key_id}
    elif m is not None:
        checks.append("the mix manifest names no vault: no record can be verified human by the vault")
    sources = [{"path": s["path"], "sha256": s["sha256"], "records": s["records"]} for s in (m or {}).get("sources", [])]
    if m is None:  # no mix manifest: the training set is its own single source
        sources = [{"path": str(trainset), "sha256": tsha, "records": None}]
    led = Ledgers(ledgers) if ledgers else None
    try:
        tally = _read(trainset, text_field, frozenset(snap.hashes) if snap else frozenset(),
                      v.records() if v else {}, led, [{**s, "records": s["records"] or 0} for s in sources])
        data = _summary(trainset, tsha, mpath if m else None, m, msha, vtrace, snap, tally, sources, led,
                        [_scan_entry(s) for s in scores], [_filter_entry(f) for f in filtered], kinds, checks)
    finally:
        if led:
            led.close()
    return Composition(data)


def _summary(trainset, tsha, mpath, m, msha, vtrace, snap, tally: _Tally, sources, led, scans, filters, kinds,
             checks) -> dict:
    steps = led.steps_behind(tsha) if led else []
    if led and not steps and any(led.steps):
        checks.append(f"no pipeline step in the ledgers wrote this training set's bytes (SHA-256 {tsha[:16]}...): "
                      "if it was made with --ledger, it changed afterwards")
    ttrace = file_trace(trainset, tsha)
    total = tally.records
    cat_trace = {"verified_human": [ttrace] + ([vtrace] if vtrace else []) + _ledger_traces(led, tally.human_ledger.seqs),
                 "synthetic": [ttrace] + _ledger_traces(led, set().union(*[g.seqs for g in tally.models.values()])),
                 "unverified": [ttrace] + ([vtrace] if vtrace else [])
                 + [{"ledger": t["ledger"], "head": t["head"]} for t in (led.traces if led else [])]}
    provenance = {}
    for c in CATEGORIES:
        n = tally.categories[c]
        provenance[c] = {"documents": num(n, *cat_trace[c]), "share": num(n / total if total else 0.0, *cat_trace[c])}
    provenance["verified_human"]["by_vault"] = num(tally.categories["verified_human"] - tally.human_ledger.documents,
                                                   ttrace, *([vtrace] if vtrace else []))
    provenance["verified_human"]["by_ledger"] = num(tally.human_ledger.documents, ttrace,
                                                    *_ledger_traces(led, tally.human_ledger.seqs))
    depth = max((g.depth for g in tally.models.values()), default=0)
    provenance["synthetic"]["max_depth"] = num(depth, *cat_trace["synthetic"])

    if m is not None:
        h = m.get("counts", {}).get("human")
        if tally.vault_drawn != h:
            checks.append(f"the mix manifest records {h} vault documents, {tally.vault_drawn} were verified again in "
                          f"the vault snapshot")
        if tally.n_input != m.get("counts", {}).get("input"):
            checks.append(f"the mix manifest records {m.get('counts', {}).get('input')} input records, "
                          f"{tally.n_input} were read")
    if tally.vault_claims_unverified:
        checks.append(f"{tally.vault_claims_unverified} records have a vault:HASH id but their text is not in the "
                      "vault snapshot")
    if tally.malformed:
        checks.append(f"{tally.malformed} malformed lines in {trainset} (no record, left out of every count)")
    for t in (led.traces if led else []):
        if not t["verified"]:
            checks.append(f"ledger {t['ledger']} does not verify: {'; '.join(t['problems'])}")

    mixed = {}
    if m is not None:
        mtrace = lambda f: file_trace(mpath, msha, f)  # noqa: E731
        mixed = {"human_documents": num(m.get("human_documents"), mtrace("human_documents")),
                 "human_hashes_sha256": m.get("human_hashes_sha256"),
                 "input_records": num(m.get("counts", {}).get("input"), mtrace("counts.input")),
                 "min_human": num(m.get("params", {}).get("min_human"), mtrace("params.min_human")),
                 "vault_drawn_verified": num(tally.vault_drawn, ttrace, *([vtrace] if vtrace else []))}

    source_list = []
    for i, s in enumerate(sources):
        c = tally.per_source[i]
        where = file_trace(mpath, msha, f"sources[{i}]") if m is not None else ttrace
        source_list.append({"path": s["path"], "sha256": s["sha256"],
                            "kind": _kind(kinds, s["path"], Path(s["path"]).name),
                            "records": num(sum(c.values()), where, ttrace),
                            **{cat: num(c[cat], ttrace, *cat_trace[cat][1:]) for cat in CATEGORIES}})
    vault_list = []
    for name in sorted(tally.vault_sources):
        for (licence, before), n in sorted(tally.vault_sources[name].items(), key=lambda kv: tuple(map(str, kv[0]))):
            vault_list.append({"source": name, "licence": licence, "captured_before": before,
                               "kind": _kind(kinds, name), "documents": num(n, ttrace, vtrace)})
    models = []
    for (i, mid, gen), g in sorted(tally.models.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        mseq = led.model_seq(i, mid) if mid else None
        tr = [ttrace, *({**t, **({"model_seq": mseq} if mseq is not None else {})} for t in _ledger_traces(led, g.seqs))]
        models.append({"model_id": mid or None, "generation": gen, "ledger": led.traces[i]["ledger"],
                       "documents": num(g.documents, *tr), "depth": num(g.depth, *tr)})

    dedup = np.unique(np.concatenate(tally.prefixes)).size if tally.prefixes else 0
    return {
        "format": FORMAT, "template": TEMPLATE,
        "general": {"trainset": str(trainset), "sha256": tsha, "bytes": os.path.getsize(trainset), "modality": "text",
                    "documents": num(total, ttrace), "malformed_skipped": num(tally.malformed, ttrace),
                    "manifest": str(mpath) if mpath else None, "manifest_sha256": msha,
                    "vault": vtrace, "ledgers": led.traces if led else []},
        "provenance": provenance,
        "mix": mixed,
        "sources": {"inputs": source_list, "vault": vault_list, "synthetic_models": models},
        "processing": {"filtering": filters,
                       "deduplication": {"documents": num(total, ttrace),
                                         "distinct_texts": num(int(dedup), ttrace),
                                         "exact_duplicates": num(total - int(dedup), ttrace),
                                         "method": "SHA-256 of each text, compared on its first 64 bits"},
                       "detection": scans,
                       "steps": steps},
        "checks": checks,
    }


def _ledger_traces(led: Ledgers | None, seqs) -> list[dict]:
    """One trace per ledger holding some of ``seqs`` (``(ledger index, seq)`` pairs, the first few met)."""
    if not led:
        return []
    return [{"ledger": t["ledger"], "head": t["head"], "seqs": sorted(s for j, s in seqs if j == i)[:MAX_SEQS]}
            for i, t in enumerate(led.traces) if any(j == i for j, _ in seqs)]


# ------------------------------------------------------------------------------- Markdown
def _cell(text) -> str:
    """Text for a Markdown table cell: bars escaped, one line."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _trace_text(t: dict) -> str:
    if "file" in t:
        return f"`{_cell(t['file'])}` (SHA-256 `{t['sha256']}`)" + (f", field `{t['field']}`" if "field" in t else "")
    if "vault" in t:
        return (f"vault `{_cell(t['vault'])}`, sealed snapshot `{t['snapshot']}` (Merkle root `{t['merkle_root']}`, "
                f"key id `{t['key_id']}`), signature and root checked")
    if "ledger" in t:
        seqs = t.get("seqs")
        return (f"ledger `{_cell(t['ledger'])}` (head `{t['head']}`)"
                + (f", entries {', '.join(map(str, seqs))}" if seqs else "")
                + (f", model entry {t['model_seq']}" if "model_seq" in t else ""))
    return _cell(t)


def _files(files: list[dict]) -> str:
    return ", ".join(f"`{_cell(f['name'])}`" for f in files) or "-"


def _counts(result: dict) -> str:
    """A step's whole-number counts (documents, kept, quarantined, ...), as its ledger entry records them."""
    return ", ".join(f"{k} {x}" for k, x in result.items() if isinstance(x, int) and not isinstance(x, bool))


class _Notes:
    """Footnotes: one per distinct trace, numbered in order of first use."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, trace: list[dict]) -> str:
        text = "; ".join(map(_trace_text, trace))
        if not text:
            return ""
        if text not in self.texts:
            self.texts.append(text)
        return f"[^{self.texts.index(text) + 1}]"

    def render(self) -> list[str]:
        return [f"[^{i}]: {t}" for i, t in enumerate(self.texts, 1)]


def _table(head: Sequence[str], rows: list[str], empty: str) -> list[str]:
    """A Markdown table of ``rows`` under ``head``, or the line ``empty`` when there are none."""
    if not rows:
        return [empty, ""]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows, ""]


def render(d: dict) -> str:
    """The summary as Markdown, every number with a footnote naming where it comes from."""
    notes = _Notes()

    def v(node, pct: bool = False) -> str:
        x = node["value"]
        text = "n/a" if x is None or (isinstance(x, float) and x != x) else f"{x:.2%}" if pct else str(x)
        return text + notes.ref(node["trace"])

    g, p, src, proc = d["general"], d["provenance"], d["sources"], d["processing"]
    out = [f"# Public summary of training content: `{_cell(g['trainset'])}`", "",
           f"Structured after the {TEMPLATE}. Generated by `collapselab compose` from the provenance records; "
           "each number's footnote names the file (with its SHA-256), the vault snapshot (with its Merkle root) "
           "or the ledger entries it comes from.", "",
           "## 1. General information", "", "| Item | Value |", "|---|---|",
           f"| Training set | `{_cell(g['trainset'])}`, {g['bytes']} bytes, SHA-256 `{g['sha256']}` |",
           f"| Modality | {g['modality']} |",
           f"| Documents | {v(g['documents'])} |",
           f"| Malformed lines left out | {v(g['malformed_skipped'])} |",
           "| Mix manifest | " + (f"`{_cell(g['manifest'])}` (SHA-256 `{g['manifest_sha256']}`)" if g["manifest"] else "none")
           + " |",
           "| Vault snapshot | " + (f"`{g['vault']['snapshot']}` (Merkle root `{g['vault']['merkle_root']}`)"
                                   if g["vault"] else "none") + " |",
           "| Ledgers | " + (", ".join(f"`{_cell(t['ledger'])}` (head `{t['head']}`, "
                                       f"{'verified' if t['verified'] else 'DOES NOT VERIFY'})" for t in g["ledgers"])
                            or "none") + " |", "",
           "### Provenance of the documents", "", "| Category | Documents | Share |", "|---|---|---|"]
    names = {"verified_human": "Verified human", "synthetic": "Synthetic", "unverified": "Unverified provenance"}
    for c in CATEGORIES:
        out.append(f"| {names[c]} | {v(p[c]['documents'])} | {v(p[c]['share'], pct=True)} |")
    out += ["", f"Verified human: {v(p['verified_human']['by_vault'])} in the vault snapshot, "
                f"{v(p['verified_human']['by_ledger'])} recorded human in a ledger. "
                f"Largest synthetic depth: {v(p['synthetic']['max_depth'])}.", ""]
    if d["mix"]:
        mx = d["mix"]
        out += [f"The mix drew {v(mx['human_documents'])} documents from the vault for a least human share of "
                f"{v(mx['min_human'], pct=True)}, beside {v(mx['input_records'])} input records; "
                f"{v(mx['vault_drawn_verified'])} of them were found again in the snapshot.", ""]

    out += ["## 2. List of data sources", ""]
    for n, (kind, title) in enumerate(KINDS.items(), 1):
        if kind == "other":
            n = 6
        out += [f"### 2.{n} {title}" + (" (kind not declared with --kind)" if kind == "other" else ""), ""]
        rows = [f"| vault source {_cell(s['source'])} | {_cell(s['licence'])} | {_cell(s['captured_before'])} | "
                f"{v(s['documents'])} | {v(s['documents'])} | 0 | 0 |" for s in src["vault"] if s["kind"] == kind]
        rows += [f"| input `{_cell(s['path'])}` | | | {v(s['records'])} | {v(s['verified_human'])} | "
                 f"{v(s['synthetic'])} | {v(s['unverified'])} |" for s in src["inputs"] if s["kind"] == kind]
        out += _table(("Source", "Licence", "Captured before", "Documents", "Verified human", "Synthetic", "Unverified"),
                      rows, "None.")
        if kind == "user":
            out += ["### 2.5 Synthetic data", ""]
            out += _table(("Generating model", "Generation", "Ledger", "Documents", "Depth"),
                          [f"| {_cell(s['model_id'] or '(none recorded)')} | {s['generation']} | `{_cell(s['ledger'])}` | "
                           f"{v(s['documents'])} | {v(s['depth'])} |" for s in src["synthetic_models"]],
                          "No document of the training set is recorded as synthetic in the ledgers given.")

    out += ["## 3. Data processing", "", "### 3.1 Filtering", ""]
    out += _table(("Input", "Rule", "Records", "Kept", "Quarantined"),
                  [f"| `{_cell(f['input'])}` | {_cell(f['rule'])} | {v(f['records'])} | {v(f['kept'])} | "
                   f"{v(f['quarantined'])} |" for f in proc["filtering"]], "No filter manifest given (--filtered).")
    dd = proc["deduplication"]
    out += ["### 3.2 Deduplication", "",
            f"{v(dd['documents'])} documents, {v(dd['distinct_texts'])} distinct texts, "
            f"{v(dd['exact_duplicates'])} exact duplicates ({dd['method']}).", "",
            "### 3.3 Detection of synthetic content", ""]
    out += _table(("Scan", "Detector", "Documents", "Flagged", "Flagged share", "Estimated synthetic share", "95% CI"),
                  [f"| `{_cell(s['sidecar'])}` of {', '.join(f'`{_cell(i)}`' for i in s['inputs'])} | "
                   f"{_cell(s['detector'])} ({_cell(s['rule'])}) | {v(s['documents'])} | {v(s['flagged'])} | "
                   f"{v(s['flagged_share'], pct=True)} | {v(s['estimate'], pct=True)} | "
                   f"{v(s['low'], pct=True)} to {v(s['high'], pct=True)} |" for s in proc["detection"]],
                  "No scan given (--scores).")
    out += [f"- `{_cell(s['sidecar'])}`: TPR {_cell(s['tpr_source'])}; FPR {_cell(s['fpr_source'])}."
            for s in proc["detection"]] + ([""] if proc["detection"] else [])
    out += ["### 3.4 Pipeline steps recorded in the ledgers", ""]
    out += _table(("Step", "Wrote", "Read", "Counts"),
                  [f"| {_cell(st['name'])}{notes.ref(st['trace'])} | {_files(st['outputs'])} | {_files(st['inputs'])} | "
                   f"{_cell(_counts(st['result']))} |" for st in proc.get("steps", [])],
                  "No recorded step wrote this training set (scan, filter and mix record theirs with --ledger).")
    out += ["## 4. Checks", ""]
    out += [f"- {_cell(c)}" for c in d["checks"]] or ["All provenance records agree with the training set."]
    out += ["", "## Sources of the numbers", "", *notes.render(), ""]
    return "\n".join(out)
