"""The pipeline's steps (pipeline/steps.py), the runner (pipeline/runner.py) and the scorers'
factory (pipeline/scorers.py): stats per step, the one finished-output check, backend errors."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from collapselab.errors import UserError
from collapselab.pipeline import filter_corpus, scan_corpus
from collapselab.pipeline import shards as sh
from collapselab.pipeline.io import Found, JsonlWriter
from collapselab.pipeline.runner import Runner, summary_line
from collapselab.pipeline.scorers import DETECTORS, LengthScorer, make_scorer
from collapselab.pipeline.steps import Mix, Reader, Score, ThresholdFilter, add_stats


def _corpus(path: Path) -> Path:
    lines = [json.dumps({"text": "x" * (10 * i + 1), "id": f"d{i}"}) for i in range(30)]
    lines[4] = "not json"
    lines[9] = ""
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reader_and_score_count_what_they_do(tmp_path):
    inp = _corpus(tmp_path / "a.jsonl")
    shard = sh.plan([inp])[0]
    read, score = Reader(on_error="skip", batch_size=7), Score(LengthScorer())
    found = Found()
    seen = [(len(b.texts), cols["score"].tolist()) for b, cols, _ in score(read(shard, found))]
    assert sum(n for n, _ in seen) == 28 and max(n for n, _ in seen) <= 7
    assert read.stats.documents_out == 28 and read.stats.malformed == 1 and read.stats.documents_in == 29
    assert read.stats.bytes == inp.stat().st_size and read.stats.seconds > 0
    assert score.stats.documents_in == score.stats.documents_out == 28 and score.stats.flagged == 0
    total = add_stats([[read.stats.to_dict(), score.stats.to_dict()]] * 2)
    assert [s["step"] for s in total] == ["read", "score"] and total[0]["documents_out"] == 56


def test_threshold_filter_writes_kept_and_excluded_with_reasons(tmp_path):
    paths = [tmp_path / n for n in ("k.jsonl", "q.jsonl", "r.jsonl")]
    lines = [b'{"text": "aaaa"}', b"", b'{"text": "a"}', b"bad"]
    step = ThresholdFilter(threshold=3, fpr=None, rule="score >= 3", name="f.jsonl", source="f.jsonl", file="f.jsonl")
    with JsonlWriter(paths[0]) as step.writer, JsonlWriter(paths[1]) as step.exclusion_writer, \
            JsonlWriter(paths[2]) as step.reasons:
        blank = np.array([False, True, False, False])
        rows = (np.array([1, 3]), [None, "x"], np.array([4.0, 1.0]), None)
        decided = step.decide(1, 4, blank, rows)
        step.lines(lines, True, 1, blank, decided, {3: "malformed record (bad)"})
    assert paths[0].read_bytes() == b'\n{"text": "a"}\n'  # the blank line stays with the kept records
    assert paths[1].read_bytes() == b'{"text": "aaaa"}\nbad\n'
    why = [json.loads(x) for x in paths[2].read_text().splitlines()]
    assert [(w["line"], w["id"], w["reason"]) for w in why] == [(1, "f.jsonl:1", "score >= 3"), (4, None, "malformed")]
    assert (step.stats.documents_in, step.stats.documents_out, step.stats.flagged, step.stats.malformed) == (3, 1, 1, 1)
    with pytest.raises(UserError, match="do not match"):  # a sidecar row on a blank line: misaligned
        step.decide(1, 4, blank, (np.array([2]), [None], np.array([1.0]), None))


def test_mix_interleaves_every_record_once(tmp_path):
    with JsonlWriter(tmp_path / "m.jsonl") as w:
        mix = Mix(w, [("h1", "one"), ("h2", "two")], 5, seed=0, text_field="text", snapshot="s")
        for i in range(5):
            mix.record(f'{{"i": {i}}}\n'.encode())
        mix.close()
    out = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["i"] for x in out if "i" in x] == list(range(5))
    assert sorted(x["vault_sha256"] for x in out if "id" in x) == ["h1", "h2"]
    assert (mix.stats.documents_in, mix.stats.documents_out) == (5, 7)


def test_make_scorer_builds_each_detector_and_checks_its_options(tmp_path):
    scorer, params = make_scorer("length")
    assert isinstance(scorer, LengthScorer) and params == {} and scorer.scheme_name == "length"
    scorer.calibrate()  # nothing to calibrate: a no-op
    assert scorer.score(["ab", "abc"])["score"].tolist() == [2.0, 3.0]
    for detector, kw, msg in [("nope", {}, "use 'watermark'"), ("watermark", {}, "needs --watermark SPEC"),
                              ("perplexity", {"vocab": "v.txt"}, "needs --vault"),
                              ("length", {"performer": "p"}, "Binoculars' second model"),
                              ("watermark", {"key": "k", "vocab": "v", "gamma": 1.5}, "--gamma 1.5")]:
        with pytest.raises(UserError, match=re.escape(msg)):
            make_scorer(detector, **kw)
    assert set(DETECTORS) == {"watermark", "perplexity", "length", "fast-detectgpt", "binoculars"}


def test_tokenize_doc_is_the_one_regex_tokenizer_it_replaced():
    from collapselab.pipeline.tokenizer import tokenize_doc

    old = re.compile(r"<s>|</s>|<unk>|[a-z0-9]+(?:['’-][a-z0-9]+)*|[^\sa-z0-9]")
    alphabet = list("aZ09'’-<>/s unkK\t\nΣσςİé—.") + ["<s>", "</s>", "<unk>", "<UNK>", "<S>"]
    rng = random.Random(0)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert tokenize_doc(text) == old.findall(text.lower()), text


def test_the_runner_finished_check_and_manifest_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inp = _corpus(tmp_path / "a.jsonl")
    r = scan_corpus([inp], detector="length", out="s.parquet", on_error="skip", jobs=1)
    man = json.loads(Path("s.parquet.json").read_text())
    assert [s["step"] for s in man["steps"]] == ["read", "score"] and man["steps"][1]["documents_out"] == 28
    assert "stats" not in man["result"] and r.stats["documents"] == 28 and r.stats["bytes"] == inp.stat().st_size
    assert summary_line("scan", r.stats).startswith("scan: 28 documents, 0.0 MB in ")
    with Runner("scan", jobs=1) as runner:
        def finished(**kw):
            return runner.finished(man, format="collapselab-scan", match={"params": man["params"]},
                                   outputs={"s.parquet": man["output"]["sha256"]}, shards=sh.plan([inp]),
                                   recorded=man["inputs"][0]["shards"], **kw)
        assert finished()
        assert not runner.finished(man, format="collapselab-filter", match={}, outputs={})
        assert not runner.finished(man, format="collapselab-scan", match={"params": {}}, outputs={})
        inp.write_bytes(inp.read_bytes().replace(b"xxx", b"yyy", 1))  # same size, other bytes
        assert not finished()
    assert scan_corpus([inp], detector="length", out="s.parquet", on_error="skip", jobs=1).skipped is False
    again = scan_corpus([inp], detector="length", out="s.parquet", on_error="skip", jobs=1)
    assert again.skipped and again.stats == {}


@pytest.mark.parametrize("kw, msg", [({"backend": "spark"}, "--backend spark: unknown backend"),
                                     ({"address": "auto"}, "only the ray backend joins a cluster")])
def test_backend_mistakes_are_one_line_before_any_work(tmp_path, kw, msg):
    inp = _corpus(tmp_path / "a.jsonl")
    with pytest.raises(UserError, match=re.escape(msg)):
        scan_corpus([inp], detector="length", out=tmp_path / "s.parquet", **kw)
    with pytest.raises(UserError, match=re.escape(msg)):
        filter_corpus(inp, detector="length", threshold=5, out=tmp_path / "k.jsonl", quarantine=tmp_path / "q.jsonl", **kw)
    assert not list(tmp_path.glob("s.parquet*")) and not list(tmp_path.glob("k.jsonl*"))
