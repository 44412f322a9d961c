"""Every run records its provenance in ledger.sqlite: the right shards, snapshots, models and
synthetic depths; a resumed run adds no duplicate entry; `collapselab lineage` draws the tree."""

import subprocess
import sys

import pytest

import collapselab as cl
from collapselab.loop.provenance import content_hash, model_id
from collapselab.provenance.ledger import Ledger, verify
from conftest import fixed_key_file, interrupt_after, write_text_folder

POLICIES = ["replace", "accumulate", "fresh:0.1"]


def _config(corpus):
    return {"corpus": str(corpus), "train_items": 120, "generations": 3, "policies": POLICIES, "seeds": [0]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_text_folder(tmp_path_factory.mktemp("prov") / "corpus", n_docs=20, sentences_per_doc=20)


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    return cl.run_experiment(_config(corpus), out=tmp_path_factory.mktemp("prov") / "run", jobs=1)


def test_ledger_is_valid_and_holds_every_generation(run):
    report = verify(run.path / "ledger.sqlite")
    assert report.ok, str(report)
    with Ledger(run.path / "ledger.sqlite", create=False) as L:
        ids = {m.model_id for m in L.models()}
        assert ids == {"seed0/gen0"} | {model_id(p, 0, g) for p in POLICIES for g in (1, 2, 3)}
        # each generation's output is the document whose hash is that of its saved samples
        for p in POLICIES:
            for g in range(4):
                samples = run.folder.read_samples(p, 0, g, True)
                docs = L.documents(model_id=model_id(p, 0, g))
                assert [d.content_hash for d in docs] == [content_hash(samples)]
                assert docs[0].origin == "synthetic" and docs[0].generation == g + 1


def test_snapshots_and_synthetic_depth_follow_the_policies(run):
    with Ledger(run.path / "ledger.sqlite", create=False) as L:
        human = {d.content_hash for d in L.documents(origin="human")}
        assert len(human) == 2  # the training set and the unseen reserve

        def makers(mid):
            docs = L.documents(snapshot=f"train:{mid}")
            return {d.model_id for d in docs if d.model_id}, {d.content_hash for d in docs if d.origin == "human"}

        for g in (1, 2, 3):
            assert L.synthetic_depth(model_id("replace", 0, g)) == g
            assert makers(model_id("replace", 0, g)) == ({model_id("replace", 0, g - 1)}, set())
            m, h = makers(model_id("accumulate", 0, g))
            assert m == {model_id("accumulate", 0, k) for k in range(g)} and len(h) == 1
            m, h = makers(model_id("fresh:0.1", 0, g))
            assert m == {model_id("fresh:0.1", 0, g - 1)} and len(h) == 1
        # accumulate's human shard is the training set, fresh's is the reserve
        assert makers(model_id("accumulate", 0, 1))[1] != makers(model_id("fresh:0.1", 0, 1))[1]
        assert L.synthetic_depth("seed0/gen0") == 0


def test_resumed_run_adds_no_duplicate_entries(run, corpus, tmp_path):
    stop = interrupt_after(4)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        cl.run_experiment(_config(corpus), out=out, jobs=1, on_event=stop)
    cl.run_experiment(None, out=out, resume=True, jobs=1)
    assert verify(out / "ledger.sqlite").ok
    with Ledger(out / "ledger.sqlite", create=False) as a, Ledger(run.path / "ledger.sqlite", create=False) as b:
        assert len(a) == len(b)
        key = lambda L: sorted((d.content_hash, d.model_id) for d in L.documents())  # noqa: E731
        assert key(a) == key(b)


def test_lineage_command_draws_the_tree(run):
    out = subprocess.run([sys.executable, "-m", "collapselab.cli", "lineage", str(run.path)],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("seed0/gen0" in ln for ln in lines)
    assert any("replace/seed0/gen3" in ln and "depth 3" in ln for ln in lines)
    assert any("accumulate/seed0/gen2" in ln and "output of gen0" in ln for ln in lines)


def test_key_files_are_private_and_never_printed(tmp_path):
    key = tmp_path / "wm.key"
    out = subprocess.run([sys.executable, "-m", "collapselab.cli", "keys", "new", str(key)],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    secret = key.read_text().strip()
    assert len(bytes.fromhex(secret)) == 32 and secret not in out.stdout + out.stderr
    again = subprocess.run([sys.executable, "-m", "collapselab.cli", "keys", "new", str(key)],
                           capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert again.returncode == 2 and key.read_text().strip() == secret  # never overwritten
    key.chmod(0o644)
    with pytest.raises(cl.UserError, match="readable by others"):
        cl.run_experiment({"watermark_key": str(key)}, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_watermarked_run_carries_the_key_through_generations(corpus, tmp_path):
    from collapselab.provenance.keys import load_key
    from collapselab.provenance.watermark import Watermark

    key = fixed_key_file(tmp_path / "k")
    cfg = {**_config(corpus), "policies": ["replace"], "watermark_key": str(key)}
    run = cl.run_experiment(cfg, out=tmp_path / "wm", jobs=1)
    m = run.metrics.sort_values("generation")
    assert (m["watermark_z"] > 8).all()  # every generation's output carries the watermark
    key_id = Watermark(load_key(key)).key_id
    with Ledger(run.path / "ledger.sqlite", create=False) as L:
        docs = L.documents(origin="synthetic")
        assert docs and all(d.watermark_key_id == key_id for d in docs)
    plain = cl.run_experiment({**cfg, "watermark_key": None}, out=tmp_path / "plain", jobs=1)
    assert "watermark_z" not in plain.metrics.columns


def test_anchor_and_fresh_draw_from_a_sealed_vault_and_record_it(corpus, tmp_path):
    from collapselab.provenance.vault import init_vault

    v = init_vault(tmp_path / "vault")
    v.add([corpus], source="test corpus", licence="CC0", captured_before="2020-01-01")
    snap = v.seal("pre-ai")
    cfg = {**_config(corpus), "policies": ["anchor:0.2", "fresh:0.1"], "vault": str(tmp_path / "vault")}
    run = cl.run_experiment(cfg, out=tmp_path / "run", jobs=1)
    ref = run.summary["corpus"]["vault"]
    assert ref["snapshot"] == "pre-ai" and ref["merkle_root"] == snap.merkle_root
    with Ledger(run.path / "ledger.sqlite", create=False) as L:
        vault_docs = [d for d in L.documents(origin="human") if d.source and "vault" in d.source]
        assert len(vault_docs) == 1 and snap.merkle_root in vault_docs[0].source
        for p in ("anchor:0.2", "fresh:0.1"):
            hashes = {d.content_hash for d in L.documents(snapshot=f"train:{model_id(p, 0, 2)}")}
            assert vault_docs[0].content_hash in hashes  # the vault fed the training set
    # a vault that does not exist is a clear error, before any folder is written
    with pytest.raises(cl.UserError):
        cl.run_experiment({**cfg, "vault": str(tmp_path / "nope")}, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_each_sample_shard_gets_a_signed_sidecar(corpus, tmp_path):
    from collapselab.provenance.credentials import init_credentials
    from collapselab.provenance.credentials import verify as verify_credentials

    creds = tmp_path / "creds"
    init_credentials(creds)
    cfg = {**_config(corpus), "policies": ["replace"], "generations": 2, "credentials": str(creds)}
    run = cl.run_experiment(cfg, out=tmp_path / "run", jobs=1)
    for g in range(3):
        shard = run.folder.sample_path("replace", 0, g, True)
        result = verify_credentials(shard, trust=creds)
        # gen0g.parquet is made by generation g's model: its credential says generation g (it said g + 1)
        assert result.valid and result.trusted and result.generation == g, result.problems
        assert result.model_id.endswith(f"gen{g}"), result.model_id
    shard = run.folder.sample_path("replace", 0, 1, True)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    assert not verify_credentials(shard, trust=creds).valid
    with pytest.raises(cl.UserError):
        cl.run_experiment({**cfg, "credentials": str(tmp_path / "none")}, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_model_that_repeats_another_models_output_is_recorded_not_refused(tmp_path):
    """A collapsed deterministic decoder can write exactly what an earlier generation wrote: the
    document stays its first writer's entry, and the later model's output is named by a snapshot
    of it, which a resumed run reads back (before the fix the ledger refused the run)."""
    from collapselab.loop.provenance import RunLedger, output_snapshot

    path = tmp_path / "ledger.sqlite"
    led = RunLedger(path, family="gpt", corpus_name="c", human="a" * 64, pool="b" * 64)
    same = "c" * 64
    led.record("replace", 0, 0, (-1,), same)
    led.record("replace", 0, 1, (0,), same)  # generation 1 wrote generation 0's text again
    led.record("replace", 0, 2, (1,), "d" * 64)
    led.record("replace", 0, 0, (-1,), same)  # the same model recorded twice: one entry, no snapshot
    led.close()
    ledger = Ledger(path)
    try:
        doc = ledger.document(same)
        assert doc.model_id == model_id("replace", 0, 0) and doc.generation == 1
        assert ledger.snapshot(output_snapshot(model_id("replace", 0, 1))).content_hashes == (same,)
        assert ledger.snapshot(output_snapshot(model_id("replace", 0, 0))) is None
        assert ledger.snapshot("train:replace/seed0/gen2").content_hashes == (same,)
    finally:
        ledger.close()
    assert verify(path).ok
    again = RunLedger(path, family="gpt", corpus_name="c", human="a" * 64, pool="b" * 64)  # a resume
    try:
        assert again._shard("replace", 0, 1) == same
    finally:
        again.close()
