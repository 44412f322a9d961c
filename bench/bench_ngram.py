"""Order-3 n-gram model: fit and sampling throughput, collapselab vs nltk.lm vs a plain-Python model.

Data: the default corpus, all of it (every State of the Union address, tokenised by collapselab,
cut into sentences; ~1.9 M tokens in ~66 k sentences). Every model learns from the same sentences:

- ours: ``collapselab.models.ngram.NGramModel(order=3)`` on the id arrays (``TokenSequences``);
- ``nltk.lm``: ``padded_everygram_pipeline(3, sentences)`` + ``MLE(3).fit`` on lists of words;
  generation one token at a time with ``model.generate(1, text_seed=context, random_seed=rng)``,
  restarting at ``<s> <s>`` after ``</s>`` (``model.generate(n)`` in one call never leaves
  ``</s>`` once it reaches it, because of the right padding, and copies its history every step);
  ``KneserNeyInterpolated`` shares the MLE model's counts (its fit *is* that counting) and
  generates far slower, with a cost that grows with the model: it is timed on small documented
  slices, in separate rows;
- dict-trigram: a plain-Python trigram model written below (dict of ``Counter``s for fit;
  ``random.choices`` over the context's counts for sampling, backing off to bigram / unigram
  counts for unseen contexts), on lists of words.

Generated tokens are counted the same way for every sampler: the words plus one ``</s>`` per
finished sentence. Fit throughput is training tokens (words, no padding) per second.
"fit+sample" is the throughput of one generation of the self-consuming loop: fit on N tokens,
then write N tokens, i.e. ``2 / (1/fit_rate + 1/sample_rate)``.

Ours and the dict model are timed in alternating rounds, best of ``REPEAT`` (5) each, so that both
see the same load on a shared machine.

Run: ``python bench/bench_ngram.py`` (writes bench/out/bench_ngram.json). About 3 minutes.
``--against REV`` adds our model as it was at git revision ``REV`` to the same rounds (a before/after
row) and asserts that both draw the very same samples.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, fmt_rate, fmt_ratio, load_sotu, print_table, timed, word_lists, write_json  # noqa: E402

ORDER = 3
N_SAMPLE = 20_000  # sentences sampled by ours and the dict model
REPEAT = 5  # rounds (ours, then the dict model) for the best-of
NLTK_GEN_TOKENS = 3_000  # nltk MLE: tokens generated (or NLTK_GEN_BUDGET seconds, whichever first)
NLTK_GEN_BUDGET = 30.0
NLTK_FIT_LIMIT = 60.0  # if projected nltk fit time on all tokens exceeds this, fit on a slice
KN_SLICES = (300, 1_000)  # sentences for the KneserNeyInterpolated rows
KN_BUDGET = 15.0  # seconds of generation per KN row
KN_MAX_TOKENS = 200
KN_FULL_ALARM = 60  # seconds allowed for one KN token on the full model
BOS, EOS = "<s>", "</s>"
MAX_LEN = 128


# ----------------------------------------------------------------------------- plain-Python peer
class DictTrigram:
    """A plain-Python trigram model: dict-of-Counters counts, random.choices sampling with back-off."""

    def __init__(self, max_len: int = MAX_LEN):
        self.max_len = max_len

    def fit(self, sents: list[list[str]]) -> "DictTrigram":
        tri: dict[tuple[str, str], Counter] = defaultdict(Counter)
        bi: dict[str, Counter] = defaultdict(Counter)
        uni: Counter = Counter()
        for s in sents:
            p = [BOS, BOS, *s, EOS]
            for a, b, c in zip(p, p[1:], p[2:]):
                tri[a, b][c] += 1
                bi[b][c] += 1
                uni[c] += 1
        self.tri, self.bi, self.uni = tri, bi, uni
        return self

    def _table(self, cache, ctx):
        counts = self.tri.get(ctx)
        if counts is None:
            counts = self.bi.get(ctx[1]) or self.uni  # back off: bigram, then unigram
        words = list(counts)
        cum, acc = [], 0
        for w in words:
            acc += counts[w]
            cum.append(acc)
        cache[ctx] = table = (words, cum)
        return table

    def sample(self, n: int, rng: random.Random) -> list[list[str]]:
        cache: dict = {}
        out = []
        choices = rng.choices
        for _ in range(n):
            a = b = BOS
            sent: list[str] = []
            for _ in range(self.max_len):
                table = cache.get((a, b)) or self._table(cache, (a, b))
                w = choices(table[0], cum_weights=table[1])[0]
                if w == EOS:
                    sent.append(EOS)
                    break
                sent.append(w)
                a, b = b, w
            out.append(sent)
        return out


# ----------------------------------------------------------------------------- helpers
def nltk_fit(sents, model_cls=None):
    from nltk.lm import MLE
    from nltk.lm.preprocessing import padded_everygram_pipeline

    train, vocab = padded_everygram_pipeline(ORDER, sents)
    model = (model_cls or MLE)(ORDER)
    model.fit(train, vocab)
    return model


def nltk_generate(model, max_tokens: int, budget: float, seed: int = 0) -> tuple[int, float, int]:
    """Generate token by token, restarting after </s>; returns (tokens, seconds, sentences ended)."""
    rng = random.Random(seed)
    ctx = [BOS, BOS]
    k = ended = 0
    t0 = time.perf_counter()
    while k < max_tokens and time.perf_counter() - t0 < budget:
        w = model.generate(1, text_seed=ctx, random_seed=rng)
        k += 1
        if w == EOS:
            ended += 1
            ctx = [BOS, BOS]
        else:
            ctx = [ctx[-1], w]
    return k, time.perf_counter() - t0, ended


class _Alarm(Exception):
    pass


def one_token_with_alarm(model, seconds: int) -> tuple[int, float]:
    """Time one generate() call from <s> <s>, giving up (SIGALRM) after ``seconds``."""
    import signal

    def on_alarm(signum, frame):
        raise _Alarm

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    t0 = time.perf_counter()
    try:
        model.generate(1, text_seed=[BOS, BOS], random_seed=random.Random(0))
        return 1, time.perf_counter() - t0
    except _Alarm:
        return 0, time.perf_counter() - t0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def combined(fit_rate, sample_rate):
    if not fit_rate or not sample_rate:
        return None
    return 2.0 / (1.0 / fit_rate + 1.0 / sample_rate)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default=None,
                    help="also time NGramModel as it was at this git revision (same rounds; equal samples asserted)")
    args = ap.parse_args()
    announce()
    from collapselab.models.ngram import NGramModel

    before_cls = None
    if args.against:
        from bench_watermark import module_at

        before_cls = module_at(args.against, "src/collapselab/models/ngram.py").NGramModel

    t0 = time.perf_counter()
    corpus = load_sotu()
    t_corpus = time.perf_counter() - t0
    train = corpus.train
    V = len(corpus.vocab)
    sents = word_lists(corpus.vocab, train)
    n_train = train.n_tokens
    print(f"corpus: {len(train):,} sentences, {n_train:,} tokens, vocab {V:,} (built in {t_corpus:.1f} s)")
    results: dict[str, dict] = {}

    # --- ours and the plain-Python dict trigram, in alternating rounds (the machine is shared: both
    # sides see the same load), best of REPEAT for each timing
    best = {k: float("inf") for k in ("ours fit", "ours sample", "dict fit", "dict sample")}
    if before_cls is not None:
        best.update({"before fit": float("inf"), "before sample": float("inf")})
    for rnd in range(REPEAT):
        model = NGramModel(order=ORDER, vocab_size=V)
        t, _ = timed(lambda: model.fit(train))
        best["ours fit"] = min(best["ours fit"], t)
        t, smp = timed(lambda: model.sample(N_SAMPLE, rng=np.random.default_rng(0)))
        best["ours sample"] = min(best["ours sample"], t)
        n_gen_ours = smp.n_tokens + int(np.count_nonzero(smp.lengths < model.max_len))  # words + </s>
        ours_len = float(smp.lengths.mean())
        model = None  # free before the peers run
        gc.collect()
        if before_cls is not None:  # the same model at another revision: it must draw the same samples
            old = before_cls(order=ORDER, vocab_size=V)
            t, _ = timed(lambda: old.fit(train))
            best["before fit"] = min(best["before fit"], t)
            t, old_smp = timed(lambda: old.sample(N_SAMPLE, rng=np.random.default_rng(0)))
            best["before sample"] = min(best["before sample"], t)
            assert np.array_equal(old_smp.tokens, smp.tokens) and np.array_equal(old_smp.offsets, smp.offsets)
            old = old_smp = None
            gc.collect()
        smp = None
        dm = DictTrigram()
        t, _ = timed(lambda: dm.fit(sents))
        best["dict fit"] = min(best["dict fit"], t)
        t, out = timed(lambda: dm.sample(N_SAMPLE, random.Random(0)))
        best["dict sample"] = min(best["dict sample"], t)
        n_gen_dict = sum(map(len, out))
        dict_len = float(np.mean([len(s) - (s[-1] == EOS) for s in out]))
        dm = out = None
        gc.collect()
        print(f"round {rnd + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()) + " (best so far)")
    results["ours"] = dict(
        fit_tokens=n_train, fit_s=best["ours fit"], sample_tokens=n_gen_ours, sample_s=best["ours sample"],
        mean_sentence_len=ours_len,
    )
    results["dict-trigram (plain Python)"] = dict(
        fit_tokens=n_train, fit_s=best["dict fit"], sample_tokens=n_gen_dict, sample_s=best["dict sample"],
        mean_sentence_len=dict_len,
    )
    if before_cls is not None:
        results[f"ours at {args.against} (same samples)"] = dict(
            fit_tokens=n_train, fit_s=best["before fit"], sample_tokens=n_gen_ours, sample_s=best["before sample"],
            mean_sentence_len=ours_len,
        )
    print(f"ours: fit {best['ours fit']:.2f} s, sample {N_SAMPLE} sentences ({n_gen_ours:,} tokens) {best['ours sample']:.2f} s")
    print(f"dict-trigram: fit {best['dict fit']:.2f} s, sample {n_gen_dict:,} tokens {best['dict sample']:.2f} s")

    # --- nltk.lm MLE (fit on everything unless projected to take too long)
    probe = sents[:5_000]
    n_probe = sum(map(len, probe))
    t_probe, _ = timed(lambda: nltk_fit(probe))
    projected = t_probe * n_train / n_probe
    fit_sents, note = sents, "all tokens"
    if projected > NLTK_FIT_LIMIT:
        k = max(1, int(len(sents) * NLTK_FIT_LIMIT / projected))
        fit_sents, note = sents[:k], f"first {k:,} sentences (projected {projected:.0f} s on all)"
    n_fit = sum(map(len, fit_sents))
    t_fit, nmodel = timed(lambda: nltk_fit(fit_sents))
    k, t_gen, ended = nltk_generate(nmodel, NLTK_GEN_TOKENS, NLTK_GEN_BUDGET)
    results["nltk.lm MLE"] = dict(
        fit_tokens=n_fit, fit_s=t_fit, sample_tokens=k, sample_s=t_gen, note=f"fit on {note}",
        mean_sentence_len=(k - ended) / ended if ended else None,
    )
    print(f"nltk MLE: fit {n_fit:,} tokens {t_fit:.1f} s ({note}); generate {k} tokens {t_gen:.1f} s")

    # --- nltk.lm KneserNeyInterpolated: same counts as MLE; generation on small slices
    from nltk.lm import KneserNeyInterpolated

    kn = KneserNeyInterpolated(ORDER, vocabulary=nmodel.vocab, counter=nmodel.counts)
    k, t_gen = one_token_with_alarm(kn, KN_FULL_ALARM)  # a single token on the full model, if it ends
    results["nltk.lm KneserNeyInterpolated (full model)"] = dict(
        fit_tokens=n_fit, fit_s=t_fit, sample_tokens=k, sample_s=t_gen,
        note="same counts as MLE; one token from <s> <s>"
        + ("" if k else f": not finished after {t_gen:.0f} s (stopped), sample rate < {1 / t_gen:.3f} tok/s"),
    )
    print(f"nltk KN, full model: {'1 token in' if k else 'no token after'} {t_gen:.1f} s")
    del kn, nmodel
    gc.collect()
    for ns in KN_SLICES:
        sl = sents[:ns]
        n_sl = sum(map(len, sl))
        t_fit, kn = timed(lambda: nltk_fit(sl, KneserNeyInterpolated))
        k, t_gen, _ = nltk_generate(kn, KN_MAX_TOKENS, KN_BUDGET)
        results[f"nltk.lm KneserNeyInterpolated ({ns:,} sentences)"] = dict(
            fit_tokens=n_sl, fit_s=t_fit, sample_tokens=k, sample_s=t_gen,
            note=f"fit and generate on the first {ns:,} sentences ({n_sl:,} tokens) only",
        )
        print(f"nltk KN, {ns} sentences: generate {k} tokens in {t_gen:.1f} s")
        del kn

    # --- rates and ratios
    for r in results.values():
        r["fit_rate"] = r["fit_tokens"] / r["fit_s"]
        r["sample_rate"] = r["sample_tokens"] / r["sample_s"] if r["sample_tokens"] else None
        r["combined_rate"] = combined(r["fit_rate"], r["sample_rate"])
    ours = results["ours"]
    for name, r in results.items():
        r["ours_over_peer"] = {
            m: (ours[f"{m}_rate"] / r[f"{m}_rate"]) if r.get(f"{m}_rate") else None
            for m in ("fit", "sample", "combined")
        }
    rows = []
    for name, r in results.items():
        q = r["ours_over_peer"]
        rows.append([
            name, f"{r['fit_tokens']:,}", fmt_rate(r["fit_rate"]), f"{r['sample_tokens']:,}",
            fmt_rate(r["sample_rate"]), fmt_rate(r["combined_rate"]),
            fmt_ratio(q["fit"]), fmt_ratio(q["sample"]), fmt_ratio(q["combined"]),
        ])
    print_table(
        "order-3 n-gram: tokens/s (higher is better); ratios = ours / peer",
        ["model", "fit tokens", "fit tok/s", "gen tokens", "sample tok/s", "fit+sample tok/s",
         "fit ×", "sample ×", "fit+sample ×"],
        rows,
    )
    for name, r in results.items():
        if r.get("note"):
            print(f"  {name}: {r['note']}")
    targets = {
        "combined >= 50x nltk.lm MLE": results["nltk.lm MLE"]["ours_over_peer"]["combined"],
        "combined >= 10x dict-trigram": results["dict-trigram (plain Python)"]["ours_over_peer"]["combined"],
    }
    checks = {}
    for (label, ratio), need in zip(targets.items(), (50.0, 10.0)):
        ok = ratio is not None and ratio >= need
        checks[label] = {"ratio": ratio, "target": need, "met": ok}
        print(f"target {label}: {ratio:,.1f}x -> {'MET' if ok else 'MISSED'}")
    print("mean sentence length (sanity): " + ", ".join(
        f"{n}: {r['mean_sentence_len']:.1f}" for n, r in results.items() if r.get("mean_sentence_len")
    ) + f"; human: {float(train.lengths.mean()):.1f}")
    write_json("bench_ngram", {
        "corpus": {"sentences": len(train), "tokens": n_train, "vocab": V, "build_s": t_corpus},
        "settings": {"order": ORDER, "n_sample_sentences": N_SAMPLE, "repeat_best_of": REPEAT},
        "results": results,
        "targets": checks,
    })


if __name__ == "__main__":
    main()
