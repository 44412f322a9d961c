"""Bit-identity check for refactors of the loop: the same runs, the same bytes.

Runs a handful of small experiments with fixed seeds and writes a manifest of the SHA-256 of every
``metrics.parquet`` and sample shard (``samples/**/gen*.parquet|npy``), plus the deterministic
part of each ``summary.json`` (its table and final metrics)::

    python bench/refactor_identity.py --out /tmp/refactor-baseline          # record
    python bench/refactor_identity.py --compare /tmp/refactor-baseline      # run again, compare

The runs (about a minute on two cores):

- ``chain``: ngram, four data sources and two defences side by side, two seeds;
- ``chain-resample``: ngram chains with ``resample_data`` (each seed its own split);
- ``tree``: ngram derivative tree (every model spawns one child per policy);
- ``watermark-key``: ngram with a fixed ``--watermark-key``, half of each output marked, and a
  ``filter:watermark`` defence;
- ``gpt-scheme``: a tiny gpt sampling with an hf-kgw scheme spec, fine-tuning from the previous
  generation (``init: previous``: checkpoints);
- ``image``: gmm on the digits corpus (image sample shards);
- ``gaussian``: the theory model, many seeds.

``--only NAME[,NAME]`` runs a subset, ``--jobs N`` each run's chains in N worker processes. The exit status is 1 when a compared hash differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TEXT_SEED = 0


def _corpus(folder: Path, n: int = 2000) -> Path:
    """A deterministic text corpus (one .txt file) of the tests' sentences (``tests/textgen.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from textgen import make_sentences

    sents = make_sentences(n, TEXT_SEED)
    path = folder / "corpus.txt"
    path.write_text("\n\n".join(" ".join(sents[i:i + 10]) for i in range(0, n, 10)) + "\n", encoding="utf-8")
    return path


def _key(folder: Path) -> Path:
    """A fixed collapselab watermark key (0600)."""
    path = folder / "wm.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((bytes([3]) * 32).hex() + "\n")
    return path


def _scheme_spec(folder: Path) -> Path:
    from collapselab.detect.schemes.spec import write_key

    key = folder / "hf-kgw.key"
    if not key.exists():
        write_key("hf-kgw", key, 8_731_462_905_117_003_571)
    path = folder / "hf-kgw.yaml"
    path.write_text(json.dumps({"scheme": "hf-kgw", "key_file": key.name}))
    return path


def experiments(inputs: Path) -> dict[str, dict]:
    corpus = str(_corpus(inputs))
    text = {"family": "ngram", "corpus": corpus, "train_items": 300, "holdout_items": 100, "rare_max_count": 3}
    tiny_gpt = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "bpe_vocab": 300, "epochs": 1,
                "batch_size": 16, "lr": 1e-2, "max_len": 20, "init": "previous"}
    return {
        "chain": {**text, "generations": 3, "seeds": [0, 1],
                  "policies": ["replace", "accumulate", "accumulate-subsample", "anchor:0.1", "fresh:0.1",
                               "web:0.1-0.9+filter:likelihood:0.05+accumulate", "web:0.2-0.8:train+curate:self:0.5+anchor:0.2"]},
        "chain-resample": {**text, "generations": 2, "seeds": [0, 1], "resample_data": True, "facts": True,
                           "policies": ["replace", "fresh:0.1"]},
        "tree": {**text, "generations": 2, "tree": True, "policies": ["replace", "accumulate", "anchor:0.2"]},
        "watermark-key": {**text, "generations": 2, "watermark_key": str(_key(inputs)), "watermark_share": 0.5,
                          "policies": ["replace", "web:0.2-0.8+filter:watermark:0.05"]},
        "gpt-scheme": {"family": "gpt", "corpus": corpus, "train_items": 120, "holdout_items": 40, "samples": 60,
                       "generations": 2, "watermark": str(_scheme_spec(inputs)), "model": tiny_gpt,
                       "policies": ["replace", "web:0.3-0.7+filter:watermark:0.05"]},
        "image": {"family": "gmm", "corpus": "digits", "train_items": 200, "holdout_items": 100, "generations": 2,
                  "model": {"n_components": 4, "pca_components": 8}, "policies": ["replace", "accumulate", "fresh:0.1"]},
        "gaussian": {"family": "gaussian", "generations": 5, "seeds": list(range(6)), "train_items": 30, "dim": 2,
                     "policies": ["replace", "accumulate", "anchor:0.1", "fresh:0.2", "web:0.1-0.9"]},
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content_sha(path: Path) -> str:
    """sha256 of a Parquet file's schema and values, not its bytes: the bytes also name the writer
    (pyarrow's version), so a fresh environment with another pyarrow writes other bytes for the same
    table. Values go through Python's exact float repr, so any changed bit changes the hash."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    body = {"schema": [(f.name, str(f.type)) for f in t.schema], "data": t.to_pydict()}
    return hashlib.sha256(json.dumps(body, default=repr).encode()).hexdigest()


def manifest_of(run: Path) -> dict[str, str]:
    """``relative path -> sha256`` of the run's metrics, sample shards and summary numbers."""
    out = {"metrics.parquet": _sha(run / "metrics.parquet"),
           "metrics.parquet#content": _content_sha(run / "metrics.parquet")}
    for p in sorted((run / "samples").rglob("gen*")):
        if p.suffix in (".parquet", ".npy"):
            out[str(p.relative_to(run))] = _sha(p)
        if p.suffix == ".parquet":
            out[str(p.relative_to(run)) + "#content"] = _content_sha(p)
    summary = json.loads((run / "summary.json").read_text())
    kept = {k: summary.get(k) for k in ("final", "table", "corpus", "watermark")}
    for k, path in (("corpus", "name"), ("watermark", "spec")):  # paths in the scratch folder
        if kept[k]:
            kept[k] = {f: v for f, v in kept[k].items() if f != path}
    out["summary.json#numbers"] = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
    return out


def run_all(out: Path, only: list[str] | None = None, jobs: int = 1) -> dict:
    import collapselab as cl

    try:  # torch's CPU reductions depend on its thread count: one thread, the same bits on every machine
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp)
        for name, cfg in experiments(inputs).items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            run_dir = Path(tmp) / "runs" / name
            cl.run_experiment(cfg, out=run_dir, jobs=jobs)
            result[name] = manifest_of(run_dir)
            print(f"{name}: {len(result[name])} files, {time.perf_counter() - t0:.1f}s", flush=True)
    (out / "manifest.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def compare(baseline: dict, now: dict, *, content_only: bool = False) -> list[str]:
    """One line per difference (an empty list: identical). ``content_only``: Parquet files by their
    schema and values (``#content``), not their bytes, which also depend on pyarrow's version."""
    if content_only:
        def keep(d):
            return {run: {f: h for f, h in files.items() if not f.endswith(".parquet")} for run, files in d.items()}
        baseline, now = keep(baseline), keep(now)
    diffs = []
    for name in sorted(set(baseline) | set(now)):
        if name not in now:
            diffs.append(f"{name}: not run")
            continue
        if name not in baseline:
            diffs.append(f"{name}: not in the baseline")
            continue
        a, b = baseline[name], now[name]
        for f in sorted(set(a) | set(b)):
            if a.get(f) != b.get(f):
                diffs.append(f"{name}/{f}: " + ("missing now" if f not in b else "new" if f not in a else "differs"))
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the manifest here (a folder)")
    ap.add_argument("--compare", type=Path, metavar="BASELINE", help="run, then compare with BASELINE/manifest.json")
    ap.add_argument("--only", help="comma-separated run names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes per run (the numbers must not depend on it)")
    args = ap.parse_args()
    if not args.out and not args.compare:
        ap.error("give --out FOLDER or --compare BASELINE")
    only = args.only.split(",") if args.only else None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        now = run_all(args.out or Path(tmp) / "now", only, args.jobs)
    if args.compare:
        baseline = json.loads((args.compare / "manifest.json").read_text())
        if only:
            baseline = {k: v for k, v in baseline.items() if k in only}
        diffs = compare(baseline, now)
        n = sum(len(v) for v in now.values())
        for d in diffs:
            print("DIFF", d)
        print(f"{'all identical' if not diffs else f'{len(diffs)} differences'}: {len(now)} runs, {n} files "
              f"({time.perf_counter() - t0:.0f}s)")
        return 1 if diffs else 0
    print(f"manifest: {args.out / 'manifest.json'} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
