"""MAD's fresh-data loop over a grid of (n_r, n_s, λ): how much synthetic data is admissible (issue 13).

MAD (Alemohammad et al., ICLR 2024, the fresh-data loop, Fig. 10): in the fresh-data loop each generation trains on
n_r real images never seen before plus n_s images sampled (with bias λ) from the previous generation;
the loop's distance to the real distribution converges to a limit set by (n_r, n_s, λ), whatever the
first generation trained on. Synthetic data is *admissible* when that limit is no worse than what a
model trained on the n_r real images alone achieves (effective sample size n_e >= n_r); the
admissible n_s does not grow with n_r, and shrinks with bias.

Here, on digits with the `gmm` image family (CPU, seconds a generation), one run per grid cell:
`fresh:F` with F = n_r / (n_r + n_s) and `samples` = n_r + n_s (each generation draws that many images
and the next trains on n_r fresh real ones plus n_s of them), `train_items` = n_r (so generation 0 is
the real-only model on n_r images: the reference), model bias λ. Per seed, the loop's limit is its mean
FID over generations G/2..G and the real-only distance its generation-0 FID, both on the same number
of samples (min(n_r + n_s, 300) against the 300 held-out digits). Per cell:

- "not admissible": the 95% t interval over seeds of (limit - real-only) lies above 0;
- "admissible": it lies at or below 0 and the loop's FID is not still rising
  (collapselab.metrics.verdicts.trend over generations G/2..G);
- "undetermined": otherwise.

The threshold per (n_r, λ) is the smallest grid n_s found not admissible. It is *selected* on
--seeds, so the cells on each side of it are run again on --confirm-seeds (seeds not used to select
it) and their verdicts there are reported next to it.

    python bench/mad_fresh_grid.py          # 24 cells x 5 seeds x 10 generations, then the confirmation runs

Writes the "images-fresh-grid" section of docs/results.md; run folders are kept under
bench/out/mad_fresh_grid/ (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, SEEDS, run_or_load, seeds_arg, write_section  # noqa: E402

from collapselab.loop.policies import parse_policy  # noqa: E402
from collapselab.metrics.verdicts import paired_difference, trend_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def cell_config(n_r: int, n_s: int, bias: float, seeds: list[int], generations: int, corpus: str,
                resample: bool = True) -> dict:
    """The run of one grid cell; checks that `fresh:F` takes exactly n_r real images a generation."""
    policy = parse_policy(f"fresh:{n_r / (n_r + n_s)!r}")
    if round(policy.fraction * (n_r + n_s)) != n_r:
        raise SystemExit(f"fresh:{policy.fraction:g} of {n_r + n_s} images is not {n_r} real ones")
    return {"family": "gmm", "corpus": corpus, "seeds": seeds, "generations": generations, "train_items": n_r,
            "samples": n_r + n_s, "policies": [policy.name], "model": {"bias": bias}, "resample_data": resample}


def admissibility(m: pd.DataFrame) -> dict:
    """One cell's numbers and verdicts from its metrics (one fresh:F loop, several seeds)."""
    G = int(m.generation.max())
    wide = m.pivot_table(index="seed", columns="generation", values="fid")
    ref, limit = wide[0], wide.loc[:, G // 2:].mean(axis=1)
    t = trend_of(m, "fid")
    d = paired_difference(limit, ref)
    verdict = ("not admissible" if d.low > 0 else "admissible" if d.high <= 0 and t.verdict != "still rising"
               else "undetermined")
    return {"ref": float(ref.mean()), "limit": float(limit.mean()), "diff": d, "trend": t.verdict, "verdict": verdict,
            "seeds": len(wide)}


def threshold(verdicts: dict[int, str]) -> tuple[int | None, int | None]:
    """(the largest n_s below the first not-admissible one, the first not-admissible n_s) over a sorted grid."""
    grid = sorted(verdicts)
    bad = next((n for n in grid if verdicts[n] == "not admissible"), None)
    below = [n for n in grid if bad is None or n < bad]
    return (below[-1] if below else None), bad


def cells_table(rows: list[dict]) -> str:
    lines = ["| λ | n_r | n_s | real-only FID (gen 0) | loop FID (gens G/2-G) | difference (95% CI) | loop trend | synthetic data |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        d = r["diff"]
        lines.append(f"| {r['bias']:g} | {r['n_r']} | {r['n_s']} | {r['ref']:.1f} | {r['limit']:.1f} | "
                     f"{d.mean:+.1f} ({d.low:+.1f} to {d.high:+.1f}) | {r['trend']} | {r['verdict']} |")
    return "\n".join(lines)


def run_cell(args, n_r: int, n_s: int, bias: float, seeds: list[int], tag: str) -> dict:
    config = cell_config(n_r, n_s, bias, seeds, args.generations, args.corpus, not args.shared_data)
    print(f"n_r {n_r}, n_s {n_s}, λ {bias:g}, seeds {seeds}")
    run = run_or_load(config, args.out / f"r{n_r}-s{n_s}-b{bias:g}{tag}", args.jobs)
    return {"n_r": n_r, "n_s": n_s, "bias": bias, "seconds": run.summary.get("seconds") or 0.0, **admissibility(run.metrics)}


def readme_line(confirmed: list[dict], args, flags: str) -> str:
    """README.md's sentence on the grid: the threshold per (λ, n_r), and how it fared on the confirmation seeds."""
    per_bias = "; ".join(f"λ = {b:g}: " + ", ".join(f"n_r = {c['n_r']} from n_s = {c['bad'] if c['bad'] is not None else 'none'}"
                                                    for c in confirmed if c["bias"] == b) for b in args.bias)
    upper = [r for c in confirmed for r in c["again"] if r["n_s"] == c["bad"]]
    lower = [r for c in confirmed for r in c["again"] if r["n_s"] == c["below"]]
    return (f"- **MAD's fresh-data admissibility** (`python bench/mad_fresh_grid.py{flags}`: `gmm` on digits, "
            f"n_r ∈ {{{', '.join(map(str, args.n_real))}}} fresh real and n_s ∈ {{{', '.join(map(str, args.n_synth))}}} synthetic "
            f"images a generation, {args.generations} generations; docs/results.md): synthetic data is not admissible (the loop "
            f"settles further from the digits than a model of the n_r real images alone, 95% interval over seeds "
            f"{', '.join(map(str, args.seeds))}) {per_bias}. On seeds {', '.join(map(str, args.confirm_seeds))}, not used to find "
            f"it, {sum(r['verdict'] == 'not admissible' for r in upper)} of {len(upper)} cells at the threshold are again not "
            f"admissible and {sum(r['verdict'] == 'not admissible' for r in lower)} of {len(lower)} cells just below it are; "
            f"{sum(r['verdict'] == 'admissible' for r in lower)} of those below are shown admissible (the rest undetermined).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-real", type=ints, default=[40, 80, 120], help="n_r values (>= 32: gmm's 32 PCA components)")
    ap.add_argument("--n-synth", type=ints, default=[10, 40, 160, 640], help="n_s values")
    ap.add_argument("--bias", type=floats, default=[1.0, 0.7], help="λ values")
    ap.add_argument("--seeds", type=seeds_arg, default=SEEDS, help="seeds the threshold is selected on (default 0-4)")
    ap.add_argument("--confirm-seeds", type=seeds_arg, default=[5, 6, 7, 8, 9], help="seeds it is reported on (default 5-9)")
    ap.add_argument("--shared-data", action="store_true",
                    help="every seed shares one split of real images (default: each seed draws its own, resample_data)")
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--corpus", default="digits")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "mad_fresh_grid", help="folder of the kept run folders")
    ap.add_argument("--no-docs", action="store_true", help="print the tables without writing docs/results.md")
    args = ap.parse_args(argv)
    if set(args.seeds) & set(args.confirm_seeds):
        raise SystemExit("--confirm-seeds must not share a seed with --seeds")

    t0 = time.perf_counter()
    rows = [run_cell(args, n_r, n_s, b, args.seeds, "") for b in args.bias for n_r in args.n_real for n_s in args.n_synth]
    summary = ["| λ | n_r | selected on seeds " + ", ".join(map(str, args.seeds)) + " | on seeds "
               + ", ".join(map(str, args.confirm_seeds)) + " (not used to select) |", "| ---: | ---: | --- | --- |"]
    confirmed = []
    for b in args.bias:
        for n_r in args.n_real:
            below, bad = threshold({r["n_s"]: r["verdict"] for r in rows if r["bias"] == b and r["n_r"] == n_r})
            found = (f"not admissible from n_s = {bad}" if bad is not None else f"none of n_s <= {max(args.n_synth)} shown "
                     "not admissible") + ("" if below is None else f"; n_s = {below}: " + next(
                         r["verdict"] for r in rows if r["bias"] == b and r["n_r"] == n_r and r["n_s"] == below))
            again = [run_cell(args, n_r, n, b, args.confirm_seeds, "-confirm") for n in (below, bad) if n is not None]
            confirmed.append({"bias": b, "n_r": n_r, "below": below, "bad": bad, "again": again})
            summary.append(f"| {b:g} | {n_r} | {found} | " + "; ".join(f"n_s = {r['n_s']}: {r['verdict']} ({r['diff'].mean:+.1f})"
                                                                    for r in again) + " |")
    grid = (f"n_r ∈ {{{', '.join(map(str, args.n_real))}}} × n_s ∈ {{{', '.join(map(str, args.n_synth))}}} × "
            f"λ ∈ {{{', '.join(f'{b:g}' for b in args.bias)}}}")
    flags = "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    data = ("A seed varies the fitting and sampling; which digits train generation 0 and which arrive fresh is one split "
            "(`split_seed` 0) for every seed (`--shared-data`), so the intervals leave out the variation between draws of "
            "real data." if args.shared_data else "Each seed draws its own real digits (which train generation 0, which "
            "arrive fresh, which are held out: `resample_data`), so the intervals include the variation between draws of "
            "real data as well as of fitting and sampling.")
    md = f"""### Fresh-data admissibility (MAD's fresh-data loop): a grid over (n_r, n_s, λ)

Computed by `python bench/mad_fresh_grid.py{flags}` ({time.strftime('%Y-%m-%d')}, this machine; its {len(rows) + sum(len(c["again"]) for c in confirmed)} runs took
{(sum(r["seconds"] for r in rows) + sum(r["seconds"] for c in confirmed for r in c["again"])) / 60:.0f} min, and this invocation {time.perf_counter() - t0:.0f} s, reusing the finished run folders it found under bench/out/mad_fresh_grid/). The `gmm` image family on digits; the grid {grid}, {args.generations} generations, seeds
{', '.join(map(str, args.seeds))}: {len(rows)} runs of `fresh:F` with F = n_r / (n_r + n_s), n_r + n_s images drawn a
generation and `train_items` = n_r, so generation 0 is the real-only model on n_r images (MAD: the loop's limit does not
depend on what generation 0 trained on). The loop's limit is each seed's mean FID over generations {args.generations // 2}-{args.generations},
the real-only distance its generation-0 FID, both on min(n_r + n_s, 300) samples against the 300 held-out digits, so
only the difference within a row is comparable (FID depends on the sample count). Synthetic data is "admissible"
(MAD's n_e ≥ n_r) when the 95% interval over seeds of the difference is at or below 0 and the loop's FID is not still
rising, "not admissible" when the interval lies above 0. Sampling bias λ applies to every generation, generation 0
included. {data}

{cells_table(rows)}

**The threshold**, the smallest n_s found not admissible for each (n_r, λ), is selected on seeds
{', '.join(map(str, args.seeds))}; the cells on each side of it were run again on seeds {', '.join(map(str, args.confirm_seeds))}:

{chr(10).join(summary)}
"""
    if not args.no_docs:
        write_section(ROOT / "docs" / "results.md", "images-fresh-grid", md)
        write_section(ROOT / "README.md", "images-fresh-grid", readme_line(confirmed, args, flags))
    print(md)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
