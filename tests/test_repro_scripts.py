"""The reproduction scripts behind docs/results.md still run, and their verdicts follow the numbers."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(policy_values: dict[str, list[tuple[float, float, float]]]) -> pd.DataFrame:
    """Metrics rows: per policy, (fid, recall, precision) per generation, two seeds alike."""
    rows = [{"policy": p, "seed": s, "generation": g, "fid": f, "recall": r, "precision": q}
            for p, vals in policy_values.items() for s in (0, 1) for g, (f, r, q) in enumerate(vals)]
    return pd.DataFrame(rows)


def test_image_verdicts_follow_the_numbers():
    repro = load("repro_images")
    collapse = [(10, 0.9, 0.9), (20, 0.6, 0.85), (40, 0.3, 0.8), (60, 0.1, 0.7), (80, 0.0, 0.6)]
    settled = [(10, 0.9, 0.9), (15, 0.8, 0.9), (16, 0.8, 0.9), (16, 0.8, 0.9), (16, 0.8, 0.9)]
    good = repro.loop_findings(_frame({"replace": collapse, "anchor:0.2": settled, "fresh:0.2": settled}), 4)
    assert all("does not hold" not in line for line in good[:3])
    # a run where the "defences" collapse as fast as replace must not be reported as holding
    bad = repro.loop_findings(_frame({"replace": collapse, "anchor:0.2": collapse, "fresh:0.2": collapse}), 4)
    assert "does not hold" in bad[1] and "does not hold" in bad[2]
    # the fully synthetic loop already at its collapsed plateau: fresh data still counts as bounded when it stays put
    plateau = [(10, 0.9, 0.9), (80, 0.1, 0.9), (100, 0.0, 0.9), (101, 0.0, 0.9), (101, 0.0, 0.9)]
    slight = [(10, 0.9, 0.9), (15, 0.8, 0.9), (16, 0.8, 0.9), (16.5, 0.8, 0.9), (17, 0.8, 0.9)]  # +1 on 17
    flat = repro.loop_findings(_frame({"replace": plateau, "anchor:0.2": slight, "fresh:0.2": slight}), 4)
    assert "does not hold" not in flat[2]
    rising = [(10, 0.9, 0.9), (15, 0.8, 0.9), (20, 0.8, 0.9), (30, 0.7, 0.9), (40, 0.6, 0.9)]
    still = repro.loop_findings(_frame({"replace": plateau, "anchor:0.2": rising, "fresh:0.2": rising}), 4)
    assert "does not hold" in still[2]  # a fresh loop still drifting (+20 on 40) is not bounded

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
    assert "### `gmm`, 2 generations" in text and "| 2 |" in text and "Mean ± sd over seeds 0, 1" in text
    assert "**Sampling bias" in text and "--generations 2`" in text
    assert (tmp_path / "repro_images_gmm-g2.png").stat().st_size > 1000  # another horizon than 10: its own figure and folders
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"gmm-digits-loops-g2", "gmm-digits-bias0.7-g2", "gmm-digits-bias0.5-g2"}
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
    assert "2.07" in doubled and "matches the paper's doubling" in doubled and "| replace | 2 | 623 ± 4 | 302 ± 2 | 2.07× |" in doubled
    same = repro.penalty_verdict(frame([100, 150, 290], [100, 110, 120]), without, 2.0, 2)
    assert "does NOT show" in same and "about the same" in same
    assert "the penalty lowers" in repro.penalty_verdict(frame([100, 120, 150], [100, 110, 120]), without, 2.0, 2)
    assert "more than the paper's doubling" in repro.penalty_verdict(frame([100, 600, 1200], [100, 110, 120]), without, 2.0, 2)
    assert "No run without the penalty" in repro.penalty_verdict(without, None, 2.0, 2)
    # a baseline with fewer generations: compared at its last one
    assert "| replace | 1 | 322 ± 2 | 151 ± 1 |" in repro.penalty_verdict(frame([100, 320, 620], [100, 200, 230]), without[without.generation < 2], 2.0, 2)


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
