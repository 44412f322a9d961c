"""Lexical diversity metrics: speed and agreement, collapselab vs lexicalrichness vs collections.Counter.

Data, two token streams of ~1.9 M tokens each:

- human: the default corpus, all of it (every State of the Union address, tokenised by
  collapselab, cut into sentences);
- generated: as many sentences sampled from an order-3 ``NGramModel`` fitted on the human ones
  (what a generation of the loop is measured on).

Metrics: TTR, MATTR (window 500) on the sentences back to back, distinct-1/2/3 (n-grams inside
sentences). Who gets what (built outside the timings, each side's natural input):

- ours (``collapselab.metrics.lexical``): the int32 id array / ``TokenSequences``;
- ``lexicalrichness``: ``LexicalRichness(words, preprocessor=None, tokenizer=None)`` on the flat
  Python list of the very same words. Its default path lower-cases, deletes digits and hyphens and
  splits on punctuation, i.e. it would re-tokenise and count other words; with ``tokenizer=None``
  it takes the list as is. The TTR timing includes the constructor (that is where it builds the
  set of types); it has no distinct-n. Its default-tokeniser result is printed for information;
- Counter: plain Python written below: TTR ``len(Counter(words)) / len(words)``, MATTR with an
  incremental sliding-window Counter (O(n), the fastest simple pure-Python way), distinct-n
  ``len(Counter(n-grams)) / total`` with n-grams taken within sentences (lists of words).

Agreement: every peer value must equal ours within 1e-9.

Run: ``python bench/bench_metrics.py`` (writes bench/out/bench_metrics.json). About 1-2 minutes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import announce, fmt_rate, fmt_ratio, load_sotu, print_table, timed, word_lists, write_json  # noqa: E402

WINDOW = 500
REPEAT_OURS = 3
REPEAT_PEER = 3  # best-of for a peer whose first run takes under CHEAP_S; slower ones run once
CHEAP_S = 2.0
TOL = 1e-9
TARGET = 20.0


# ----------------------------------------------------------------------------- Counter peer
def counter_ttr(words: list[str]) -> float:
    return len(Counter(words)) / len(words)


def counter_mattr(words: list[str], window: int) -> float:
    n = len(words)
    if n <= window:
        return counter_ttr(words)
    c = Counter(words[:window])
    total = len(c)
    for i in range(window, n):
        old = words[i - window]
        k = c[old] - 1
        if k:
            c[old] = k
        else:
            del c[old]
        c[words[i]] += 1
        total += len(c)
    return total / ((n - window + 1) * window)


def counter_distinct(sents: list[list[str]], n: int) -> float:
    c: Counter = Counter()
    total = 0
    for s in sents:
        if len(s) >= n:
            c.update(zip(*(s[i:] for i in range(n))) if n > 1 else s)
            total += len(s) - n + 1
    return len(c) / total if total else 0.0


# ----------------------------------------------------------------------------- bench
def bench_stream(label: str, seqs, vocab) -> list[dict]:
    from lexicalrichness import LexicalRichness

    from collapselab.metrics import lexical

    V = len(vocab)
    tokens = seqs.tokens
    sents = word_lists(vocab, seqs)
    words = [w for s in sents for w in s]
    n = len(words)
    assert n == len(tokens)
    rows: list[dict] = []

    def add(metric, ours_fn, peers, n_tok):
        t_ours, v_ours = timed(ours_fn, REPEAT_OURS)
        for peer, fn in peers:
            t_peer, v_peer = timed(fn, 1)
            if t_peer < CHEAP_S:
                t_peer = min(t_peer, timed(fn, REPEAT_PEER - 1)[0])
            diff = abs(v_ours - v_peer)
            rows.append(dict(
                data=label, metric=metric, peer=peer, tokens=n_tok,
                ours_s=t_ours, peer_s=t_peer, ours_rate=n_tok / t_ours, peer_rate=n_tok / t_peer,
                ratio=t_peer / t_ours, ours_value=v_ours, peer_value=v_peer, abs_diff=diff,
                agree=diff <= TOL,
            ))
            print(f"  {label:9s} {metric:11s} vs {peer:15s}: ours {t_ours * 1e3:8.1f} ms, "
                  f"peer {t_peer * 1e3:9.1f} ms, {t_peer / t_ours:7.1f}x, |diff| {diff:.1e}")

    lr_list = lambda: LexicalRichness(words, preprocessor=None, tokenizer=None)  # noqa: E731
    lr = lr_list()
    add("TTR", lambda: lexical.ttr(tokens), [
        ("lexicalrichness", lambda: lr_list().ttr),
        ("Counter", lambda: counter_ttr(words)),
    ], n)
    add(f"MATTR({WINDOW})", lambda: lexical.mattr(tokens, WINDOW), [
        ("lexicalrichness", lambda: lr.mattr(window_size=WINDOW)),
        ("Counter", lambda: counter_mattr(words, WINDOW)),
    ], n)
    for k in (1, 2, 3):
        add(f"distinct-{k}", lambda: lexical.distinct_n(seqs, k, V), [
            ("Counter", lambda: counter_distinct(sents, k)),
        ], n)
    # information only: lexicalrichness' own tokeniser on the same text
    text = " ".join(words)
    t_def, lr_def = timed(lambda: LexicalRichness(text))
    info = dict(
        data=label, default_tokenizer_words=lr_def.words, default_tokenizer_terms=lr_def.terms,
        default_tokenizer_ttr=lr_def.ttr, collapselab_words=n, collapselab_ttr=lexical.ttr(tokens),
        seconds=t_def,
    )
    print(f"  {label}: lexicalrichness' default tokeniser on ' '.join(words) sees {lr_def.words:,} words, "
          f"{lr_def.terms:,} types, TTR {lr_def.ttr:.6f} (collapselab: {n:,} words, TTR {info['collapselab_ttr']:.6f})")
    rows.append({"info": info})
    return rows


def main() -> None:
    announce()
    from collapselab.models.ngram import NGramModel

    t0 = time.perf_counter()
    corpus = load_sotu()
    human = corpus.train
    print(f"corpus: {len(human):,} sentences, {human.n_tokens:,} tokens, vocab {len(corpus.vocab):,} "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    gen = NGramModel(order=3, vocab_size=len(corpus.vocab)).fit(human).sample(len(human), rng=np.random.default_rng(0))
    print(f"generated: {len(gen):,} sentences, {gen.n_tokens:,} tokens")
    rows = bench_stream("human", human, corpus.vocab) + bench_stream("generated", gen, corpus.vocab)
    info = [r["info"] for r in rows if "info" in r]
    rows = [r for r in rows if "info" not in r]
    table = [[
        r["data"], r["metric"], r["peer"], fmt_rate(r["ours_rate"]), fmt_rate(r["peer_rate"]), fmt_ratio(r["ratio"]),
        f"{r['ours_value']:.9f}", f"{r['abs_diff']:.1e}", "yes" if r["agree"] else "NO",
    ] for r in rows]
    print_table(
        "lexical metrics: tokens/s (higher is better); ratio = peer time / our time",
        ["data", "metric", "peer", "ours tok/s", "peer tok/s", "ours ×", "value", "|diff|", "agree"],
        table,
    )
    missed = [r for r in rows if r["ratio"] < TARGET]
    disagree = [r for r in rows if not r["agree"]]
    print(f"target >= {TARGET:.0f}x the peers: "
          + ("MET on every row" if not missed else "MISSED on " + ", ".join(
              f"{r['data']} {r['metric']} vs {r['peer']} ({r['ratio']:.1f}x)" for r in missed)))
    print("agreement within 1e-9: " + ("all rows" if not disagree else "FAILED on " + ", ".join(
        f"{r['data']} {r['metric']} vs {r['peer']}" for r in disagree)))
    write_json("bench_metrics", {
        "settings": {"window": WINDOW, "repeat_ours_best_of": REPEAT_OURS, "repeat_peer_best_of": REPEAT_PEER,
                     "peer_repeated_if_under_s": CHEAP_S,
                     "tolerance": TOL, "target_ratio": TARGET},
        "results": rows,
        "lexicalrichness_default_tokenizer": info,
        "targets": {"min_ratio": min(r["ratio"] for r in rows), "met": not missed, "all_agree": not disagree},
    })


if __name__ == "__main__":
    main()
