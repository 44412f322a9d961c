"""Reproduction 2 (issues 3 and 13): the shape of MAD (Alemohammad et al., ICLR 2024) on digits.

Two experiments per image family, each a run of the loop over 10 generations and 5 seeds, every seed drawing
its own generation-0 images and held-out split (`resample_data`; `--shared-data` for one split shared by all seeds):

1. **Loops** (MAD Fig. 4 and 10, and the synthetic augmentation loop): MAD's three loops as the paper defines them, and one more.
   - fully synthetic (`replace`): generation g trains on generation g-1's output only;
   - synthetic augmentation (`accumulate`): the fixed real training set plus every earlier generation's
     output, the pool growing by one output (as many images as the real set) a generation: MAD's
     D_t = D_r + D_s^1 + ... + D_s^(t-1), n_s = n_r (their StyleGAN run: 70k real, (t-1) x 70k synthetic);
   - fresh data (`fresh:0.2`): a fifth of each training set real images never seen before, the rest
     generation g-1's output (n_r = 100, n_s = 400 at 500 images a generation);
   - a constant real share (`anchor:0.2`, not one of MAD's loops: Shumailov et al.'s "keep 10%"):
     a fifth drawn afresh from the same 500 real images, the rest generation g-1's output.
   FID and recall per generation; each loop's verdict weighs the seeds' spread
   (collapselab.metrics.verdicts.trend: the slope of FID over the second half, with its 95% interval).
2. **Sampling bias** (MAD Fig. 6): the fully synthetic loop sampled at λ = 1, 0.7 and 0.5 (each
   family's own knob: component / latent / noise variance scaled by λ). Precision and recall.

Writes the "images" section of docs/results.md and one figure per family
(docs/figures/repro_images_<family>.png: the sample grids of generations 0, 1, 3, 10), keeps each
family's loop metrics in docs/data/repro_images_<family>/, and writes README.md's image-results
paragraph from the kept metrics of every family there (ddpm's come from a GPU machine).

    python bench/repro_images.py                       # gmm and vae
    python bench/repro_images.py --families ddpm --device cuda   # the diffusion model, on a GPU
    python bench/repro_images.py --families ddpm --metrics-from docs/data/repro_images_ddpm --where "..." --shared-data
                    # its tables, here (--shared-data: that run, 3 seeds, shared one split of real images)
    python bench/repro_images.py --generations 30 --train-items 180 --no-bias   # the loops over a longer
                    # horizon: does fixed real data only delay collapse? (fresh:0.2 needs 0.2 x 180 x 30 = 1,080
                    # unseen digits; 1,317 are left beside the 180 trained on and the 300 held out)

Run folders are kept under bench/out/repro_images/ (a rerun resumes or reuses them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, SEEDS, pm, run_or_load, seeds_arg, write_section  # noqa: E402

from collapselab.metrics.verdicts import trend_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data"  # each family's kept metrics: DATA/repro_images_<family>/ (what --metrics-from reads)
LOOPS = {"replace": "fully synthetic", "accumulate": "synthetic augmentation", "fresh:0.2": "fresh data 20%",
         "anchor:0.2": "constant real share 20%"}  # MAD's three loops, then one that is not MAD's
BIASES = [1.0, 0.7, 0.5]  # MAD's values: 0.7 (StyleGAN truncation), 0.5 (DDPM guidance)


def cell(df: pd.DataFrame, metric: str, fmt: str) -> str:
    return pm(df[metric], fmt) if len(df) else "not run"


def loops_table(m: pd.DataFrame, gens: list[int]) -> str:
    head = " | ".join(f"{name}: FID | {name}: recall" for name in LOOPS.values())
    lines = [f"| generation | {head} |", "| ---: |" + " ---: |" * (2 * len(LOOPS))]
    for g in gens:
        cells = []
        for p in LOOPS:
            d = m[(m.policy == p) & (m.generation == g)]
            cells += [cell(d, "fid", ".1f"), cell(d, "recall", ".2f")]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_table(runs: dict[float, pd.DataFrame], gens: list[int]) -> str:
    head = " | ".join(f"λ={b:g}: {x}" for b in runs for x in ("precision", "recall", "FID"))
    lines = [f"| generation | {head} |", "| ---: |" + " ---: |" * (3 * len(runs))]
    for g in gens:
        cells = []
        for m in runs.values():
            d = m[m.generation == g]
            cells += [cell(d, "precision", ".2f"), cell(d, "recall", ".2f"), cell(d, "fid", ".1f")]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_at(m: pd.DataFrame, metric: str, g: int, policy: str | None = None) -> float:
    d = m[m.generation == g] if policy is None else m[(m.policy == policy) & (m.generation == g)]
    return float(d[metric].mean())


def says(ok: bool | None) -> str:
    """A claim's verdict: True holds, False does not, None the seeds cannot tell."""
    return "holds here" if ok else "**undetermined here**" if ok is None else "**does not hold here**"


def loop_findings(m: pd.DataFrame, G: int) -> list[str]:
    """MAD's loop claims, each checked against this run's numbers. Whether a loop still rises or has
    settled is :func:`collapselab.metrics.verdicts.trend` of its FID over the second half, over seeds."""
    fid0, rec0 = mean_at(m, "fid", 0, "replace"), mean_at(m, "recall", 0, "replace")
    f = {p: mean_at(m, "fid", G, p) for p in LOOPS}
    r = {p: mean_at(m, "recall", G, p) for p in LOOPS}
    t = {p: trend_of(m[m.policy == p], "fid") for p in LOOPS if (m.policy == p).any()}
    prec = (mean_at(m, "precision", 0, "replace"), mean_at(m, "precision", G, "replace"))
    out = [f"- Fully synthetic, `replace`, λ = 1 (MAD Fig. 4: FID rises, precision and recall fall): FID {fid0:.1f} → "
           f"{f['replace']:.1f} ({f['replace'] / fid0:.1f}×), precision {prec[0]:.2f} → {prec[1]:.2f}, recall {rec0:.2f} → "
           f"{r['replace']:.2f}; FID's {t['replace'].describe()}: "
           f"{says(f['replace'] > fid0 and r['replace'] < rec0 and prec[1] <= prec[0])}."]
    if "accumulate" in t:
        acc = t["accumulate"]
        between = fid0 < f["accumulate"] < f["replace"] and r["replace"] < r["accumulate"] < rec0
        out.append(f"- Synthetic augmentation, `accumulate` (MAD: a fixed real set only delays MADness: FID still rises, "
                   f"more slowly than fully synthetic): at generation {G} FID {f['accumulate']:.1f} ({f['accumulate'] / fid0:.1f}× "
                   f"generation 0's) and recall {r['accumulate']:.2f}, between generation 0 and the fully synthetic loop: "
                   f"{'yes' if between else 'no'}; FID's {acc.describe()}: "
                   f"{says(None if between and acc.verdict == 'undetermined' else between and acc.verdict == 'still rising')}.")
    else:
        out.append("- Synthetic augmentation, `accumulate` (MAD's synthetic augmentation loop): **not run** in these metrics.")
    fr = t["fresh:0.2"]
    out.append(f"- Fresh data, `fresh:0.2` (MAD Fig. 10: the loop settles at a bounded distance): FID at generation {G} "
               f"{f['fresh:0.2']:.1f} ({f['fresh:0.2'] / fid0:.1f}× generation 0's, fully synthetic {f['replace']:.1f}), recall "
               f"{r['fresh:0.2']:.2f}; FID's {fr.describe()}: "
               f"{says(None if fr.verdict == 'undetermined' else fr.verdict == 'bounded' and f['fresh:0.2'] < f['replace'])}.")
    if "accumulate" in t:
        pair = (t["accumulate"].verdict, fr.verdict)
        out.append(f"- Augmentation vs fresh data (MAD: without fresh data the loop keeps degrading, with it the loop settles): "
                   f"the augmentation loop is {pair[0]}, the fresh loop {pair[1]}: "
                   f"{says(True if pair == ('still rising', 'bounded') else None if 'undetermined' in pair else False)}.")
    an = t["anchor:0.2"]
    out.append(f"- A constant real share, `anchor:0.2` (not one of MAD's loops: a fifth of every training set drawn afresh from the "
               f"same real images): FID at generation {G} {f['anchor:0.2']:.1f} ({f['anchor:0.2'] / fid0:.1f}×), recall "
               f"{r['anchor:0.2']:.2f}; FID's {an.describe()}.")
    return out


def kept(m: pd.DataFrame) -> float:
    """Recall's mean over generations 1..G relative to generation 0's."""
    r = m.groupby("generation")["recall"].mean()
    return float(r.loc[1:].mean() / r.loc[0])


def bias_verdict(keep: float, keep1: float) -> str:
    return ("falls faster under bias, as MAD found" if keep < keep1 - 0.02 else "**not faster under bias here** (within 2 points)"
            if keep <= keep1 + 0.02 else "**slower under bias here**")


def bias_findings(runs: dict[float, pd.DataFrame], G: int) -> list[str]:
    """MAD Fig. 6: under bias precision holds while recall falls faster; each λ < 1 against λ = 1.
    How fast recall falls: its mean over generations 1..G relative to generation 0's (1 = no loss,
    0 = gone at once), so two runs that both reach zero still compare by how soon they got there."""
    out = []
    p1, keep1 = mean_at(runs[1.0], "precision", G), kept(runs[1.0])
    for b, m in runs.items():
        if b == 1.0:
            continue
        p0, pG, keep = mean_at(m, "precision", 0), mean_at(m, "precision", G), kept(m)
        out.append(f"- λ = {b:g}: precision {p0:.2f} → {pG:.2f} (λ = 1 ends at {p1:.2f}): "
                   f"{'holds' if p0 - pG <= 0.05 else '**falls**'}; recall over generations 1-{G} averages {keep:.0%} of its "
                   f"generation-0 value (λ = 1: {keep1:.0%}): "
                   f"{bias_verdict(keep, keep1)}.")
    return out


def figure(run_dir: Path, family: str, seed: int, gens: list[int], out: Path) -> Path:
    """The replace chain's sample grids side by side: what visual collapse looks like."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(gens), figsize=(2.6 * len(gens), 2.9))
    for ax, g in zip(np.atleast_1d(axes), gens):
        ax.imshow(np.asarray(Image.open(run_dir / "samples" / "replace" / f"seed{seed}" / f"gen{g:02d}.png")), cmap="gray")
        ax.set_title(f"generation {g}", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{family}, fully synthetic loop (replace), seed {seed}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def family_section(family: str, loops: pd.DataFrame, biased: dict[float, pd.DataFrame] | None, train_items: int,
                   holdout_items: int | None, fig: Path | None, produced_by: str, heading: str = "",
                   resampled: bool = True) -> str:
    seeds = sorted(loops.seed.unique())
    G = int(loops.generation.max())
    gens = sorted({0, 1, 2, 3, 5, G} & set(range(G + 1)))
    held = f"{holdout_items} held-out real ones" if holdout_items else "the held-out real images"
    data = ("each drawing its own real training images and held-out split" if resampled
            else "all sharing one split of real images (the spread is the models' sampling noise only)")
    picture = f"\n![{family} samples by generation](figures/{fig.name})\n" if fig else ""
    bias = "" if biased is None else f"""**Sampling bias, fully synthetic loop.**

{bias_table(biased, gens)}

{chr(10).join(bias_findings(biased, G))}
"""
    return f"""### `{family}`{heading}

{produced_by}. {train_items} real images train generation 0; every generation of `replace`, `fresh:0.2` and `anchor:0.2`
trains on {train_items} images, generation g of `accumulate` on {train_items} × (g + 1) (the real set and g outputs); each is
compared with {held} (FID in the features of a classifier trained once on {'the seed' + chr(39) + 's' if resampled else 'the'} real images; precision and recall
with k = 5). Mean ± the half-width of the 95% t interval over seeds {', '.join(map(str, seeds))}, {data}.

**Loops (λ = 1).**

{loops_table(loops, gens)}

{chr(10).join(loop_findings(loops, G))}

{(bias + picture).lstrip(chr(10))}"""


INTRO = """## Reproduction 2: MAD's self-consuming image loops, on digits

Produced by `python bench/repro_images.py` (gmm and vae, on this 2-core machine; `--generations 30 --train-items 180
--no-bias` for the longer horizon) and, for the diffusion model, `python bench/repro_images.py --families ddpm --device cuda`
on a GPU machine (its metrics kept in docs/data/repro_images_ddpm/, the tables rebuilt here with `--metrics-from`). Every
number and verdict below is computed by the script from those runs. gmm and vae run 5 seeds, each drawing its own
digits (generation 0's training set, the fresh pool, the held-out split), so the 95% intervals include the variation
between draws of real data; the ddpm run is older: 3 seeds sharing one split, without `accumulate` (a rerun needs a
GPU, which this machine lacks).

MAD's three loops (Alemohammad et al., ICLR 2024), as the paper defines them, and what it reported (DDPM on MNIST,
StyleGAN2 on FFHQ):

- **fully synthetic** (`replace`): each generation trains on the previous one's output only. With unbiased sampling
  FID rises steadily and precision and recall both fall (Fig. 4).
- **synthetic augmentation** (`accumulate`): a fixed real set plus the synthetic data of every earlier generation, the
  pool growing by as many images as the real set each generation (MAD: 70 k real FFHQ faces and (t − 1) × 70 k
  synthetic ones; here 500 real digits and g × 500 synthetic ones at generation g). FID still rises and precision
  and recall still fall, more slowly: a fixed real set "only delays" MADness.
- **fresh data** (`fresh:0.2`): each generation n_r real images never seen before plus n_s images from the previous
  generation (here n_r = 100, n_s = 400). The loop settles at a bounded distance from the real distribution (Fig. 10);
  the grid below ("fresh-data admissibility") asks how much synthetic data that allows.

With sampling bias λ < 1, precision holds while recall falls faster than without bias (Fig. 6). The tables also show
`anchor:0.2`, which is **not** one of MAD's loops: a constant real share (a fifth of every training set drawn afresh
from the same real images, the rest the previous generation's output; Shumailov et al. keep 10% this way). Earlier
versions of this page called it MAD's fixed-real loop; it is not, and its results say nothing about MAD's claim.

Whether a loop "still rises" or is "bounded" is decided by `collapselab.metrics.verdicts.trend`, not by eye: each
seed's least-squares slope of FID over the second half of the run (generations G/2..G), the slopes' mean over seeds
and its 95% t interval; "bounded" when the interval's upper end, over the window, would move FID by under a tenth of
its level, else "still rising" when the interval's lower end is above 0, "undetermined" otherwise (a few seeds
often cannot tell).
"holds here" is the script's verdict on each claim, not a hand-written one.

Our scale is far smaller (8×8 digits, 500 images a generation, models that fit in seconds; MAD trains on 60 k MNIST
images a generation), so compare shapes, not values. The sections "30 generations" run the loops over a longer
horizon (180 images a generation, so that the fresh loop's 1,080 unseen digits exist)."""


def family_summary(family: str, loops: pd.DataFrame, biased: dict[float, pd.DataFrame] | None) -> str:
    """One family's results in a sentence, for README.md: every loop at the last generation, with its verdict."""
    G = int(loops.generation.max())
    fid0, rec0 = mean_at(loops, "fid", 0, "replace"), mean_at(loops, "recall", 0, "replace")
    parts = []
    for p, name in LOOPS.items():
        d = loops[loops.policy == p]
        if not len(d):
            parts.append(f"{name} (`{p}`) not run")
            continue
        f, r = mean_at(loops, "fid", G, p), mean_at(loops, "recall", G, p)
        parts.append(f"{name} (`{p}`) {f:.1f} ({f / fid0:.1f}×), recall {r:.2f}, {trend_of(d, 'fid').verdict}")
    n, seeds = int(loops.n_items.iloc[0]), loops.seed.nunique()
    text = (f"`{family}` ({n} images a generation, {seeds} seeds), FID and recall {fid0:.1f} and {rec0:.2f} at generation 0, "
            f"at generation {G}: " + "; ".join(parts))
    if biased:
        keep1 = kept(biased[1.0])
        text += (f"; sampling bias, the share of generation 0's recall kept over generations 1-{G} (λ = 1: {keep1:.0%}): "
                 + ", ".join(f"λ = {b:g} {kept(m):.0%}, {bias_verdict(kept(m), keep1).replace('**', '')}"
                             for b, m in biased.items() if b != 1.0))
    return text + "."


def kept_metrics(family: str, corpus: str, suffix: str = "") -> tuple[pd.DataFrame, dict[float, pd.DataFrame] | None] | None:
    """A family's kept loop (and bias) metrics from DATA, or None."""
    src, tag = DATA / f"repro_images_{family}", f"{family}-{corpus}"
    if not (src / f"{tag}-loops{suffix}.parquet").exists():
        return None
    loops = pd.read_parquet(src / f"{tag}-loops{suffix}.parquet")
    bias = {b: src / f"{tag}-bias{b:g}{suffix}.parquet" for b in BIASES if b != 1.0}
    biased = ({1.0: loops[loops.policy == "replace"], **{b: pd.read_parquet(f) for b, f in bias.items()}}
              if all(f.exists() for f in bias.values()) else None)
    return loops, biased


def readme_paragraph(corpus: str) -> str:
    """README.md's image-results paragraph, from every family's kept metrics."""
    lines = ["- **Visual collapse, MAD's three loops** (`python bench/repro_images.py`, digits; FID ratios to generation 0; "
             "\"still rising\", \"bounded\" and \"undetermined\" are the script's verdicts on the slope of FID over the run's "
             "second half and its 95% interval over seeds; tables in docs/results.md):"]
    for family in ("gmm", "vae", "ddpm"):
        got = kept_metrics(family, corpus)
        where = "" if family != "ddpm" else " (run on a GPU machine; metrics in docs/data/repro_images_ddpm/)"
        lines.append(f"  - {family_summary(family, *got)}{where}" if got else f"  - `{family}`: no kept metrics in "
                     f"docs/data/repro_images_{family}/ (not run).")
        long = kept_metrics(family, corpus, "-g30")
        if long:
            lines.append(f"    Over 30 generations: {family_summary(family, *long)}")
    return "\n".join(lines)


def keep(family: str, tag: str, suffix: str, loops: pd.DataFrame, biased: dict[float, pd.DataFrame] | None) -> None:
    """Keep a family's metrics in DATA (README.md's paragraph is built from them; --metrics-from reads this layout)."""
    out = DATA / f"repro_images_{family}"
    out.mkdir(parents=True, exist_ok=True)
    loops.to_parquet(out / f"{tag}-loops{suffix}.parquet")
    for b, m in (biased or {}).items():
        if b != 1.0:
            m.to_parquet(out / f"{tag}-bias{b:g}{suffix}.parquet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="gmm,vae", help="comma-separated image families (default gmm,vae; ddpm wants a GPU)")
    ap.add_argument("--corpus", default="digits")
    ap.add_argument("--seeds", type=seeds_arg, default=SEEDS, help="e.g. 0-4 or 0,3 (default 0-4)")
    ap.add_argument("--shared-data", action="store_true",
                    help="every seed shares one split of real images (default: each seed draws its own, resample_data)")
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--train-items", type=int, default=500)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (vae, ddpm)")
    ap.add_argument("--epochs", type=int, default=None, help="vae / ddpm training epochs (default: the family's own)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "repro_images", help="folder of the kept run folders")
    ap.add_argument("--metrics-from", type=Path, default=None, metavar="DIR",
                    help="rebuild the tables from metrics copied from another machine (DIR/<family>-<corpus>-loops.parquet, "
                         "-bias0.7.parquet, -bias0.5.parquet, and repro_images_<family>.png), running nothing")
    ap.add_argument("--where", default=None, help="with --metrics-from: the machine the runs ran on, for the text")
    ap.add_argument("--no-bias", action="store_true", help="only the three loops, no sampling-bias runs")
    ap.add_argument("--no-docs", action="store_true", help="print the tables without writing docs/results.md")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    G = args.generations
    fig_dir = args.out if args.no_docs else ROOT / "docs" / "figures"
    flags = " --families {family}" + ("" if args.device == "cpu" else f" --device {args.device}")
    flags += ("" if G == 10 else f" --generations {G}") + ("" if args.train_items == 500 else f" --train-items {args.train_items}")
    flags += (" --no-bias" if args.no_bias else "") + (" --shared-data" if args.shared_data else "")
    suffix = "" if G == 10 else f"-g{G}"  # another horizon: its own run folders, figure and section
    heading = "" if G == 10 else f", {G} generations"
    sections = {}
    for family in args.families.split(","):
        tag = f"{family}-{args.corpus}"
        command = f"`python bench/repro_images.py{flags.format(family=family)}`"
        if args.metrics_from:
            src = args.metrics_from
            loops = pd.read_parquet(src / f"{tag}-loops.parquet")
            ran = sorted(int(x) for x in loops.seed.unique())
            if ran != SEEDS:
                command = command[:-1] + f" --seeds {','.join(map(str, ran))}`"
            biased = None if args.no_bias else {b: loops[loops.policy == "replace"] if b == 1.0
                                                else pd.read_parquet(src / f"{tag}-bias{b:g}.parquet") for b in BIASES}
            fig = None
            if (src / f"repro_images_{family}.png").exists():
                fig = fig_dir / f"repro_images_{family}{suffix}.png"
                fig.parent.mkdir(parents=True, exist_ok=True)
                fig.write_bytes((src / f"repro_images_{family}.png").read_bytes())
            produced = f"Computed by {command} on {args.where or 'another machine'}; tables rebuilt here from its metrics with `--metrics-from`"
            missing = [p for p in LOOPS if not (loops.policy == p).any()]
            if missing:
                rerun = f"`python bench/repro_images.py --families {family} --device {args.device}`"
                produced += (f". That run did not include {', '.join(f'`{p}`' for p in missing)} (its columns read \"not run\"); "
                             f"{rerun} runs all {len(LOOPS)} loops over 5 seeds, each with its own digits")
            sections[family] = family_section(family, loops, biased, args.train_items, None, fig, produced, heading,
                                              not args.shared_data)
            if not args.no_docs and src.resolve() != (DATA / f"repro_images_{family}").resolve():
                keep(family, tag, suffix, loops, biased)
            continue
        base = {"family": family, "corpus": args.corpus, "seeds": args.seeds, "generations": G, "train_items": args.train_items,
                "resample_data": not args.shared_data}
        model = {} if family == "gmm" else {"device": args.device, **({"epochs": args.epochs} if args.epochs else {})}
        print(f"{family}: the three loops")
        run = run_or_load({**base, "policies": list(LOOPS), "model": model}, args.out / f"{tag}-loops{suffix}", args.jobs)
        loops, biased = run.metrics, (None if args.no_bias else {})
        for b in [] if args.no_bias else BIASES:
            print(f"{family}: replace, bias {b:g}")
            biased[b] = loops[loops.policy == "replace"] if b == 1.0 else run_or_load(
                {**base, "policies": ["replace"], "model": {**model, "bias": b}}, args.out / f"{tag}-bias{b:g}{suffix}", args.jobs).metrics
        fig = figure(run.path, family, args.seeds[0], sorted({0, 1, min(3, G), G}), fig_dir / f"repro_images_{family}{suffix}.png")
        s = run.summary["corpus"]
        produced = f"Computed by {command} ({time.strftime('%Y-%m-%d')}, this machine)"
        sections[family] = family_section(family, loops, biased, s["train_items"], s["holdout_items"], fig, produced, heading,
                                          not args.shared_data)
        if not args.no_docs:
            keep(family, tag, suffix, loops, biased)
    if not args.no_docs:
        write_section(ROOT / "docs" / "results.md", "images", INTRO)
        for family, md in sections.items():
            write_section(ROOT / "docs" / "results.md", f"images-{family}{suffix}", md)
        write_section(ROOT / "README.md", "images-results", readme_paragraph(args.corpus))
    print(INTRO + "\n\n" + "\n".join(sections.values()))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
