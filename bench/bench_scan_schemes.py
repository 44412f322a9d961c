"""End-to-end ``scan --watermark SPEC --tokenizer smollm2`` throughput, one core, per scheme.

    python bench/bench_watermark_corpus.py   # not needed: any JSONL with a "text" field will do
    python bench/bench_scan_schemes.py [--mb 8] [--corpus bench/out/watermark-corpus]

One process, one core (``RAYON_NUM_THREADS=1``, ``--jobs 1``), the same JSONL file (the human SOTU
documents of ``bench/watermark_corpus.py``, repeated to ``--mb`` MB) for every row:

* ``tokenizer only``: SmolLM2's BPE (``tokenizers``' batch encoder) over the texts, nothing else;
* ``scan --detector length``: read, parse and write the sidecar with no tokenizer (the floor);
* ``scan --watermark SPEC``: each scheme, end to end (read, tokenise, score, sidecar, manifest).

Reports MB/s of input per core and each scan's time over the tokenizer's alone: what the scheme
and the pipeline add to the tokenisation no detector of these schemes can skip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported: one core
os.environ["TOKENIZERS_PARALLELISM"] = "false"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, announce, print_table, write_json  # noqa: E402

SCHEMES = ("hf-kgw-lefthash", "hf-kgw-selfhash", "synthid", "gumbel", "gumbel-dual")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=OUT_DIR / "watermark-corpus")
    ap.add_argument("--mb", type=float, default=8.0, help="size of the scanned file, MB")
    a = ap.parse_args(argv)
    from collapselab.detect.schemes.tokenizer import load_tokenizer
    from collapselab.pipeline import scan_corpus

    announce()
    lines = [json.dumps({"text": json.loads(x)["text"]}) + "\n"
             for x in (a.corpus / "human.jsonl").read_text(encoding="utf-8").splitlines()]
    body = "".join(lines)
    reps = max(1, int(a.mb * 1e6 // len(body.encode())) + 1)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text(body * reps, encoding="utf-8")
        mb = src.stat().st_size / 1e6
        texts = [json.loads(x)["text"] for x in src.read_text(encoding="utf-8").splitlines()]
        tok = load_tokenizer("smollm2")
        t0 = time.perf_counter()
        n_tokens = tok.encode(texts).n_tokens
        t_tok = time.perf_counter() - t0
        del texts
        rows, res = [["tokenizer only", f"{mb / t_tok:.2f}", "1.00x", "-"]], {"mb": mb, "tokens": n_tokens,
                                                                           "tokenizer_s": t_tok, "scan_s": {}}
        t0 = time.perf_counter()
        scan_corpus([src], detector="length", out=Path(tmp) / "len.parquet", jobs=1)
        t_len = time.perf_counter() - t0
        res["scan_s"]["length"] = t_len
        rows.append(["scan --detector length", f"{mb / t_len:.2f}", f"{t_len / t_tok:.2f}x", "-"])
        for name in SCHEMES:
            spec = a.corpus / f"{name}.yaml"
            if not spec.exists():
                continue
            t0 = time.perf_counter()
            r = scan_corpus([src], watermark=spec, tokenizer=tok, out=Path(tmp) / f"{name}.parquet", jobs=1)
            dt = time.perf_counter() - t0
            res["scan_s"][name] = dt
            rows.append([f"scan --watermark {name}", f"{mb / dt:.2f}", f"{dt / t_tok:.2f}x", f"{r.flagged_share:.2%}"])
    print_table(f"scan throughput, one core, {mb:.1f} MB of JSONL ({n_tokens:,} SmolLM2 tokens)",
                ["", "MB/s per core", "time / tokenizer's", "flagged"], rows)
    write_json("bench_scan_schemes", res)
    return res


if __name__ == "__main__":
    main()
