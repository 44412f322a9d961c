"""Green-list watermark: strength, false positives, robustness and detection speed vs MarkLLM.

Everything here is seeded; the key of every measurement is derived from a fixed label, so a rerun
prints the same statistics (the speed figures vary with the machine's load).

Language models (written below, sampled with ``Watermark.sample``, i.e. the exact biased softmax):

- ``zipf``: a unigram over 5,000 ids with Zipf(1) probabilities (high entropy, ~6.1 nats);
- ``sotu-bigram``: the maximum-likelihood word bigram of the State of the Union training sentences
  tokenised by collapselab (real text's lower entropy; its per-token entropy is printed), and the
  same at temperature 0.5 (low entropy, as instruction-tuned models often are).

Measurements (gamma = 0.25, delta = 2, h = 1 unless said otherwise):

1. z vs text length: 300 texts of 400 tokens per model, scored on prefixes of 25..400 tokens.
2. False positives on human text: the held-out State of the Union sentences, and the same text cut
   in 200-token pieces, under ``--keys`` random keys; observed rate of z >= 4 against the rate the
   exact binomial null predicts for those lengths (short texts are discrete: P(z >= 4) is not
   3.2e-5 at T = 10).
3. Robustness: a share of the tokens of 200- and 400-token watermarked texts replaced by tokens
   drawn from the same model's unigram distribution at random positions.
4. Windows: max-z over windows (50, 100, 200) on 1,000-token human pieces (its 99.9th percentile
   over keys is the threshold), then 100- and 200-token watermarked spans inserted into such pieces.
5. Speed: detection tokens/s on the State of the Union re-tokenised with SmolLM2's tokenizer and
   cut into 200-token pieces: ours in-process vs MarkLLM's KGW detector (``bench/markllm_detect.py``
   in MarkLLM's own virtual environment, one thread) on the same token ids, with our plain-Python
   per-token detector as a second peer; plus PRF throughput (SipHash-2-4 vectorised, a keyed
   splitmix64 mixer for scale, the plain-Python SipHash).

Run: ``python bench/bench_watermark.py`` (writes bench/out/bench_watermark.json; about 3 minutes on
2 shared cores). ``--markllm-python PATH`` points at the venv's interpreter (default
/tmp/markllm-venv/bin/python); without it the MarkLLM row is skipped and says why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_rate, fmt_ratio, machine, write_json  # noqa: E402

from collapselab.corpus.sequences import TokenSequences  # noqa: E402
from collapselab.provenance.watermark import Watermark, siphash24  # noqa: E402

GAMMA, DELTA = 0.25, 2.0
LENGTHS = (25, 50, 100, 200, 400)
SHARES = (0.0, 0.1, 0.2, 0.3, 0.5)


def key_for(label: str) -> bytes:
    """A fixed 256-bit key per label: measurements are reproducible, keys still look random."""
    return hashlib.blake2b(label.encode(), digest_size=32).digest()


def md_table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    return text


# ------------------------------------------------------------------ language models
class Zipf:
    name = "zipf"

    def __init__(self, vocab: int, rng: np.random.Generator) -> None:
        p = 1.0 / np.arange(1, vocab + 1)
        self.p = (p / p.sum())[rng.permutation(vocab)]
        self.cdf = np.cumsum(self.p)
        self.unigram = self.p

    def draw(self, prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(len(prev)) * self.cdf[-1], side="right"), len(self.p) - 1)

    def entropy(self, prev: np.ndarray) -> float:
        return float(-(self.p * np.log(self.p)).sum())


class Bigram:
    """Maximum-likelihood bigram over one stream of the training sentences, back to back, sampled
    at ``temperature`` (counts raised to ``1 / temperature``)."""

    def __init__(self, stream: np.ndarray, vocab: int, temperature: float = 1.0) -> None:
        self.name = "sotu-bigram" + ("" if temperature == 1.0 else f" T={temperature:g}")
        keys, counts = np.unique(stream[:-1].astype(np.int64) * vocab + stream[1:], return_counts=True)
        self.ctx, self.word = keys // vocab, keys % vocab
        self.weight = counts.astype(np.float64) ** (1.0 / temperature)
        self.cum = np.cumsum(self.weight)
        self.start = np.searchsorted(self.ctx, np.arange(vocab + 1))
        uni = np.bincount(stream, minlength=vocab).astype(np.float64)
        self.unigram = uni / uni.sum()
        self.uni_cdf = np.cumsum(self.unigram)

    def draw(self, prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.start[prev], self.start[prev + 1]
        out = np.empty(len(prev), dtype=np.int64)
        seen = hi > lo
        base = np.where(lo > 0, self.cum[np.maximum(lo - 1, 0)], 0.0)
        u = base[seen] + rng.random(int(seen.sum())) * (self.cum[hi[seen] - 1] - base[seen])
        out[seen] = self.word[np.minimum(np.searchsorted(self.cum, u, side="right"), hi[seen] - 1)]
        n_unseen = int((~seen).sum())
        out[~seen] = np.searchsorted(self.uni_cdf, rng.random(n_unseen) * self.uni_cdf[-1], side="right")
        return out

    def entropy(self, prev: np.ndarray) -> float:
        """Mean entropy (nats) of the next-token distribution over the contexts ``prev``."""
        ent = np.zeros(len(self.start) - 1)
        p = self.weight / np.bincount(self.ctx, weights=self.weight, minlength=len(ent))[self.ctx]
        np.add.at(ent, self.ctx, -p * np.log(p))
        return float(ent[prev].mean())


def generate(lm, wm: Watermark | None, n_docs: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n_docs`` texts of ``length`` tokens; watermarked with ``wm`` unless it is None."""
    out = np.empty((n_docs, length), dtype=np.int64)
    out[:, 0] = np.searchsorted(np.cumsum(lm.unigram), rng.random(n_docs), side="right").clip(max=len(lm.unigram) - 1)
    for t in range(1, length):
        prev = out[:, t - 1]
        if wm is None:
            out[:, t] = lm.draw(prev, rng)
        else:
            out[:, t] = wm.sample(lambda rows: lm.draw(prev[rows], rng), prev[:, None], rng)
    return out


def grid(a: np.ndarray) -> TokenSequences:
    return TokenSequences(a.reshape(-1), np.arange(0, a.size + 1, a.shape[1]))


def pieces(seqs: TokenSequences, n: int) -> TokenSequences:
    """The tokens of ``seqs`` back to back, cut in pieces of ``n`` (remainder dropped)."""
    k = seqs.n_tokens // n
    return TokenSequences(seqs.tokens[: k * n], np.arange(0, k * n + 1, n))


# ------------------------------------------------------------------ measurements
def strength(models, rng) -> tuple[str, dict]:
    rows, out = [], {}
    for lm in models:
        wm = Watermark(key_for(f"strength {lm.name}"), gamma=GAMMA, delta=DELTA)
        texts = generate(lm, wm, 300, max(LENGTHS), rng)
        res = {}
        for L in LENGTHS:
            d = wm.detect(grid(np.ascontiguousarray(texts[:, :L])))
            res[L] = {"median_z": float(np.median(d.z)), "p10_z": float(np.percentile(d.z, 10)),
                      "tpr_z4": float(d.flagged(4.0).mean()), "green_fraction": float(np.median(d.green_fraction)),
                      "median_scored": float(np.median(d.n_scored))}
            rows.append([lm.name, str(L), f"{res[L]['median_scored']:.0f}", f"{res[L]['green_fraction']:.3f}",
                         f"{res[L]['median_z']:.2f}", f"{res[L]['p10_z']:.2f}", f"{100 * res[L]['tpr_z4']:.1f}%"])
        out[lm.name] = {"entropy_nats": lm.entropy(texts[:, :-1].reshape(-1)), "by_length": res}
    title = "z reached vs text length (gamma 0.25, delta 2, h 1; 300 texts per model)"
    md = md_table(title, ["model", "tokens", "scored (median)", "green share (median)", "median z", "10th pct z", "z >= 4"], rows)
    md += "\nMean next-token entropy of the generated contexts: " + ", ".join(
        f"{k} {v['entropy_nats']:.2f} nats" for k, v in out.items()) + ".\n"
    print(md.rsplit("\n", 2)[-2])
    return md, out


def false_positives(holdout: TokenSequences, n_keys: int) -> tuple[str, dict]:
    views = {"sentences": holdout, "200-token pieces": pieces(holdout, 200)}
    rows, out = [], {}
    for name, seqs in views.items():
        n_flag = n_p = 0
        expected = 0.0
        zs = []
        t0 = time.perf_counter()
        for k in range(n_keys):
            wm = Watermark(key_for(f"fpr key {k}"), gamma=GAMMA)
            d = wm.detect(seqs)
            ok = d.n_scored > 0
            n_flag += int(d.flagged(4.0).sum())
            n_p += int((d.p_value <= stats.norm.sf(4.0)).sum())
            t = d.n_scored[ok]
            need = np.ceil(GAMMA * t + 4.0 * np.sqrt(t * GAMMA * (1 - GAMMA)) - 1e-9)  # smallest G with z >= 4
            expected += float(stats.binom.sf(need - 1, t, GAMMA).sum())
            zs.append(d.z[ok])
        z = np.concatenate(zs)
        tests = len(z)
        out[name] = {"items": len(seqs), "keys": n_keys, "tests": tests, "flagged_z4": n_flag, "rate_z4": n_flag / tests,
                     "expected_rate_z4_exact_null": expected / tests, "flagged_p": n_p, "rate_p": n_p / tests,
                     "z_mean": float(z.mean()), "z_sd": float(z.std()), "seconds": time.perf_counter() - t0,
                     "median_tokens": float(np.median(seqs.lengths))}
        r = out[name]
        rows.append([name, f"{len(seqs):,}", f"{r['median_tokens']:.0f}", f"{n_keys}", f"{tests:,}", f"{n_flag}",
                     f"{r['rate_z4']:.1e}", f"{r['expected_rate_z4_exact_null']:.1e}", f"{r['rate_p']:.1e}",
                     f"{r['z_mean']:+.3f} / {r['z_sd']:.3f}"])
    md = md_table("False positives on held-out human text (State of the Union, collapselab vocabulary)",
                  ["text", "items", "tokens (median)", "keys", "tests", "z >= 4", "rate", "binomial null rate",
                   "rate p <= 3.17e-5", "z mean / sd"], rows)
    return md, out


def robustness(models, rng) -> tuple[str, dict]:
    rows, out = [], {}
    for lm in models:
        wm = Watermark(key_for(f"robust {lm.name}"), gamma=GAMMA, delta=DELTA)
        texts = generate(lm, wm, 300, 400, rng)
        cdf = np.cumsum(lm.unigram)
        out[lm.name] = {}
        for L in (200, 400):
            for share in SHARES:
                t = texts[:, :L].copy()
                hit = rng.random(t.shape) < share
                t[hit] = np.searchsorted(cdf, rng.random(int(hit.sum())) * cdf[-1], side="right").clip(max=len(cdf) - 1)
                d = wm.detect(grid(t))
                r = {"median_z": float(np.median(d.z)), "tpr_z4": float(d.flagged(4.0).mean())}
                out[lm.name][f"{L}/{share}"] = r
                rows.append([lm.name, str(L), f"{100 * share:.0f}%", f"{r['median_z']:.2f}", f"{100 * r['tpr_z4']:.1f}%"])
    md = md_table("Robustness: share of tokens replaced at random (300 texts per row)",
                  ["model", "tokens", "replaced", "median z", "z >= 4"], rows)
    return md, out


def windows(holdout: TokenSequences, bigram: Bigram, rng, n_keys: int) -> tuple[str, dict]:
    sizes = (50, 100, 200)
    human = pieces(holdout, 1000)
    top = []
    for k in range(n_keys):
        top.append(Watermark(key_for(f"window key {k}"), gamma=GAMMA).detect_windows(human, sizes=sizes).z)
    top = np.concatenate(top)
    threshold = float(np.quantile(top, 0.999))
    wm = Watermark(key_for("window mark"), gamma=GAMMA, delta=DELTA)
    rows, out = [], {"human_max_z_quantiles": {q: float(np.quantile(top, q)) for q in (0.5, 0.99, 0.999)},
                     "threshold": threshold, "human_tests": len(top)}
    for span in (100, 200):
        hosts = human.tokens.reshape(len(human), 1000)[rng.permutation(len(human))[:200]].astype(np.int64)
        marked = generate(bigram, wm, len(hosts), span, rng)
        at = rng.integers(0, 1000 - span, size=len(hosts))
        for i in range(len(hosts)):
            hosts[i, at[i] : at[i] + span] = marked[i]
        w = wm.detect_windows(grid(hosts), sizes=sizes)
        d = wm.detect(grid(hosts))
        inter = np.clip(np.minimum(w.end, at + span) - np.maximum(w.start, at), 0, None)
        iou = inter / (np.maximum(w.end, at + span) - np.minimum(w.start, at))
        r = {"tpr_window": float((w.z >= threshold).mean()), "tpr_document_z4": float(d.flagged(4.0).mean()),
             "median_iou": float(np.median(iou)), "median_window_z": float(np.median(w.z)), "median_document_z": float(np.median(d.z))}
        out[f"span {span}"] = r
        rows.append([f"{span} in 1,000", f"{r['median_document_z']:.2f}", f"{100 * r['tpr_document_z4']:.1f}%",
                     f"{r['median_window_z']:.2f}", f"{100 * r['tpr_window']:.1f}%", f"{r['median_iou']:.2f}"])
    q = out["human_max_z_quantiles"]
    md = md_table(f"Windowed detection (windows {sizes}; threshold = 99.9th percentile of human max-z = {threshold:.2f})",
                  ["watermarked span", "document z (median)", "document z >= 4", "max window z (median)",
                   "window z >= threshold", "span IoU (median)"], rows)
    md += (f"\nHuman 1,000-token pieces ({len(top):,} tests over {n_keys} keys): max window z median {q[0.5]:.2f}, "
           f"99th percentile {q[0.99]:.2f}, 99.9th {q[0.999]:.2f} — far above the 3.09 a single z-test would need "
           "for 1e-3: windowed maxima are not z-scores.\n")
    return md, out


def reference_detect(wm: Watermark, seqs: TokenSequences) -> tuple[list[int], list[int]]:
    """Plain-Python per-token detector (the same decision as ``Watermark.detect``)."""
    n_scored, n_green = [], []
    for doc in seqs.to_lists():
        seen = {(doc[i - 1], doc[i]) for i in range(1, len(doc))}
        n_scored.append(len(seen))
        n_green.append(sum(wm.green_reference((c,), t) for c, t in seen))
    return n_scored, n_green


def module_at(rev: str, relpath: str = "src/collapselab/provenance/watermark.py"):
    """A module of this repository as it was at git revision ``rev`` (for a before/after row)."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{relpath}"],
                         capture_output=True, text=True, check=True).stdout
    name = f"{Path(relpath).stem}_at_{rev}"
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def speed(markllm_python: str | None, budget: float, against: str | None = None) -> tuple[str, dict]:
    from collapselab.corpus.text_corpus import sotu_documents

    out: dict = {}
    wm = Watermark(key_for("speed"), gamma=GAMMA, delta=DELTA)
    # PRF throughput
    rng = np.random.default_rng(0)
    n = 2_000_000
    ctx, tok = rng.integers(0, 49_152, size=(n, 1)), rng.integers(0, 49_152, size=n)
    t_sip = min(_time(lambda: wm.green(ctx, tok)) for _ in range(3))
    x = (ctx[:, 0].astype(np.uint64) << np.uint64(24)) | tok.astype(np.uint64)
    t_mix = min(_time(lambda: _splitmix_green(x, 0x1234_5678_9ABC_DEF0)) for _ in range(3))
    m = 20_000
    t_py = _time(lambda: [siphash24(wm._sip_key, c.to_bytes(3, "little") + t.to_bytes(3, "little"))
                          for c, t in zip(ctx[:m, 0].tolist(), tok[:m].tolist())])
    out["prf_pairs_per_s"] = {"siphash24_numpy": n / t_sip, "splitmix64_numpy": n / t_mix, "siphash24_python": m / t_py}
    # detection, on SmolLM2 token ids shared with MarkLLM
    texts = [text for _, text in sotu_documents()]
    peer: dict = {"status": "skipped: no --markllm-python"}
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = Path(tmp) / "ids.npz"
        if markllm_python and Path(markllm_python).exists():
            (Path(tmp) / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
            cmd = [markllm_python, str(Path(__file__).with_name("markllm_detect.py")), "--texts", str(Path(tmp) / "texts.json"),
                   "--ids", str(ids_path), "--budget", str(budget), "--gamma", str(GAMMA), "--delta", str(DELTA), "--prefix", "1"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget + 600)
            if proc.returncode == 0:
                peer = json.loads(proc.stdout.strip().splitlines()[-1])
                peer["status"] = "ok"
                peer["z_mean"], peer["z_sd"] = float(np.mean(peer["z"])), float(np.std(peer["z"]))
            else:
                peer = {"status": f"failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"}
        elif markllm_python:
            peer = {"status": f"skipped: {markllm_python} not found"}
        if ids_path.exists():
            z = np.load(ids_path)
            seqs = TokenSequences(z["tokens"], z["offsets"])
            source = "SOTU, SmolLM2 tokenizer, 200-token pieces"
        else:  # no MarkLLM: collapselab's own tokenisation of the same text
            from collapselab.corpus.text_corpus import build_text_corpus

            seqs = pieces(build_text_corpus(sotu_documents(), name="sotu", n_train=None).train, 200)
            source = "SOTU, collapselab tokenizer, 200-token pieces"
    before = None
    if against:  # the same detector at another revision, timed in alternation with ours: equal counts first
        old_wm = module_at(against).Watermark(key_for("speed"), gamma=GAMMA, delta=DELTA)
        a, b = old_wm.detect(seqs), wm.detect(seqs)
        assert np.array_equal(a.n_scored, b.n_scored) and np.array_equal(a.n_green, b.n_green)
        times = [(_time(lambda: old_wm.detect(seqs)), _time(lambda: wm.detect(seqs))) for _ in range(5)]
        t_before, t_ours = min(t[0] for t in times), min(t[1] for t in times)
        before = seqs.n_tokens / t_before
    else:
        t_ours = min(_time(lambda: wm.detect(seqs)) for _ in range(3))
    ours = seqs.n_tokens / t_ours
    k = min(len(seqs), 300)
    sub = seqs.take(np.arange(k))
    t_ref = _time(lambda: reference_detect(wm, sub))
    ref = sub.n_tokens / t_ref
    check = wm.detect(sub)  # the two detectors agree exactly
    assert reference_detect(wm, sub) == (check.n_scored.tolist(), check.n_green.tolist())
    out["detection"] = {"source": source, "items": len(seqs), "tokens": seqs.n_tokens, "ours_tokens_per_s": ours,
                        "python_reference_tokens_per_s": ref, "markllm": {k2: v for k2, v in peer.items() if k2 != "z"}}
    rows = [["collapselab Watermark.detect (numpy)", f"{seqs.n_tokens:,}", fmt_rate(ours), "1.0x"],
            ["plain-Python per-token detector (same PRF)", f"{sub.n_tokens:,}", fmt_rate(ref), fmt_ratio(ours / ref)]]
    if before is not None:
        out["detection"]["before_tokens_per_s"] = {"revision": against, "tokens_per_s": before}
        rows.insert(1, [f"the same Watermark.detect at {against} (alternating, best of 5)", f"{seqs.n_tokens:,}",
                        fmt_rate(before), fmt_ratio(ours / before)])
    if peer.get("status") == "ok":
        mk = peer["tokens_per_s"]
        out["detection"]["ratio_vs_markllm"] = ours / mk
        rows.insert(1, [f"MarkLLM {peer['markllm_version']} KGW score_sequence (torch {peer['torch_version']}, 1 thread)",
                        f"{peer['tokens_scored']:,}", fmt_rate(mk), fmt_ratio(ours / mk)])
    else:
        rows.insert(1, ["MarkLLM KGW", "-", "-", peer["status"][:120]])
    p = out["prf_pairs_per_s"]
    md = md_table(f"Detection speed, tokens/s, one process ({source}; gamma 0.25, h 1)",
                  ["detector", "tokens timed", "tokens/s", "ours is"], rows)
    md += "\n" + md_table("Green-decision throughput, pairs/s", ["PRF", "pairs/s"],
                   [["SipHash-2-4, numpy (ours)", fmt_rate(p["siphash24_numpy"])],
                    ["keyed splitmix64 mixer, numpy (not a PRF; for scale)", fmt_rate(p["splitmix64_numpy"])],
                    ["SipHash-2-4, plain Python", fmt_rate(p["siphash24_python"])]])
    return md, out


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _splitmix_green(x: np.ndarray, secret: int) -> np.ndarray:
    z = x ^ np.uint64(secret)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z < np.uint64(int(GAMMA * 2**64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=300, help="random keys for the false-positive measurement")
    ap.add_argument("--markllm-python", default="/tmp/markllm-venv/bin/python")
    ap.add_argument("--markllm-budget", type=float, default=30.0, help="seconds of MarkLLM detection to time")
    ap.add_argument("--only", default="strength,fpr,robust,windows,speed")
    ap.add_argument("--against", default=None, help="also time Watermark.detect as it was at this git revision")
    args = ap.parse_args()
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents

    only = set(args.only.split(","))
    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=None, max_holdout_items=10**9)
    rng = np.random.default_rng(2024)
    bigram = Bigram(corpus.train.tokens, len(corpus.vocab.words))
    models = [Zipf(5000, rng), bigram, Bigram(corpus.train.tokens, len(corpus.vocab.words), temperature=0.5)]
    print(f"corpus: {corpus.train.n_tokens:,} training tokens, {corpus.holdout.n_tokens:,} held-out tokens "
          f"in {len(corpus.holdout):,} sentences, vocabulary {len(corpus.vocab.words):,}\n")
    md, results = [], {"machine": machine(), "command": "python bench/bench_watermark.py " + " ".join(sys.argv[1:])}
    steps = [("strength", lambda: strength(models, rng)), ("fpr", lambda: false_positives(corpus.holdout, args.keys)),
             ("robust", lambda: robustness(models, rng)), ("windows", lambda: windows(corpus.holdout, bigram, rng, 50)),
             ("speed", lambda: speed(args.markllm_python, args.markllm_budget, args.against))]
    for name, fn in steps:
        if name in only:
            t0 = time.perf_counter()
            text, res = fn()
            md.append(text)
            results[name] = res
            print(f"({name}: {time.perf_counter() - t0:.1f} s)\n")
    results["markdown"] = "\n".join(md)
    write_json("bench_watermark", results)


if __name__ == "__main__":
    main()
