"""Issue 11.5: do deployed text watermarks speed model collapse? The loop samples with each scheme.

Our own green-list watermark speeds collapse under `ngram` ("A watermark through the loop" in
docs/results.md: diversity at generation 5 falls further with it). This script asks the same of the
schemes deployed engines emit, through the `gpt` family (which samples with any scheme's logits
processor, in its BPE pieces): transformers' KGW (`hf-kgw`, lefthash, green share 0.25, bias 2),
transformers' SynthID Text (`synthid`, 5-grams, 10 keys, weighted-mean score), and vLLM's
distortion-free Gumbel-max sampling (`gumbel`, context 4; `gumbel-dual` with --dual), each against
the same loop without a watermark. Every generation samples with the scheme and learns from what
the one before it wrote (`replace`), or from that with 10% human data (`anchor:0.1`).

Measures, per (scheme, policy), over 5 seeds that each draw their own human data
(`--resample-data`), mean ± the half-width of the 95% t interval:

* diversity at the last generation as a share of generation 0's (the output's vocabulary size,
  the metric of our watermark claim), and held-out perplexity there;
* the share of the last generation's sentences the scheme flags (p <= 0.01) and its pooled z
  (:mod:`collapselab.loop.engine`): whether the mark survives the loop.

Verdict per scheme and policy, paired by seed (the arms of a seed share its draw of human data): it
speeds collapse when the 95% t interval of the per-seed differences in diversity (scheme minus no
watermark) lies below 0, slows it when above, and is not told apart otherwise.
Writes the "watermark-loop" section of docs/results.md.

    python bench/watermark_loop.py              # 5 seeds x 2 policies x 5 generations x 4 arms: ~17 min on 2 shared cores
    python bench/watermark_loop.py --dual       # also gumbel-dual (one more arm)
    python bench/watermark_loop.py --quick      # a smoke test: tiny sizes, 2 generations, nothing written

The run folders (bench/out/watermark_loop/) are kept: a rerun with the same settings resumes an
unfinished arm, or only rebuilds the tables. Keys are derived from a fixed seed, so a rerun
watermarks with the same keys.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, ci, pm, run_or_load, seeds_arg, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ["replace", "anchor:0.1"]
KEY_SEED = 20261105  # the schemes' keys are drawn from this seed (fixed: a rerun uses the same keys)
# gpt small enough for 4 arms x 5 seeds x 2 policies x 5 generations in ~20 minutes on 2 shared cores
MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "bpe_vocab": 1500, "epochs": 4, "batch_size": 16,
         "lr": 1e-2, "max_len": 30}
SIZES = {"train_items": 300, "holdout_items": 200}
SYNTHID_KEYS = 10  # the reference configs use 30; its processor's cost grows with them (10: a third)
QUICK_MODEL = {**MODEL, "n_layer": 1, "n_embd": 16, "bpe_vocab": 400, "epochs": 1}
QUICK_SIZES = {"train_items": 200, "holdout_items": 100}
SPECS = {  # scheme name -> spec fields besides scheme and key_file (each reference's defaults otherwise)
    "hf-kgw": {"seeding_scheme": "lefthash"},
    "synthid": {"ngram_len": 5},
    "gumbel": {"context_width": 4},
    "gumbel-dual": {"context_width": 4},
}
LABEL = {"none": "no watermark", "hf-kgw": "hf-kgw (KGW lefthash, γ 0.25, δ 2)", "synthid": f"synthid (5-grams, {SYNTHID_KEYS} keys)",
         "gumbel": "gumbel (vLLM Gumbel-max, context 4)", "gumbel-dual": "gumbel-dual (two keys, α 0.1)"}


def write_specs(folder: Path, schemes: list[str]) -> dict[str, Path]:
    """A spec and a 0600 key file per scheme, the keys drawn from ``KEY_SEED`` (kept if present)."""
    from collapselab.detect.schemes.spec import write_key

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(KEY_SEED)
    keys = {"hf-kgw": int(rng.integers(2**62)), "synthid": [int(k) for k in rng.integers(2**62, size=SYNTHID_KEYS)],
            "gumbel": int(rng.integers(2**63))}
    paths = {}
    for name in schemes:
        base = "gumbel" if name.startswith("gumbel") else name
        key = folder / f"{base}.key"
        if not key.exists():
            write_key(base, key, keys[base])
        spec = folder / f"{name}.json"
        spec.write_text(json.dumps({"scheme": name, "key_file": key.name, **SPECS[name]}) + "\n", encoding="utf-8")
        paths[name] = spec.resolve()
    return paths


def per_seed(run, policy: str, g: int, col: str, relative: bool = False) -> np.ndarray:
    m = run.metrics[run.metrics.policy == policy].set_index(["seed", "generation"])[col]
    seeds = sorted(run.metrics.seed.unique())
    v = np.array([m[(s, g)] for s in seeds], dtype=float)
    return v / np.array([m[(s, 0)] for s in seeds], dtype=float) if relative else v


def compare(a, b) -> str:
    """``a`` against ``b``, paired by seed (each seed's arms share its draw of human data, so the
    data's own variation cancels): below, above, or not told apart by the 95% t interval of the
    per-seed differences ``a - b``."""
    from collapselab.metrics.verdicts import mean_interval

    d = mean_interval(np.asarray(a) - np.asarray(b))
    return "below" if d.high < 0 else "above" if d.low > 0 else "overlap"


def signed(values) -> str:
    """Per-seed differences (shares) as ``+m ± h points`` (the 95% t interval's half-width)."""
    m, hw = ci(np.asarray(values, dtype=float) * 100)
    return f"{m:+.0f} ± {hw:.0f} points"


VERDICT = {"below": "**speeds collapse** (paired difference below 0)", "above": "slows collapse (paired difference above 0)",
           "overlap": "not told apart from no watermark (paired difference interval holds 0)"}


def tables(runs: dict, G: int) -> tuple[str, list[str], dict]:
    none = runs["none"]
    lines = ["| scheme | policy | diversity at gen " + str(G) + " (vs gen 0) | held-out ppl at gen " + str(G)
             + " | flagged at gen 0 | flagged at gen " + str(G) + " | pooled z at gen " + str(G)
             + " | diversity minus no watermark's (paired by seed) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    verdicts, outcome = [], {}
    for name, run in runs.items():
        for p in POLICIES:
            div = per_seed(run, p, G, "vocab_size", True)
            ppl = per_seed(run, p, G, "ppl_holdout")
            marked = name != "none"
            f0 = pm(per_seed(run, p, 0, "watermark_flagged_share"), ".0f", 100, "%") if marked else "-"
            fG = pm(per_seed(run, p, G, "watermark_flagged_share"), ".0f", 100, "%") if marked else "-"
            zG = pm(per_seed(run, p, G, "watermark_z"), ",.0f") if marked else "-"
            vs = "-"
            if marked:
                base = per_seed(none, p, G, "vocab_size", True)
                outcome[(name, p)] = compare(div, base), compare(ppl, per_seed(none, p, G, "ppl_holdout"))
                word = {"below": "lower", "above": "higher", "overlap": "holds 0"}[outcome[(name, p)][0]]
                vs = f"{signed(div - base)} ({word})"
            lines.append(f"| {LABEL[name] if p == POLICIES[0] else ''} | {p} | {pm(div, '.0f', 100, '%')} | {pm(ppl, ',.0f')} | "
                         f"{f0} | {fG} | {zG} | {vs} |")
    for name in runs:
        if name == "none":
            continue
        parts = []
        for p in POLICIES:
            d, q = outcome[(name, p)]
            div = pm(per_seed(runs[name], p, G, "vocab_size", True), ".0f", 100, "%")
            base = pm(per_seed(none, p, G, "vocab_size", True), ".0f", 100, "%")
            ppl_word = {"below": "lower", "above": "higher", "overlap": "not told apart"}[q]
            diff = signed(per_seed(runs[name], p, G, "vocab_size", True) - per_seed(none, p, G, "vocab_size", True))
            parts.append(f"`{p}`: {VERDICT[d]}, diversity {div} against {base}, difference {diff}; held-out perplexity {ppl_word}")
        verdicts.append(f"- **{name}**: " + "; ".join(parts) + ".")
    return "\n".join(lines), verdicts, outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=[0, 1, 2, 3, 4])
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--dual", action="store_true", help="also run gumbel-dual")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 2 generations; writes nothing to docs/")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--train-items", type=int, default=SIZES["train_items"], help="human sentences per seed")
    ap.add_argument("--model", type=json.loads, default={}, metavar="JSON",
                    help='gpt settings over the defaults, e.g. \'{"n_layer": 2, "n_embd": 64, "bpe_vocab": 4000}\' '
                         "(a stronger model than the default toy one; its own --out folder)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "watermark_loop")
    args = ap.parse_args()
    G = 2 if args.quick else args.generations
    out = args.out / "quick" if args.quick else args.out
    schemes = ["hf-kgw", "synthid", "gumbel"] + (["gumbel-dual"] if args.dual else [])
    specs = write_specs(out / "specs", schemes)
    common = {"family": "gpt", "seeds": args.seeds, "resample_data": True, "generations": G, "policies": POLICIES,
              **(QUICK_SIZES if args.quick else {**SIZES, "train_items": args.train_items}),
              "model": QUICK_MODEL if args.quick else {**MODEL, **args.model}}
    runs = {}
    for name in ["none", *schemes]:
        print(f"arm {name}", flush=True)
        config = common if name == "none" else {**common, "watermark": str(specs[name])}
        runs[name] = run_or_load(config, out / name, args.jobs)
    seconds = {name: run.summary["seconds"] for name, run in runs.items()}  # each arm's own run, even when reloaded
    table, verdicts, outcome = tables(runs, G)
    s = runs["none"].summary["corpus"]
    mp = runs["none"].config.model
    took = sum(seconds.values())
    ppl0 = pm(per_seed(runs["none"], POLICIES[0], 0, "ppl_holdout"), ",.0f")
    seeds = f"{args.seeds[0]}-{args.seeds[-1]}" if args.seeds == list(range(args.seeds[0], args.seeds[-1] + 1)) else ",".join(map(str, args.seeds))
    speeds = [n for n in schemes if any(outcome[(n, p)][0] == "below" for p in POLICIES)]
    gumbel_safe = all(outcome[("gumbel", p)][0] != "below" for p in POLICIES)
    width = ", ".join(f"`{p}` ± {ci(per_seed(runs['gumbel'], p, G, 'vocab_size', True) - per_seed(runs['none'], p, G, 'vocab_size', True))[1]:.0%}" for p in POLICIES)
    custom = args.model or args.train_items != SIZES["train_items"]
    title = "Deployed watermarks through the loop" + (f", a larger model ({len(args.seeds)} seeds)" if custom else f" ({len(args.seeds)} seeds)")
    doc = f"""## {title} (issue 11.5)

Produced by `python bench/watermark_loop.py{' --dual' if args.dual else ''}{'' if args.train_items == SIZES['train_items'] else f' --train-items {args.train_items}'}{" --model '" + json.dumps(args.model) + "'" if args.model else ''}` ({time.strftime('%Y-%m-%d')}; {took / 60:.0f} min on this
2-core machine, shared with other work). Each arm is
`collapselab run --family gpt --seeds {seeds} --resample-data --policy replace,anchor:0.1 -g {G} --watermark SPEC`
(or no `--watermark`): `gpt` with {mp['n_layer']} layers, {mp['n_head']} heads, width {mp['n_embd']}, {mp['bpe_vocab']:,} BPE pieces, context
{mp['block_size']}, {mp['epochs']:g} epochs per generation, fine-tuned from generation 0's weights; {s['train_items']:,} human sentences per seed
(each seed its own draw), sentences of at most {mp['max_len']} words sampled at temperature 1; held-out perplexity per word on
{s['holdout_items']:,} held-out sentences. Every generation samples with the scheme (its logits processor last, after
temperature and truncation, in the model's BPE pieces), so each generation learns from watermarked text. Sizes are smaller
than the `gpt` reproductions' so that the {len(runs)} arms fit in the script's 25-minute budget.

Diversity is the output's vocabulary size as a share of the same run's generation 0 (the metric of the
ngram watermark claim above); "flagged" is the share of sentences whose p-value is at most 0.01;
pooled z is the z-score of all the generation's scored tokens together (SynthID: Stouffer's combination
of the sentences' p-values). Mean ± the half-width of the 95% t interval over {len(args.seeds)} seeds.

{table}

Verdicts (diversity at generation {G} against the loop without a watermark, the same policy):

{chr(10).join(verdicts)}

{'Schemes whose paired difference lies below 0 somewhere: ' + ', '.join(speeds) + '.' if speeds else 'No scheme speeds collapse measurably here: every paired difference interval holds 0 or lies above it.'}
Is the distortion-free Gumbel scheme safe? {'Not shown unsafe: its diversity at generation ' + str(G) + ' is not below the unwatermarked loop under either policy (the interval of the paired differences holds 0). That is no proof of safety: with ' + str(len(args.seeds)) + ' seeds of toy models the paired intervals are ' + width + ' wide, so only a larger effect would have shown.' if gumbel_safe else 'No: its diversity at generation ' + str(G) + ' falls below the unwatermarked loop (the paired difference lies below 0).'}
How the schemes differ: KGW adds a bias to a key's green tokens and SynthID tilts the distribution
towards a key's favoured tokens, so both change what the model samples; Gumbel-max sampling draws each
token from the model's own distribution (over keys), but with the key fixed the token is a function of
the last {SPECS['gumbel']['context_width']} tokens, and vLLM samples a context it has already seen in the text without the watermark.

Caveats: these are toy models. Generation 0's held-out perplexity is {ppl0} per word (the pretrained `gpt` of
Reproduction 1d reaches a few hundred), and a large share of the words it writes
are not words of the corpus (read back as `<unk>`). The schemes are detected in the words' BPE pieces
re-encoded from the words (as any detector re-tokenises text), so a word the model spelled in other
pieces, or invented, breaks the evidence around it: the flagged shares are lower than in the pieces
the sampler emitted. SynthID runs with {SYNTHID_KEYS} keys instead of the reference configs' 30, for time.

Seconds per arm: {', '.join(f'{n} {seconds[n]:.0f}' for n in runs)}.
"""
    print(doc)
    if not args.quick:
        # the default (toy) run and a run with other sizes each keep their own section
        write_section(ROOT / "docs" / "results.md", "watermark-loop-larger" if custom else "watermark-loop", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
