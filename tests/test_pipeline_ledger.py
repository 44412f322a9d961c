"""``scan``, ``filter`` and ``mix`` with ``--ledger``: each records a step with the files it read and
wrote (by SHA-256) and its settings; reruns add nothing; the steps verify, list and export as in-toto."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from test_pipeline_cli import DOCS, _jsonl, d, vault  # noqa: F401  (fixtures)
from test_run_cli import one_error_line, strict


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_pipeline(run_main, d: Path, vault: Path) -> None:
    assert run_main(["scan", "docs.jsonl", "--detector", "length", "--out", "s.parquet", "-j", "1", "--ledger", "l.sqlite"], d)[0] == 0
    assert run_main(["filter", "docs.jsonl", "--scores", "s.parquet", "--threshold", "150", "--out", "kept.jsonl",
                     "--quarantine", "q.jsonl", "--ledger", "l.sqlite"], d)[0] == 0
    assert run_main(["mix", "kept.jsonl", "--vault", vault, "--min-human", "0.3", "--out", "train.jsonl",
                     "--ledger", "l.sqlite"], d)[0] == 0


def test_each_command_records_what_it_read_and_wrote(d, vault, run_main):
    from collapselab.provenance.ledger import Ledger, verify

    run_pipeline(run_main, d, vault)
    with Ledger(d / "l.sqlite", create=False) as ledger:
        scan, filt, mix = ledger.steps()
        n = len(ledger)
    assert [s.name for s in (scan, filt, mix)] == ["scan", "filter", "mix"]
    assert scan.inputs == (("docs.jsonl", sha(d / "docs.jsonl")),)
    assert scan.outputs == (("s.parquet", sha(d / "s.parquet")), ("s.parquet.json", sha(d / "s.parquet.json")))
    assert scan.parameters["params"]["detector"] == "length" and scan.parameters["result"]["documents"] == len(DOCS)
    assert filt.inputs == (("docs.jsonl", sha(d / "docs.jsonl")), ("s.parquet", sha(d / "s.parquet")))
    assert [name for name, _ in filt.outputs] == ["kept.jsonl", "q.jsonl", "q.jsonl.reasons.jsonl", "kept.jsonl.json"]
    assert all(digest == sha(d / name) for name, digest in filt.outputs)
    kept, quarantined = filt.parameters["result"]["kept"], filt.parameters["result"]["quarantined"]
    assert kept + quarantined == len(DOCS) and kept == len((d / "kept.jsonl").read_text().splitlines())
    snap_file = Path(mix.inputs[1][0])
    assert mix.inputs[0] == ("kept.jsonl", sha(d / "kept.jsonl")) and snap_file.name == "s1.json"
    assert mix.inputs[1][1] == sha(snap_file) and mix.outputs[0] == ("train.jsonl", sha(d / "train.jsonl"))
    assert mix.parameters["params"]["snapshot"] == "s1" and mix.parameters["result"]["human_share"] >= 0.3
    assert verify(d / "l.sqlite").ok

    run_pipeline(run_main, d, vault)  # every command finds its finished output: the same steps, no new entry
    with Ledger(d / "l.sqlite", create=False) as ledger:
        assert len(ledger) == n and len(ledger.steps()) == 3

    status, out, err = run_main(["ledger", "steps", "l.sqlite", "--json"], d)
    listed = strict(out)
    assert status == 0 and [s["name"] for s in listed] == ["scan", "filter", "mix"], err
    assert listed[1]["outputs"][0] == {"name": "kept.jsonl", "sha256": sha(d / "kept.jsonl")}
    status, out, _ = run_main(["ledger", "steps", "l.sqlite"], d)
    assert status == 0 and "filter: docs.jsonl, s.parquet -> kept.jsonl, q.jsonl" in out


def test_a_changed_output_no_longer_matches_its_recorded_digest(d, vault, run_main):
    """What a data team checks: does the file they are about to train on match what the ledger says mix wrote?"""
    from collapselab.provenance.ledger import Ledger

    run_pipeline(run_main, d, vault)
    with Ledger(d / "l.sqlite", create=False) as ledger:
        recorded = dict(ledger.steps()[-1].outputs)
    assert recorded["train.jsonl"] == sha(d / "train.jsonl")
    with open(d / "train.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "a synthetic document slipped in afterwards"}) + "\n")
    assert recorded["train.jsonl"] != sha(d / "train.jsonl")


def test_steps_export_as_in_toto_statements_that_an_independent_library_verifies(d, vault, run_main):
    pytest.importorskip("securesystemslib")
    from test_intoto import envelope, independent_key

    from collapselab.provenance.intoto import STEP_PREDICATE_TYPE

    run_pipeline(run_main, d, vault)
    assert run_main(["keys", "new-signing", "k"], d)[0] == 0
    assert run_main(["ledger", "export", "l.sqlite", "--signing-key", "k", "--out", "att.jsonl"], d)[0] == 0
    key = independent_key(d / "k.pub")
    steps = []
    for line in (d / "att.jsonl").read_text().splitlines():
        env = json.loads(line)
        envelope(env).verify([key], 1)  # raises if the signature is not the key's
        statement = json.loads(base64.b64decode(env["payload"]))
        if statement["predicateType"] == STEP_PREDICATE_TYPE:
            steps.append(statement)
    assert [s["predicate"]["step"]["name"] for s in steps] == ["scan", "filter", "mix"]
    for s in steps:
        for subject in s["subject"]:
            assert subject["digest"]["sha256"] == sha(d / subject["name"])
    assert steps[2]["predicate"]["materials"][0] == {"name": "kept.jsonl", "digest": {"sha256": sha(d / "kept.jsonl")}}


@pytest.mark.parametrize("command", [
    ["scan", "docs.jsonl", "--detector", "length", "--out", "s.parquet"],
    ["filter", "docs.jsonl", "--detector", "length", "--threshold", "60", "--out", "kept.jsonl", "--quarantine", "q.jsonl"],
])
@pytest.mark.parametrize("ledger, needle", [("afile", "not a ledger"), (".", "is a folder")])
def test_a_bad_ledger_fails_in_one_line_before_any_output(d, run_main, command, ledger, needle):
    one_error_line(*run_main([*command, "--ledger", ledger], d)[::2], needle)
    assert not (d / "s.parquet").exists() and not (d / "kept.jsonl").exists()
    assert (d / "afile").read_text() == "mine"


def test_compose_traces_the_training_set_back_through_the_recorded_steps(d, vault, run_main):
    run_pipeline(run_main, d, vault)
    status, out, err = run_main(["compose", "train.jsonl", "--ledger", "l.sqlite", "--json"], d)
    assert status == 0, err
    steps = strict(out)["processing"]["steps"]
    assert [s["name"] for s in steps] == ["mix", "filter", "scan"]  # nearest first: what wrote the set, then its inputs
    assert [s["trace"][0]["seqs"] for s in steps] == [[3], [2], [1]]
    assert steps[1]["result"]["kept"] == len((d / "kept.jsonl").read_text().splitlines())
    status, md, _ = run_main(["compose", "train.jsonl", "--ledger", "l.sqlite"], d)
    assert status == 0 and "### 3.4 Pipeline steps recorded in the ledgers" in md
    assert "| mix[" in md and "`train.jsonl`, `train.jsonl.json` | `kept.jsonl`" in md
