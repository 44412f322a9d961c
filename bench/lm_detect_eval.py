"""Zero-shot LM detectors and watermark schemes on real SmolLM2-135M text: AUROC and TPR at 1 % FPR.

    python bench/lm_evalset.py                 # the evaluation set (once; ~40 min on 2 cores)
    python bench/lm_performer.py               # the Binoculars performer (once; ~10 min)
    python bench/lm_detect_eval.py [--dtype bfloat16] [--doc docs/detect.md]

Detectors (``collapselab.detect.lm``), all with SmolLM2-135M-Instruct as the scoring model:

* ``fast-detectgpt``: the analytic sampling discrepancy, scoring = sampling model = SmolLM2;
* ``binoculars (one model)``: observer = performer = SmolLM2 (log-perplexity over entropy; free
  from the same pass);
* ``binoculars (loop performer)``: observer SmolLM2, performer the SmolLM2 our loop's ``smollm2``
  family fine-tuned on the odd-numbered SOTU addresses (``bench/lm_performer.py``);
* the watermark schemes' own detectors (``collapselab.detect.schemes``) with their keys.

Protocol. Nothing here is fitted on the evaluation set: the LM detectors are zero-shot, and the
performer learnt from addresses the set does not use. Each text is scored on its first 32, 128 and
256 SmolLM2 tokens (one pass; the model is causal). AUROC uses every human and synthetic text of
the cell. For TPR at 1 % FPR the human texts are split in two halves at random (seeded): the
threshold is set on half A, TPR is measured on the synthetic texts and the realised FPR on half B,
which the threshold never saw (both are printed). Token statistics are cached in ``--cache``
(delete it to rescore).

Watermarks: the evaluation set is not watermarked, so a scheme's detector should find nothing
there (its row is the check). Its power is measured (by the scheme's own detector) on the watermarked continuations of
``bench/watermark_corpus.py`` (96 per scheme, 200 tokens, SOTU prompts from even addresses, top-k 50
at temperature 1: a different sampler than the evaluation set's), against the evaluation set's SOTU
human passages cut to the same lengths (32, 128, 200 tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, announce, write_json, write_section  # noqa: E402
from lm_evalset import CORPORA, TEMPERATURES, load, read_jsonl  # noqa: E402

LENGTHS = (32, 128, 256)
WM_LENGTHS = (32, 128, 200)
WM_SCHEMES = ("hf-kgw-lefthash", "synthid", "gumbel", "gumbel-dual")
DOC = Path(__file__).resolve().parents[1] / "docs" / "detect.md"
README = Path(__file__).resolve().parents[1] / "README.md"


def cached_stats(cache: Path, name: str, make):
    """LMStats of one file under one detector pass, from ``cache`` when there."""
    from collapselab.detect.lm import LMStats

    path = cache / f"{name}.npz"
    if path.exists():
        z = np.load(path)
        return LMStats(z["lp"], z["mu"], z["s2"], z["item"], z["pos"], int(z["n_items"]))
    s = make()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, lp=s.lp, mu=s.mu, s2=s.s2, item=s.item, pos=s.pos, n_items=s.n_items)
    tmp.replace(path)
    return s


def concat(a, b):
    """The statistics of a's texts followed by b's, as one LMStats."""
    from collapselab.detect.lm import LMStats

    return LMStats(np.r_[a.lp, b.lp], np.r_[a.mu, b.mu], np.r_[a.s2, b.s2], np.r_[a.item, b.item + a.n_items],
                   np.r_[a.pos, b.pos], a.n_items + b.n_items)


def split_rates(human: np.ndarray, synthetic: np.ndarray, seed: int) -> dict:
    """AUROC on all texts; threshold on a random half of the human texts, TPR on the synthetic ones,
    FPR on the other half (:func:`collapselab.detect.calibration.evaluate_split`)."""
    from collapselab.detect.calibration import evaluate_split

    r = evaluate_split(human, synthetic, (0.01,), rng=np.random.default_rng(seed))
    return {"auroc": r["auroc"], "tpr": r["tpr@1%"], "fpr": r["fpr@1%"], "n_human": r["n_human"],
            "n_synthetic": r["n_synthetic"]}


def lm_scores(stats_by_pass: dict, L: int) -> dict[str, np.ndarray]:
    """Detector name -> scores of the first ``L`` tokens, from the cached passes of one file."""
    own = stats_by_pass["smollm2"].prefix(L)
    out = {"fast-detectgpt": own.fast_detectgpt(), "binoculars (one model)": own.binoculars()}
    if "performer" in stats_by_pass:
        out["binoculars (loop performer)"] = stats_by_pass["performer"].prefix(L).binoculars()
    return out


def scheme_scores(schemes: dict, ids: list[list[int]], L: int) -> dict[str, np.ndarray]:
    from collapselab.corpus.sequences import TokenSequences

    seqs = TokenSequences.from_lists([t[:L] for t in ids])
    return {f"watermark {name}": -s.score(seqs).p_value for name, s in schemes.items()}


def table(rows: list[dict], lengths) -> str:
    head = "| corpus | synthetic | detector | " + " | ".join(f"AUROC {L}" for L in lengths) + " | " + \
        " | ".join(f"TPR@1% {L}" for L in lengths) + " | FPR (half B) " + str(lengths[-1]) + " | n human / synth |"
    sep = "|" + "---|" * (4 + 2 * len(lengths) + 1)
    lines = [head, sep]
    for r in rows:
        c = r["cells"]
        lines.append(f"| {r['corpus']} | {r['synthetic']} | {r['detector']} | "
                     + " | ".join(f"{c[L]['auroc']:.3f}" for L in lengths) + " | "
                     + " | ".join(f"{c[L]['tpr']:.3f}" for L in lengths)
                     + f" | {c[lengths[-1]]['fpr']:.3f} | {c[lengths[-1]]['n_human']} / {c[lengths[-1]]['n_synthetic']} |")
    return "\n".join(lines)


def readme_bullet(rows: list[dict]) -> str:
    """One README line: each LM detector's range over corpora and temperatures at 256 and 32 tokens."""
    parts = []
    for d in ("fast-detectgpt", "binoculars (one model)", "binoculars (loop performer)"):
        mine = [r["cells"] for r in rows if r["detector"] == d]
        if not mine:
            continue
        au = [c[256]["auroc"] for c in mine]
        tp = [c[256]["tpr"] for c in mine]
        au32 = [c[32]["auroc"] for c in mine]
        parts.append(f"{d} AUROC {min(au):.3f}–{max(au):.3f} at 256 tokens ({min(au32):.3f}–{max(au32):.3f} at 32), "
                     f"TPR at 1% FPR {min(tp):.0%}–{max(tp):.0%}")
    n_h = sum(r["cells"][256]["n_human"] for r in rows if r["detector"] == "fast-detectgpt") // len(TEMPERATURES)
    n_s = sum(r["cells"][256]["n_synthetic"] for r in rows if r["detector"] == "fast-detectgpt")
    return ("- **Zero-shot LM detectors on real SmolLM2 text** (`python bench/lm_evalset.py && python bench/lm_performer.py "
            f"&& python bench/lm_detect_eval.py`; {n_h:,} human SOTU and Shakespeare passages vs {n_s:,} SmolLM2-135M "
            "continuations at temperature 0.7 and 1.0, top-p 0.95; table in docs/detect.md): " + "; ".join(parts)
            + ". White-box: the scorer is the generator; expect less on other models' text.")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evalset", type=Path, default=OUT_DIR / "lm-evalset")
    ap.add_argument("--performer", type=Path, default=OUT_DIR / "lm-performer")
    ap.add_argument("--watermark-corpus", type=Path, default=OUT_DIR / "watermark-corpus")
    ap.add_argument("--cache", type=Path, default=OUT_DIR / "lm-detect-cache")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--performer-n", type=int, default=256,
                    help="texts per file scored with the Binoculars performer too (a second model: twice the cost)")
    ap.add_argument("--only", default=None, help="score only these files (comma-separated stems), then stop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    import torch

    from collapselab.detect.lm import load_model, token_stats_pairs
    from collapselab.detect.schemes import load_scheme

    torch.set_num_threads(1)
    announce()
    files = load(a.evalset)
    wm_files = {n: read_jsonl(a.watermark_corpus / f"{n}.jsonl") for n in WM_SCHEMES
                if (a.watermark_corpus / f"{n}.jsonl").exists()}
    have_performer = (a.performer / "config.json").exists()
    cache = a.cache / a.dtype

    loaded: dict = {}

    def passes(name: str, ids: list[list[int]]) -> dict:
        """The observer's own statistics of every text and, with a performer, the performer's under
        the observer's distribution for the first ``--performer-n`` texts (the files' order is random):
        the subset's pass runs both models at once (cached per file)."""
        ids = [t[:max(LENGTHS)] for t in ids]
        n_perf = min(a.performer_n, len(ids)) if have_performer else 0
        perf_key = f"performer{n_perf}"
        keys = ["smollm2"] + ([perf_key] if n_perf else [])
        if all((cache / f"{name}.{k}.npz").exists() for k in keys):
            return {("performer" if k == perf_key else k): cached_stats(cache, f"{name}.{k}", None) for k in keys}
        if "observer" not in loaded:
            loaded["observer"] = load_model("smollm2", dtype=a.dtype)[0]
        observer = loaded["observer"]
        t = time.time()
        if n_perf:
            if "performer" not in loaded:
                loaded["performer"] = load_model(a.performer, dtype=a.dtype)[0]
            own_sub, perf = token_stats_pairs(ids[:n_perf], [(observer, None), (loaded["performer"], observer)],
                                              batch_tokens=a.batch_tokens)
            rest = token_stats_pairs(ids[n_perf:], [(observer, None)], batch_tokens=a.batch_tokens)[0]
            own = concat(own_sub, rest)
        else:
            own, perf = token_stats_pairs(ids, [(observer, None)], batch_tokens=a.batch_tokens)[0], None
        print(f"  {name}: {len(ids)} texts ({n_perf} with the performer) in {time.time() - t:.0f} s", flush=True)
        out = {"smollm2": cached_stats(cache, f"{name}.smollm2", lambda: own)}
        if perf is not None:
            out["performer"] = cached_stats(cache, f"{name}.{perf_key}", lambda: perf)
        return out

    todo = dict(files)  # the watermarked files are judged by their schemes only (no LM pass)
    if a.only:
        todo = {k: v for k, v in todo.items() if k in a.only.split(",")}
    stats = {k: passes(k, [r["ids"] for r in v]) for k, v in todo.items()}
    if a.only:
        return {}

    schemes = {}
    for n in wm_files:
        schemes[n] = load_scheme(a.watermark_corpus / f"{n}.yaml", vocab_size=49152)

    human_wm: dict = {}

    def human_scheme_scores(corpus: str, L: int) -> dict[str, np.ndarray]:
        """Every scheme's scores of a corpus' human texts cut to ``L`` tokens, computed once."""
        if (corpus, L) not in human_wm:
            human_wm[corpus, L] = scheme_scores(schemes, [r["ids"] for r in files[f"{corpus}-human"]], L)
        return human_wm[corpus, L]

    rows, wm_rows = [], []
    for corpus in CORPORA:
        for t in TEMPERATURES:
            synth = files[f"{corpus}-t{t}"]
            s_ids = [r["ids"] for r in synth]
            cells: dict[str, dict] = {}
            for L in LENGTHS:
                hs, ss = lm_scores(stats[f"{corpus}-human"], L), lm_scores(stats[f"{corpus}-t{t}"], L)
                hs.update(human_scheme_scores(corpus, L))
                ss.update(scheme_scores(schemes, s_ids, L))
                for d in hs:
                    cells.setdefault(d, {})[L] = split_rates(hs[d], ss[d], a.seed)
            for d, c in cells.items():
                rows.append({"corpus": corpus, "synthetic": f"SmolLM2 T={t}, top-p 0.95", "detector": d, "cells": c})
    # watermarked text of each scheme vs the SOTU human passages
    for n in wm_files:
        cells = {}
        for L in WM_LENGTHS:
            hs = {f"watermark {n}": human_scheme_scores("sotu", L)[f"watermark {n}"]}
            ss = scheme_scores({n: schemes[n]}, [r["ids"] for r in wm_files[n]], L)
            for d in hs:
                cells.setdefault(d, {})[L] = split_rates(hs[d], ss[d], a.seed)
        for d, c in cells.items():
            wm_rows.append({"corpus": "sotu", "synthetic": f"{n}-watermarked, T=1 top-k 50", "detector": d, "cells": c})

    md = [f"Command: `python bench/lm_detect_eval.py --dtype {a.dtype}` (after `python bench/lm_evalset.py` and "
          f"`python bench/lm_performer.py`). Scoring in {a.dtype} (the continuations were sampled in float32); thresholds "
          "on a random half of the human texts, TPR on the synthetic ones, FPR on the other half; the *loop performer* "
          f"rows score the first {a.performer_n} texts of each file (the files are in random order), the others every "
          "text.", "",
          "**Unwatermarked SmolLM2-135M continuations** (the evaluation set):", "", table(rows, LENGTHS)]
    if wm_rows:
        md += ["", "**Watermarked SmolLM2-135M continuations** (`bench/watermark_corpus.py`, 200 tokens) vs the "
               "evaluation set's SOTU human passages:", "", table(wm_rows, WM_LENGTHS)]
    text = "\n".join(md)
    print(text)
    payload = {"rows": rows, "watermark_rows": wm_rows, "dtype": a.dtype, "performer": have_performer}
    write_json("lm_detect_eval", json.loads(json.dumps(payload, default=float)))
    if not a.no_write:
        write_section(a.doc, "lm-detectors", text)
        bullet = readme_bullet(rows)
        print(bullet)
        if a.doc == DOC:  # the README's bullet only from a run that also wrote the real docs page
            write_section(README, "lm-detect-results", bullet)
        print(f"wrote the section 'lm-detectors' of {a.doc}")
    return payload


if __name__ == "__main__":
    main()
