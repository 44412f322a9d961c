"""``mix``: a training set with a guaranteed share of verified human text from the vault.

Given input files with ``N`` records and ``--min-human m`` (``0 <= m < 1``), ``mix`` draws
``H = ceil(m N / (1 - m))`` distinct documents from a sealed vault snapshot (the snapshot's
signature and Merkle root, and every object's hash, are checked by
:meth:`Vault.sample <collapselab.provenance.vault.Vault.sample>`, seeded), so
``H / (H + N) >= m`` holds exactly. If the snapshot holds fewer than ``H`` documents it is a
UserError (lower ``--min-human``, or add to the vault), never a silently smaller share.

Inputs are files, folders or URLs of every format :mod:`~collapselab.pipeline.sources` reads.
The output is JSONL (gzip if it ends in .gz, zstd if .zst): input JSON-lines records copied byte
for byte, compressed or not (a Parquet or Arrow row becomes one JSON object, a text file
``{TEXT_FIELD: text}``), with the vault documents interleaved at uniformly random positions
(sequential selection sampling from ``seed``: one pass, constant memory). A vault document is
``{"id": "vault:HASH", TEXT_FIELD: ..., "source": "vault:SNAPSHOT", "vault_sha256": HASH}``.
Malformed input lines stop the job (``on_error="fail"``) or are left out, counted and listed.
The first pass (counting: :class:`~collapselab.pipeline.steps.Reader`) runs over the inputs' shards
on ``jobs`` local processes (or Ray tasks, ``backend="ray"``); the second (writing: the
:class:`~collapselab.pipeline.steps.Mix` step) is one sequential pass, so the output does not
depend on ``jobs`` or the backend.

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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from collapselab.atomic import check_output_file
from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline import sources
from collapselab.pipeline.io import (
    MAX_EXAMPLES,
    Found,
    JsonlWriter,
    check_on_error,
    dumps_line,
    file_sha256,
    inputs_record,
    read_manifest,
)
from collapselab.pipeline.record import check_ledger, record_step
from collapselab.pipeline.runner import Runner, check_backend
from collapselab.pipeline.steps import Mix, Reader, add_stats

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
    malformed_lines: list = field(default_factory=list)  # the first few skipped: {file, line, detail}
    stats: dict = field(default_factory=dict)  # this run's figures and steps (Runner.summary); not in the manifest's result

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.total} records in {self.out}: {self.input_records} from the inputs, {self.human_records} "
                f"verified human documents from vault snapshot {self.snapshot} (root {self.merkle_root[:16]}...): "
                f"human share {self.human_share:.2%} >= {self.min_human:.2%}. Manifest: {self.manifest}.")


def _count(task) -> tuple[int, int, list, int, dict]:
    """Records, malformed lines, the first few malformed (0-based line, what), lines and the read step's stats of one shard."""
    shard, text_field, on_error = task
    found = Found()
    read = Reader(text_field=text_field, on_error=on_error)
    n = sum(len(b.texts) for b in read(shard, found))
    return n, found.malformed, found.examples, found.lines, read.stats.to_dict()


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
               force: bool = False, jobs: int | None = None, progress: sh.Progress | None = None,
               ledger: str | os.PathLike | None = None, backend: str = "local", address: str | None = None) -> MixResult:
    """Write the mixed training set ``out`` and its manifest ``out.json`` (see the module).

    ``backend``: where the counting pass runs, ``"local"`` (``jobs`` processes) or ``"ray"``
    (``address``: the cluster to join). ``ledger``: a provenance ledger to record the mix in, as a
    step whose inputs are ``inputs`` and the vault snapshot's signed file, and whose outputs are
    the training set and its manifest."""
    from collapselab.provenance.vault import Vault

    check_on_error(on_error)
    check_backend(backend, address)
    if backend == "local":
        jobs = sh.check_jobs(jobs)
    if not 0.0 <= min_human < 1.0:
        raise UserError(f"--min-human {min_human}: must be at least 0 and below 1 (e.g. 0.1).")
    if not inputs:
        raise UserError("mix: no input file given.")
    out = Path(out)
    if sources.format_of(out, "") not in ("jsonl", "jsonl.gz", "jsonl.zst") or str(out).endswith(".json"):
        raise UserError(f"{out}: mix writes JSONL; name the output *.jsonl, *.jsonl.gz or *.jsonl.zst.")
    if seed < 0:
        raise UserError(f"--seed {seed}: a seed is a whole number >= 0, e.g. --seed 0.")
    files = sources.expand_inputs(inputs)
    if out.resolve() in {Path(p).resolve() for p in files if not sources.is_url(p)}:
        raise UserError(f"{out}: is one of the inputs; pick another --out.")
    check_output_file(out, "--out")  # a folder, a path under a file, an unwritable folder: before any work
    v = vault if isinstance(vault, Vault) else Vault(vault)
    snapshot = snapshot or v.latest_snapshot()
    snap = v.snapshot(snapshot)  # signature, count and Merkle root checked
    manifest_path = Path(str(out) + ".json")
    check_ledger(ledger)
    read = [*inputs, v.snapshot_path(snap.name)]
    ins = inputs_record(files)
    params = {"vault": str(v.path), "snapshot": snap.name, "merkle_root": snap.merkle_root, "min_human": min_human,
              "seed": seed, "text_field": text_field, "on_error": on_error}
    with Runner("mix", backend=backend, jobs=jobs, address=address, progress=progress) as runner:
        old = read_manifest(manifest_path)
        if (not force and old and [{k: s[k] for k in ("path", "sha256", "bytes")} for s in old.get("sources", [])] == ins
                and runner.finished(old, format=FORMAT, match={"params": params},
                                    outputs={out: old.get("output", {}).get("sha256")})):
            result = MixResult(**{**old["result"], "skipped": True})
            record_step(ledger, "mix", inputs=read, outputs=[out, manifest_path], params=params, result=result,
                        known={s["path"]: s["sha256"] for s in ins})
            return result

        # pass 1: count the records, shard by shard
        shards = sh.plan(inputs)
        counts = runner.map(_count, [(s, text_field, on_error) for s in shards], "counting")
        n_in = sum(c[0] for c in counts)
        if n_in == 0:  # an empty mix would claim a human share it does not have
            skipped = sum(c[1] for c in counts)
            raise UserError(f"{', '.join(map(str, inputs))}: no record to mix"
                            + (f" ({skipped} malformed lines skipped)" if skipped else " (the input is empty)")
                            + f"; nothing written. Check the files and --text-field {text_field!r}.")
        h = human_needed(n_in, min_human)
        if h > snap.count:
            raise UserError(f"--min-human {min_human}: {n_in} input records need {h} human documents, but snapshot "
                            f"{snap.name!r} holds {snap.count}. Lower --min-human or add human text to the vault.")
        human = v.sample(snap.name, h, seed)  # every object re-hashed against its name
        digest = hashlib.sha256("\n".join(sorted(x for x, _ in human)).encode()).hexdigest()

        # pass 2: interleave, in one sequential pass
        t0 = time.perf_counter()
        reader = Reader(text_field=text_field, on_error="skip", whole_rows=True)
        with JsonlWriter(out) as w:
            mix = Mix(w, human, n_in, seed=seed, text_field=text_field, snapshot=snap.name)
            tick = sh.ticker(progress, len(shards), "writing")
            for s in shards:
                for b in reader(s, Found()):
                    for rec in b.raw:
                        mix.record(dumps_line(rec) if isinstance(rec, dict) else rec + b"\n")
                if tick:
                    tick()
            mix.close()
        mix.stats.seconds = time.perf_counter() - t0 - reader.stats.seconds
        total = h + n_in
        out_hash = file_sha256(out)
        examples, per_file, base = [], {}, 0
        for s, c in zip(shards, counts):
            base = 0 if s.part == 0 else base
            examples += [{"file": s.file, "line": base + i + 1, "detail": d} for i, d in c[2]]
            per_file.setdefault(s.file, [0, 0])
            per_file[s.file][0] += c[0]
            per_file[s.file][1] += c[1]
            base += c[3]
        steps = add_stats([[c[4]] for c in counts] + [[mix.stats.to_dict()]])
        result = MixResult(str(out), str(manifest_path), n_in, h, total, h / total, min_human, snap.name,
                           snap.merkle_root, sum(c[1] for c in counts), out_hash, False, examples[:MAX_EXAMPLES],
                           runner.summary(steps, documents=total, flagged=None))
        if result.human_share < min_human:  # cannot happen by human_needed; never print a guarantee that fails
            out.unlink(missing_ok=True)
            raise RuntimeError(f"mix: human share {result.human_share} below {min_human}")
        runner.write_manifest(manifest_path, {
            "format": FORMAT, "params": params,
            "sources": [{**rec, "records": per_file[rec["path"]][0], "malformed_skipped": per_file[rec["path"]][1]}
                        for rec in ins],
            "vault": v.ref(snap.name).to_dict(), "human_documents": h, "human_hashes_sha256": digest,
            "counts": {"input": n_in, "human": h, "total": total, "human_share": result.human_share},
            "output": {"path": str(out), "sha256": out_hash},
            "result": {k: v_ for k, v_ in result.to_dict().items() if k not in ("skipped", "stats")}}, [out], steps)
    record_step(ledger, "mix", inputs=read, outputs=[out, manifest_path], params=params, result=result,
                known={**{s["path"]: s["sha256"] for s in ins}, str(out): out_hash})  # hashed above already
    return result
