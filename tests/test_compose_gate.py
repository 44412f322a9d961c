"""``compose`` (the public summary of training content, every number traced) and ``gate`` (a policy for CI).

The world: a vault of 40 human texts (snapshot s1); a web file of 20 other human texts (5 of them
recorded human in a ledger) and 30 watermarked texts, recorded synthetic in the ledger: 20 made by
gen-a (trained on nothing synthetic: depth 1), 10 by gen-b (trained on gen-a's output: depth 2).
``mix --min-human 0.3`` adds 22 vault documents: 72 records, 27 verified human (22 vault + 5
ledger), 30 synthetic, 15 unverified.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collapselab.errors import UserError
from collapselab.provenance.ledger import Ledger, hash_content
from conftest import fixed_key_file
from test_pipeline import _jsonl
from test_run_cli import one_error_line, strict

V = 200  # words


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from collapselab.corpus.tokenize import Vocabulary
    from collapselab.pipeline import mix_corpus, scan_corpus
    from collapselab.provenance.keys import load_key
    from collapselab.provenance.vault import init_vault
    from collapselab.provenance.watermark import Watermark

    d = tmp_path_factory.mktemp("compose")
    vocab = Vocabulary([f"w{i}" for i in range(V)])
    vocab.save(d / "vocab.txt")
    key = fixed_key_file(d / "wm.key")
    wm = Watermark(load_key(key))
    green = wm.green(np.arange(len(vocab))[:, None, None], np.arange(len(vocab)))  # (context, token)
    green[:, :3] = False  # never the special tokens
    rng = np.random.default_rng(0)

    def human() -> str:
        return " ".join(f"w{i}" for i in rng.integers(0, V, 40))

    def marked() -> str:
        prev, words = 0, []
        for _ in range(40):
            prev = int(rng.choice(np.flatnonzero(green[prev])))
            words.append(vocab.words[prev])
        return " ".join(words)

    humans, synth = [human() for _ in range(60)], [marked() for _ in range(30)]
    v = init_vault(d / "vault")
    v.add_texts([(f"h{i}", t) for i, t in enumerate(humans[:40])], source="Old books", licence="public domain",
                captured_before="2020-01-01")
    v.seal("s1")

    led = Ledger(d / "ledger.sqlite")
    led.add_model("gen-a", "ngram")
    a_docs = led.append([ledger_doc(t, "gen-a") for t in synth[:20]])
    led.add_snapshot("train:gen-b", [x.content_hash for x in a_docs])
    led.add_model("gen-b", "ngram", snapshot="train:gen-b")
    led.append([ledger_doc(t, "gen-b") for t in synth[20:]])
    for t in humans[40:45]:
        led.add_document(hash_content(t), "human", source="forum archive")
    led.close()

    web = [{"text": t} for t in humans[40:] + synth]
    web = [web[i] for i in np.random.default_rng(1).permutation(len(web))]
    _jsonl(d / "web.jsonl", web)
    mix = mix_corpus([d / "web.jsonl"], vault=d / "vault", min_human=0.3, out=d / "train.jsonl", seed=0)
    scan = scan_corpus([d / "train.jsonl"], key=key, vocab=d / "vocab.txt", out=d / "s.parquet")
    return dict(dir=d, mix=mix, scan=scan, synth=synth, humans=humans, snap=v.snapshot("s1"),
                train=d / "train.jsonl", ledger=d / "ledger.sqlite")


def ledger_doc(text: str, model: str):
    from collapselab.provenance.ledger import Document

    return Document(hash_content(text), "synthetic", model_id=model, generation=1)


def _compose(w, **kw):
    from collapselab.report.compose import compose_trainset

    return compose_trainset(w["train"], scores=[w["dir"] / "s.parquet"], ledgers=[w["ledger"]], **kw)


# ---------------------------------------------------------------------------------- compose
def test_compose_counts_each_category_and_traces_it(world):
    c = _compose(world)
    manifest = world["dir"] / "train.jsonl.json"
    m = json.loads(manifest.read_text())
    assert world["mix"].human_records == 22 and m["counts"]["human"] == 22
    assert c.value("general", "documents") == 72
    p = c.data["provenance"]
    assert p["verified_human"]["by_vault"]["value"] == m["counts"]["human"] == c.value("mix", "vault_drawn_verified")
    assert p["verified_human"]["by_ledger"]["value"] == 5
    assert [p[k]["documents"]["value"] for k in ("verified_human", "synthetic", "unverified")] == [27, 30, 15]
    assert p["verified_human"]["share"]["value"] == pytest.approx(27 / 72)
    # the human count traces to the training set's bytes and to the sealed snapshot's Merkle root
    trace = p["verified_human"]["by_vault"]["trace"]
    from collapselab.pipeline.io import file_sha256

    assert {"file": str(world["train"]), "sha256": file_sha256(world["train"])} in trace
    vault_t = next(t for t in trace if "vault" in t)
    assert vault_t["merkle_root"] == world["snap"].merkle_root and vault_t["snapshot"] == "s1"
    mixed = c.data["mix"]["human_documents"]
    assert mixed["value"] == 22
    assert mixed["trace"] == [{"file": str(manifest), "sha256": file_sha256(manifest), "field": "human_documents"}]

    # synthetic: each generating model, its depth, traced to its ledger entries
    models = {x["model_id"]: x for x in c.data["sources"]["synthetic_models"]}
    assert {k: (x["documents"]["value"], x["depth"]["value"]) for k, x in models.items()} == {"gen-a": (20, 1),
                                                                                              "gen-b": (10, 2)}
    assert p["synthetic"]["max_depth"]["value"] == 2
    with Ledger(world["ledger"], create=False) as led:
        seq_b = led.document(hash_content(world["synth"][25])).seq
        head = led.head()
        model_b = led.model("gen-b").seq
    lt = next(t for t in models["gen-b"]["depth"]["trace"] if "ledger" in t)
    assert seq_b in lt["seqs"] and lt["model_seq"] == model_b and lt["head"] == f"{head[0]}:{head[1]}"

    # sources: the web file's records split by category; the vault's by its index source
    (web,) = c.data["sources"]["inputs"]
    assert [web[k]["value"] for k in ("records", "verified_human", "synthetic", "unverified")] == [50, 5, 30, 15]
    (vs,) = c.data["sources"]["vault"]
    assert (vs["source"], vs["licence"], vs["documents"]["value"]) == ("Old books", "public domain", 22)
    # processing: the scan's numbers traced to its manifest
    (scan,) = c.data["processing"]["detection"]
    assert scan["high"]["value"] == pytest.approx(world["scan"].high) and scan["flagged"]["value"] == world["scan"].flagged
    assert scan["high"]["trace"][0]["field"] == "result.high"
    assert c.value("processing", "deduplication", "exact_duplicates") == 0
    assert c.data["checks"] == []
    assert _compose(world).data == c.data  # deterministic: no clock, no randomness


def test_compose_markdown_footnotes_every_number(world, tmp_path):
    from collapselab.pipeline import filter_corpus

    kept = tmp_path / "kept.jsonl"
    filter_corpus(world["dir"] / "web.jsonl", detector="length", threshold=10_000, out=kept,
                  quarantine=tmp_path / "q.jsonl")
    c = _compose(world, kinds={"web.jsonl": "crawled", "Old books": "public"}, filtered=[kept])
    (f,) = c.data["processing"]["filtering"]
    assert (f["records"]["value"], f["kept"]["value"], f["quarantined"]["value"]) == (50, 50, 0)
    assert f["kept"]["trace"][0]["file"] == str(kept) + ".json"
    md = c.markdown()
    assert "### 2.1 Publicly available datasets" in md.split("vault source Old books")[0]
    for head in ("## 1. General information", "### 2.1 Publicly available datasets", "### 2.3 Data crawled",
                 "### 2.5 Synthetic data", "## 3. Data processing", "### 3.2 Deduplication"):
        assert head in md
    assert world["snap"].merkle_root in md
    refs = {int(x) for x in __import__("re").findall(r"\[\^(\d+)\](?!:)", md)}
    notes = {int(x) for x in __import__("re").findall(r"^\[\^(\d+)\]:", md, flags=__import__("re").M)}
    assert refs == notes and len(notes) >= 3
    crawled = md.split("### 2.3")[1].split("### 2.4")[0]
    assert "web.jsonl" in crawled and "| 50[^" in crawled
    assert "gen-b" in md.split("### 2.5")[1].split("### 2.6")[0]


def test_compose_cli_writes_markdown_and_json(world, run_main, tmp_path):
    code, out, err = run_main(["compose", world["train"], "--scores", world["dir"] / "s.parquet", "--ledger",
                               world["ledger"], "--out", tmp_path / "summary.md"], tmp_path)
    assert code == 0, err
    data = strict((tmp_path / "summary.json").read_text())
    assert data["provenance"]["verified_human"]["by_vault"]["value"] == 22
    assert (tmp_path / "summary.md").read_text().startswith("# Public summary of training content")
    code, out, err = run_main(["compose", world["train"], "--json"], tmp_path)  # no ledger: synthetic unknown
    assert code == 0, err
    d = strict(out)
    assert [d["provenance"][k]["documents"]["value"] for k in ("verified_human", "synthetic", "unverified")] == [22, 0, 50]


def test_compose_refuses_a_changed_trainset_and_reports_a_false_vault_claim(world, tmp_path):
    from collapselab.report.compose import compose_trainset

    fake = world["dir"] / "fake.jsonl"
    _jsonl(fake, [{"text": "not from the vault", "id": "vault:" + hash_content("not from the vault")},
                  {"text": world["humans"][0], "id": "vault:" + hash_content(world["humans"][0])}])
    c = compose_trainset(fake, vault=world["dir"] / "vault")
    assert c.value("provenance", "verified_human", "documents") == 1
    assert c.value("provenance", "unverified", "documents") == 1
    assert any("vault:HASH id" in x for x in c.data["checks"])
    changed = tmp_path / "train.jsonl"
    changed.write_bytes(world["train"].read_bytes() + b'{"text": "one more"}\n')
    (tmp_path / "train.jsonl.json").write_bytes((world["dir"] / "train.jsonl.json").read_bytes())
    with pytest.raises(UserError, match="changed since its manifest"):
        compose_trainset(changed)


# ------------------------------------------------------------------------------------- gate
def _policy(tmp_path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return p


def _gate(world, run_main, tmp_path, policy: Path, *extra):
    return run_main(["gate", world["train"], "--policy", policy, "--scores", world["dir"] / "s.parquet",
                     "--ledger", world["ledger"], *extra], tmp_path)


def test_gate_passes_a_good_set(world, run_main, tmp_path):
    assert world["scan"].high < 0.9
    pol = _policy(tmp_path, "min_verified_human_share: 0.3\nmax_synthetic_depth: 2\nmax_flagged_share: 0.9\n"
                            "max_unverified_share: 0.25\n")
    code, out, err = _gate(world, run_main, tmp_path, pol)
    assert code == 0, out + err
    assert out.startswith("PASS")


def test_gate_fails_a_contaminated_set_with_one_line_per_reason(world, run_main, tmp_path):
    high = world["scan"].high
    assert 0.3 < high < 1
    pol = _policy(tmp_path, f"min_verified_human_share: 0.5\nmax_synthetic_depth: 1\nmax_flagged_share: {high - 0.05:.3f}\n"
                            "max_unverified_share: 0.1\n")
    code, out, err = _gate(world, run_main, tmp_path, pol)
    assert code == 1, out + err
    lines = out.strip().splitlines()
    assert lines[0].startswith("FAIL")
    reasons = [x.strip() for x in lines[1:]]
    assert [r.split(":")[0] for r in reasons] == ["min_verified_human_share", "max_synthetic_depth",
                                                  "max_flagged_share", "max_unverified_share"]
    assert "27 of 72" in reasons[0] and "50.00%" in reasons[0]
    assert "gen-b (depth 2" in reasons[1] and f"{high:.2%}" in reasons[2] and "15 of 72" in reasons[3]
    code, out, _ = _gate(world, run_main, tmp_path, pol, "--json")
    r = strict(out)
    assert code == 1 and r["passed"] is False and len(r["reasons"]) == 4
    assert r["rules"]["max_synthetic_depth"] == {"limit": 1, "value": 2}


def test_gate_fails_closed(world, run_main, tmp_path):
    # a rule it cannot judge (no scan) and a provenance check that fails
    pol = _policy(tmp_path, "max_flagged_share: 0.5\n")
    code, out, _ = run_main(["gate", world["train"], "--policy", pol], tmp_path)
    assert code == 1 and "no scan that estimates" in out
    fake = _jsonl(tmp_path / "fake.jsonl", [{"text": "x", "id": "vault:" + hash_content("x")}])
    code, out, _ = run_main(["gate", fake, "--policy", _policy(tmp_path, ""), "--vault", world["dir"] / "vault"], tmp_path)
    assert code == 1 and "provenance check:" in out


@pytest.mark.parametrize("text, needles", [
    ("min_verified_human_share: 0.3\nmax_synthetic_dept: 2\n", ["policy.yaml", "max_synthetic_dept", "unknown rule"]),
    ("max_synthetic_depth: two\n", ["policy.yaml", "max_synthetic_depth", "integer", "'two'"]),
    ("max_flagged_share: 1.5\n", ["policy.yaml", "max_flagged_share", "1.5"]),
    ("max_unverified_share: '0.2'\n", ["policy.yaml", "max_unverified_share"]),
    ("- 0.3\n", ["policy.yaml", "mapping"]),
    ("max_synthetic_depth: [1\n", ["policy.yaml", "malformed YAML"]),
])
def test_bad_policy_is_one_line_exit_2(world, run_main, tmp_path, text, needles):
    code, out, err = _gate(world, run_main, tmp_path, _policy(tmp_path, text))
    one_error_line(code, err, *needles)


def test_bad_input_is_one_line_exit_2(world, run_main, tmp_path):
    code, _, err = run_main(["compose", tmp_path / "nope.jsonl"], tmp_path)
    one_error_line(code, err, "nope.jsonl", "no such file")
    code, _, err = run_main(["compose", world["train"], "--scores", world["dir"] / "web.jsonl"], tmp_path)
    one_error_line(code, err, "not a scan manifest")
    code, _, err = run_main(["compose", world["train"], "--kind", "web.jsonl=scraped"], tmp_path)
    one_error_line(code, err, "--kind", "crawled")
    code, _, err = run_main(["compose", world["train"], "--ledger", tmp_path / "none.sqlite"], tmp_path)
    one_error_line(code, err, "none.sqlite")
    code, _, err = run_main(["gate", world["train"], "--policy", tmp_path / "missing.yaml"], tmp_path)
    one_error_line(code, err, "missing.yaml")


def test_a_ledger_entry_for_the_whole_file_marks_its_records_synthetic(world, tmp_path):
    """A run folder's ledger records a generation's output as one document (the shard's hash)."""
    from collapselab.pipeline.io import file_sha256
    from collapselab.report.compose import compose_trainset

    shard = _jsonl(tmp_path / "gen3.jsonl", [{"text": t} for t in world["synth"][:4]])
    (tmp_path / "run").mkdir()
    with Ledger(tmp_path / "run" / "ledger.sqlite") as led:
        led.add_model("replace/seed0/gen2", "ngram")
        doc = led.add_document(file_sha256(shard), "synthetic", model_id="replace/seed0/gen2", generation=3)
    c = compose_trainset(shard, ledgers=[tmp_path / "run"])  # a run folder: its ledger.sqlite
    assert c.value("provenance", "synthetic", "documents") == 4
    (m,) = c.data["sources"]["synthetic_models"]
    assert m["model_id"] == "replace/seed0/gen2" and m["depth"]["value"] == 1
    assert m["depth"]["trace"][1]["seqs"] == [doc.seq]
