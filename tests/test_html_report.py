"""``collapselab report RUN --html``: one self-contained page, checked by parsing it and by opening
it in headless Chromium (Debian's ``chromium``; the test skips, saying so, where it is absent)."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import write_text_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Refs(HTMLParser):
    """Every src/href of the page, and the text of its headings."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.headings: list[str] = []
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_h = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag):
        self._in_h = False

    def handle_data(self, data):
        if self._in_h and data.strip():
            self.headings.append(data.strip())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import collapselab as cl

    d = tmp_path_factory.mktemp("html")
    corpus = write_text_file(d / "tiny.txt", 300)
    out = []
    for name, policies in (("a", ["replace", "accumulate"]), ("b", ["anchor:0.2"])):
        out.append(cl.run_experiment({"corpus": str(corpus), "train_items": 150, "generations": 2, "policies": policies},
                                     out=d / name, jobs=1))
    return out


def test_the_page_holds_everything_and_fetches_nothing(runs, run_main, tmp_path):
    run = runs[0]
    status, _, err = run_main(["report", run.path, "--html", "--no-plots"], tmp_path)
    assert status == 0, err
    page = (run.path / "report.html").read_text(encoding="utf-8")
    p = _Refs()
    p.feed(page)
    assert all(r.startswith(("data:", "#")) for r in p.refs), p.refs  # offline: nothing to fetch
    assert "<script" not in page
    for h in ("Ranking of the policies", "The article's table", "Metrics by generation",
              "Samples: generation 0 and the last generation", "Lineage (from the run's ledger)"):
        assert h in p.headings, (h, p.headings)
    assert page.count("<svg") == len([m for m in ("vocab_size", "tail_retention", "ppl_holdout", "ppl_under_gen0",
                                                  "distinct_2", "mattr", "entropy", "novel_4gram_rate")
                                      if m in run.metrics.columns])
    assert "higher is better" in page and "lower is better" in page and "perplexity per word" in page
    for g in (0, 2):  # generation 0's and the last generation's samples, as the run wrote them
        first = run.folder.read_sample_column("replace", 0, g, "text")[0]
        assert html.escape(first) in page
    from collapselab.report.lineage import lineage

    for model_id in lineage(run.folder.ledger_path):
        assert html.escape(model_id) in page


def test_ranking_follows_the_metrics_directions():
    from collapselab.report.html import ranked_policies

    class R:  # a run with two policies: 'good' wins on every metric with a direction
        metrics = pd.DataFrame({"policy": ["good", "bad", "good", "bad"], "seed": 0, "generation": [0, 0, 3, 3],
                                "vocab_size": [100, 100, 90, 50], "ppl_holdout": [10, 10, 12, 30],
                                "ppl_under_gen0": [5, 5, 1, 9]})

    t = ranked_policies(R())
    assert list(t.index) == ["good", "bad"] and list(t["mean rank"]) == [1.0, 2.0]
    R.metrics = R.metrics.assign(ppl_holdout=[10, 10, 40, 30], vocab_size=[100, 100, 40, 50])  # now 'bad' wins both
    assert list(ranked_policies(R()).index) == ["bad", "good"]  # ppl_under_gen0 has no direction: not ranked on


def test_several_runs_side_by_side(runs, run_main, tmp_path):
    status, _, err = run_main(["report", *[r.path for r in runs], "--html-out", "both.html", "--no-plots"], tmp_path)
    assert status == 0, err
    page = (tmp_path / "both.html").read_text(encoding="utf-8")
    assert "Side by side" in page and "anchor:0.2" in page and "accumulate" in page
    assert page.count("Ranking of the policies") == 2


def test_html_out_that_cannot_be_written(runs, run_main, tmp_path):
    (tmp_path / "afile").write_text("mine")
    status, out, err = run_main(["report", runs[0].path, "--html-out", "afile/r.html"], tmp_path)
    assert status == 2 and "afile" in err and out == "" and "Traceback" not in err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_chromium_renders_it_without_errors(runs, run_main, tmp_path):
    from PIL import Image

    run = runs[0]
    status, _, err = run_main(["report", run.path, "--html-out", "page.html", "--no-plots"], tmp_path)
    assert status == 0, err
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1280,2000"]
    url = (tmp_path / "page.html").resolve().as_uri()
    p = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), p.stderr[-2000:]
    console = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console  # no script error, no failed resource
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.std() > 20 and (img < 128).mean() > 0.01  # text and charts, not a blank page
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp_path)}).stdout
    assert "Ranking of the policies" in dom and dom.count("<svg") >= 8
