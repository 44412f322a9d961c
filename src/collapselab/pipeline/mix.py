"""``mix``: a training set with a guaranteed share of verified human text from the vault.

Given input files with ``N`` records and ``--min-human m`` (``0 <= m < 1``), ``mix`` draws
``H = ceil(m N / (1 - m))`` distinct documents from a sealed vault snapshot (the snapshot's
signature and Merkle root, and every object's hash, are checked by
:meth:`Vault.sample <collapselab.provenance.vault.Vault.sample>`, seeded), so
``H / (H + N) >= m`` holds exactly. If the snapshot holds fewer than ``H`` documents it is a
UserError (lower ``--min-human``, or add to the vault), never a silently smaller share.

The output is JSONL (gzip if it ends in .gz): input records copied byte for byte (a Parquet row
becomes one JSON object), with the vault documents interleaved at uniformly random positions
(sequential selection sampling from ``seed``: one pass, constant memory). A vault document is
``{"id": "vault:HASH", TEXT_FIELD: ..., "source": "vault:SNAPSHOT", "vault_sha256": HASH}``.
Malformed input lines stop the job (``on_error="fail"``) or are left out and counted.

``OUT.json`` (the manifest) records each source (path, SHA-256, records used, malformed skipped),
the vault (path, snapshot, Merkle root, count, key id), the counts and the achieved share, the
SHA-256 of the sorted list of vault documents drawn, the seed, and the output's SHA-256. A rerun
with the same inputs, snapshot and settings whose output still matches the recorded hash is
skipped; a job killed midway leaves no output (temporary file) and a rerun writes the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from collapselab.atomic import atomic_write_json
from collapselab.errors import UserError
from collapselab.pipeline.io import JsonlWriter, check_on_error, dumps_line, file_sha256, inputs_record, read_batches, read_manifest

FORMAT = "collapselab-mix"


@dataclass
class MixResult:
    out: str
    manifest: str
    input_records: int
    human_records: int
    total: int
    human_share: float
    min_human: float
    snapshot: str
    merkle_root: str
    malformed_skipped: int
    output_sha256: str
    skipped: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.total} records in {self.out}: {self.input_records} from the inputs, {self.human_records} "
                f"verified human documents from vault snapshot {self.snapshot} (root {self.merkle_root[:16]}...): "
                f"human share {self.human_share:.2%} >= {self.min_human:.2%}. Manifest: {self.manifest}.")


def human_needed(n_input: int, min_human: float) -> int:
    """Least ``H`` with ``H / (H + n_input) >= min_human``."""
    if n_input == 0 or min_human == 0:
        return 0
    h = max(0, math.ceil(min_human * n_input / (1 - min_human)) - 1)
    while h / (h + n_input) < min_human:
        h += 1
    return h


def mix_corpus(inputs: Sequence[str | os.PathLike], *, vault, min_human: float, out: str | os.PathLike,
               snapshot: str | None = None, seed: int = 0, text_field: str = "text", on_error: str = "fail",
               force: bool = False) -> MixResult:
    """Write the mixed training set ``out`` and its manifest ``out.json`` (see the module)."""
    from collapselab.provenance.vault import Vault

    check_on_error(on_error)
    if not 0.0 <= min_human < 1.0:
        raise UserError(f"--min-human {min_human}: must be at least 0 and below 1 (e.g. 0.1).")
    if not inputs:
        raise UserError("mix: no input file given.")
    out = Path(out)
    if not (str(out).endswith(".jsonl") or str(out).endswith(".jsonl.gz")):
        raise UserError(f"{out}: mix writes JSONL; name the output *.jsonl or *.jsonl.gz.")
    for p in inputs:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such file.")
        if Path(p).resolve() == out.resolve():
            raise UserError(f"{out}: is one of the inputs; pick another --out.")
    v = vault if isinstance(vault, Vault) else Vault(vault)
    snapshot = snapshot or v.latest_snapshot()
    snap = v.snapshot(snapshot)  # signature, count and Merkle root checked
    manifest_path = Path(str(out) + ".json")
    ins = inputs_record(inputs)
    params = {"vault": str(v.path), "snapshot": snap.name, "merkle_root": snap.merkle_root, "min_human": min_human,
              "seed": seed, "text_field": text_field, "on_error": on_error}
    old = read_manifest(manifest_path)
    if (not force and old and old.get("format") == FORMAT and old.get("params") == params
            and [{k: s[k] for k in ("path", "sha256", "bytes")} for s in old.get("sources", [])] == ins
            and out.is_file() and file_sha256(out) == old.get("output", {}).get("sha256")):
        return MixResult(**{**old["result"], "skipped": True})

    # pass 1: count the records
    counts = []
    for p in inputs:
        good = bad = 0
        for batch in read_batches(p, text_field=text_field, on_error=on_error):
            good += sum(1 for r in batch if r.obj is not None)
            bad += sum(1 for r in batch if r.error is not None)
        counts.append((good, bad))
    n_in = sum(c[0] for c in counts)
    h = human_needed(n_in, min_human)
    if h > snap.count:
        raise UserError(f"--min-human {min_human}: {n_in} input records need {h} human documents, but snapshot "
                        f"{snap.name!r} holds {snap.count}. Lower --min-human or add human text to the vault.")
    human = v.sample(snap.name, h, seed)  # every object re-hashed against its name
    digest = hashlib.sha256("\n".join(sorted(x for x, _ in human)).encode()).hexdigest()

    # pass 2: interleave (selection sampling: the next slot is human with probability r / t)
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(h)  # vault documents in random order too
    r, t, hi = h, h + n_in, 0
    with JsonlWriter(out) as w:
        def human_slots() -> None:
            nonlocal r, t, hi
            while r > 0 and rng.random() * t < r:
                hx, text = human[order[hi]]
                w.write(dumps_line({"id": f"vault:{hx}", text_field: text, "source": f"vault:{snap.name}", "vault_sha256": hx}))
                r, t, hi = r - 1, t - 1, hi + 1

        for p in inputs:
            for batch in read_batches(p, text_field=text_field, on_error=on_error):
                for rec in batch:
                    if rec.obj is None:
                        continue
                    human_slots()
                    line = rec.raw if rec.raw is not None else dumps_line(rec.obj)
                    w.write(line if line.endswith(b"\n") else line + b"\n")
                    t -= 1
        human_slots()
        assert r == 0 and t == 0
    total = h + n_in
    out_hash = file_sha256(out)
    result = MixResult(str(out), str(manifest_path), n_in, h, total, (h / total) if total else 0.0, min_human,
                       snap.name, snap.merkle_root, sum(c[1] for c in counts), out_hash)
    atomic_write_json(manifest_path, {
        "format": FORMAT, "params": params,
        "sources": [{**rec, "records": c[0], "malformed_skipped": c[1]} for rec, c in zip(ins, counts)],
        "vault": v.ref(snap.name).to_dict(), "human_documents": h, "human_hashes_sha256": digest,
        "counts": {"input": n_in, "human": h, "total": total, "human_share": result.human_share},
        "output": {"path": str(out), "sha256": out_hash},
        "result": {k: v_ for k, v_ in result.to_dict().items() if k != "skipped"}})
    return result
