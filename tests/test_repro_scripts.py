"""The reproduction scripts behind docs/results.md still run, and their verdicts follow the numbers."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(policy_values: dict[str, list[tuple[float, float, float]]], sd: float = 0.0, seeds: int = 2) -> pd.DataFrame:
    """Metrics rows: per policy, (fid, recall, precision) per generation, the seeds alike but for FID noise of ``sd``."""
    rng = np.random.default_rng(0)
    rows = [{"policy": p, "seed": s, "generation": g, "fid": f + rng.normal(0, sd), "recall": r, "precision": q}
            for p, vals in policy_values.items() for s in range(seeds) for g, (f, r, q) in enumerate(vals)]
    return pd.DataFrame(rows)


def test_image_verdicts_follow_the_numbers():
    repro = load("repro_images")
    collapse = [(10, 0.9, 0.9), (20, 0.6, 0.85), (40, 0.3, 0.8), (60, 0.1, 0.7), (80, 0.0, 0.6)]
    climbing = [(10, 0.9, 0.9), (14, 0.8, 0.9), (17, 0.8, 0.9), (20, 0.7, 0.9), (23, 0.7, 0.9)]
    settled = [(10, 0.9, 0.9), (15, 0.8, 0.9), (16, 0.8, 0.9), (16, 0.8, 0.9), (16, 0.8, 0.9)]
    loops = {"replace": collapse, "accumulate": climbing, "fresh:0.2": settled, "anchor:0.2": settled}
    good = repro.loop_findings(_frame(loops, sd=0.1, seeds=3), 4)
    assert all("holds here" in line for line in good[:4]), good
    # a run where every loop collapses as fast as replace must not be reported as holding
    bad = repro.loop_findings(_frame({p: collapse for p in loops}, sd=0.1, seeds=3), 4)
    assert "does not hold" in bad[1] and "does not hold" in bad[2] and "does not hold" in bad[3]
    # a fresh loop still climbing (+1.5 a generation on 17.5, the seeds agreeing: +3 over generations 2-4) is not bounded
    slight = [(10, 0.9, 0.9), (15, 0.8, 0.9), (16, 0.8, 0.9), (17.5, 0.8, 0.9), (19, 0.8, 0.9)]
    still = repro.loop_findings(_frame({**loops, "fresh:0.2": slight}, sd=0.01, seeds=3), 4)
    assert "still rising" in still[2] and "does not hold" in still[2]
    # seeds too noisy to tell: neither holds nor fails
    noisy = repro.loop_findings(_frame(loops, sd=3.0, seeds=3), 4)
    assert "undetermined here" in noisy[2]
    # kept metrics without accumulate (ddpm's GPU run): said, not guessed
    old = repro.loop_findings(_frame({p: v for p, v in loops.items() if p != "accumulate"}, sd=0.1, seeds=3), 4)
    assert "**not run**" in old[1] and "holds here" in old[2]

    biased = [(12, 0.7, 0.95), (30, 0.1, 0.96), (50, 0.0, 0.97), (60, 0.0, 0.97), (70, 0.0, 0.97)]
    lines = repro.bias_findings({1.0: _frame({"replace": collapse}), 0.5: _frame({"replace": biased})}, 4)
    assert "holds" in lines[0] and "falls faster under bias" in lines[0]
    slow = [(12, 0.9, 0.7), (30, 0.9, 0.6), (50, 0.85, 0.5), (60, 0.85, 0.4), (70, 0.8, 0.3)]
    lines = repro.bias_findings({1.0: _frame({"replace": collapse}), 0.5: _frame({"replace": slow})}, 4)
    assert "**falls**" in lines[0] and "slower under bias" in lines[0]


def test_repro_images_runs_end_to_end(tmp_path, capsys):
    repro = load("repro_images")
    assert repro.main(["--families", "gmm", "--seeds", "0-1", "--generations", "2", "--jobs", "1",
                       "--out", str(tmp_path), "--no-docs"]) == 0
    text = capsys.readouterr().out
    assert "### `gmm`, 2 generations" in text and "| 2 |" in text and "Mean ± the half-width of the 95% t interval over seeds 0, 1, each drawing its own" in text
    assert "**Sampling bias" in text and "--generations 2`" in text
    assert (tmp_path / "repro_images_gmm-g2.png").stat().st_size > 1000  # another horizon than 10: its own figure and folders
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"gmm-digits-loops-g2", "gmm-digits-bias0.7-g2", "gmm-digits-bias0.5-g2"}
    import collapselab as cl

    run = cl.load_run(tmp_path / "gmm-digits-loops-g2")
    assert run.config.resample_data  # every seed draws its own real images by default
    from collapselab.provenance.ledger import Ledger

    led = Ledger(run.path / "ledger.sqlite")
    try:  # the run's split, then each seed's own training set and reserve: 2 + 2 x 2 human documents
        assert len(led.documents(origin="human")) == 6
    finally:
        led.close()
    assert "synthetic augmentation" in text and "constant real share" in text and "slope over generations 1-2" in text
    # a rerun reuses the finished runs (no new generation lines) and prints the same tables
    assert repro.main(["--families", "gmm", "--seeds", "0-1", "--generations", "2", "--jobs", "1",
                       "--out", str(tmp_path), "--no-docs"]) == 0
    again = capsys.readouterr().out
    assert "rebuilding the tables only" in again
    assert again.split("### `gmm`")[1].split("![")[0] == text.split("### `gmm`")[1].split("![")[0]
    # --no-bias: the loops only, from the same (reused) run
    assert repro.main(["--families", "gmm", "--seeds", "0-1", "--generations", "2", "--jobs", "1", "--no-bias",
                       "--out", str(tmp_path), "--no-docs"]) == 0
    loops_only = capsys.readouterr().out
    assert "rebuilding the tables only" in loops_only and "**Sampling bias" not in loops_only and "--no-bias`" in loops_only
    # other settings in the same folder: refused, not mixed
    with pytest.raises(SystemExit, match="other settings"):
        repro.main(["--families", "gmm", "--seeds", "0-1", "--generations", "2", "--train-items", "400", "--jobs", "1",
                    "--out", str(tmp_path), "--no-docs"])


def test_text_verdict_follows_the_numbers():
    repro = load("repro_gpt")

    def frame(replace, anchor):
        return pd.DataFrame([{"policy": p, "seed": 0, "generation": g, "ppl_holdout": v}
                             for p, vals in (("replace", replace), ("anchor:0.1", anchor)) for g, v in enumerate(vals)])

    assert "matches the paper" in repro.verdict(frame([100, 150, 300], [100, 110, 120]), 2)
    dip = repro.verdict(frame([72, 64, 70], [72, 59, 61]), 2)  # a pretrained model gains first, then degrades
    assert "Generation 1 scores below generation 0" in dip and "64 → 70" in dip
    assert "does NOT show" in repro.verdict(frame([100, 90, 80], [100, 95, 90]), 2)
    assert "does NOT show" in repro.verdict(frame([100, 150, 200], [100, 180, 300]), 2)  # the anchor doing worse


def test_repetition_penalty_verdict_follows_the_numbers():
    repro = load("repro_gpt")

    def frame(replace, anchor):
        return pd.DataFrame([{"policy": p, "seed": s, "generation": g, "ppl_holdout": v * (1 + s / 100)}
                             for p, vals in (("replace", replace), ("anchor:0.1", anchor)) for s in (0, 1) for g, v in enumerate(vals)])

    without = frame([100, 150, 300], [100, 110, 120])
    doubled = repro.penalty_verdict(frame([100, 320, 620], [100, 200, 230]), without, 2.0, 2)
    assert "2.07" in doubled and "matches the paper's doubling" in doubled and "| replace | 2 | 623 ± 39 | 302 ± 19 | 2.07× |" in doubled  # ± the 95% t half-width
    same = repro.penalty_verdict(frame([100, 150, 290], [100, 110, 120]), without, 2.0, 2)
    assert "does NOT show" in same and "about the same" in same
    assert "the penalty lowers" in repro.penalty_verdict(frame([100, 120, 150], [100, 110, 120]), without, 2.0, 2)
    assert "more than the paper's doubling" in repro.penalty_verdict(frame([100, 600, 1200], [100, 110, 120]), without, 2.0, 2)
    assert "No run without the penalty" in repro.penalty_verdict(without, None, 2.0, 2)
    # a baseline with fewer generations: compared at its last one
    assert "| replace | 1 | 322 ± 20 | 151 ± 10 |" in repro.penalty_verdict(frame([100, 320, 620], [100, 200, 230]), without[without.generation < 2], 2.0, 2)


def test_write_section_replaces_its_own_part_only(tmp_path):
    sys.path.insert(0, str(BENCH))
    from _common import write_section

    page = tmp_path / "results.md"
    for name in ("a", "b", "c"):
        write_section(page, name, f"## {name}\n\nfirst {name}")
    write_section(page, "b", "## b\n\nsecond b")
    text = page.read_text()
    assert text == ("<!-- begin a -->\n## a\n\nfirst a\n<!-- end a -->\n\n<!-- begin b -->\n## b\n\nsecond b\n<!-- end b -->\n\n"
                    "<!-- begin c -->\n## c\n\nfirst c\n<!-- end c -->\n")
    write_section(page, "c", "## c\n\nsecond c")  # the last section: no blank line added after it
    assert page.read_text().endswith("second c\n<!-- end c -->\n") and page.read_text().count("first a") == 1
