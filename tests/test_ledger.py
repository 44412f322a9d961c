"""The provenance ledger, run against SQLite and against a real PostgreSQL server.

PostgreSQL comes from $COLLAPSELAB_TEST_PG_URL (``source .ci/postgres.sh`` starts one on
127.0.0.1 and sets it). Without a reachable server the PostgreSQL half is skipped, except under
CI=true, where it fails: CI must test the backend teams share.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from collapselab.errors import UserError
from collapselab.provenance.ledger import (
    Document,
    Ledger,
    Model,
    Snapshot,
    chain_hash,
    entry_fields,
    hash_content,
    verify,
)

PG_ENV = "COLLAPSELAB_TEST_PG_URL"
T0 = "2024-01-01T00:00:00.000000Z"


# --------------------------------------------------------------------------------------------
# Fixtures: one ledger location per backend
# --------------------------------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def pg_engine():
    """An engine on the test server, or a skip (a failure under CI=true) saying why there is none."""
    url = os.environ.get(PG_ENV, "").strip()
    reason = None
    engine = None
    if not url:
        reason = f"no PostgreSQL server: ${PG_ENV} is not set (run `source .ci/postgres.sh` to start one)"
    else:
        if importlib.util.find_spec("psycopg") is None:
            reason = "no PostgreSQL driver: pip install 'psycopg[binary]'"
        else:
            engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            except sa.exc.DBAPIError as e:
                label = sa.make_url(url).render_as_string(hide_password=True)
                reason = f"no PostgreSQL server at {label}: {str(e.orig).strip().splitlines()[0]}"
                engine.dispose()
                engine = None
    if reason:
        if _in_ci():
            pytest.fail(f"{reason}; CI=true, and CI must test the ledger on PostgreSQL", pytrace=False)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """Where a fresh ledger goes: a file, or a fresh schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite")
        return
    engine = request.getfixturevalue("pg_engine")
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def h(name: str) -> str:
    return hash_content(name)


HUMAN = [h(f"human-{i}") for i in range(6)]
SYNTH = [h(f"synthetic-{i}") for i in range(4)]
SYNTH2 = [h(f"synthetic2-{i}") for i in range(3)]


def build_run(url: str) -> Ledger:
    """What a run records: human data, a snapshot, generation 0, its output, its children.

    seq  1-6  human documents          seq 7  snapshot s0 (human)       seq 8  model m0 (s0)
    seq  9-12 synthetic docs of m0     seq 13 snapshot s1 (mix)         seq 14 model m1 (parent m0, s1)
    seq 15-17 synthetic docs of m1     seq 18 snapshot s2               seq 19 model m2 (parents m1, m0, s2)
    """
    ledger = Ledger(url)
    for i, d in enumerate(HUMAN):
        ledger.add_document(d, "human", source=f"sotu/{i}.txt", licence="public-domain", created_at=T0)
    ledger.add_snapshot("s0", HUMAN, created_at=T0)
    ledger.add_model("m0", "ngram", snapshot="s0", created_at=T0)
    ledger.append([Document(d, "synthetic", source="run/gen01", licence="CC0", model_id="m0", generation=1,
                            watermark_key_id="key-1", created_at=T0) for d in SYNTH])
    ledger.add_snapshot("s1", HUMAN[:2] + SYNTH, created_at=T0)
    ledger.add_model("m1", "ngram", parents=["m0"], snapshot="s1", created_at=T0)
    for d in SYNTH2:
        ledger.add_document(d, "synthetic", model_id="m1", generation=2, created_at=T0)
    ledger.add_snapshot("s2", SYNTH2 + SYNTH[:1], created_at=T0)
    ledger.add_model("m2", "ngram", parents=["m1", "m0"], snapshot="s2", created_at=T0)
    return ledger


def sql(ledger: Ledger, statement: str, **params) -> None:
    """Tamper with the ledger the way someone with database access would: plain SQL."""
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def problems_at(report, seq: int) -> list:
    return [p for p in report.problems if p.seq == seq]


# --------------------------------------------------------------------------------------------
# Recording and reading
# --------------------------------------------------------------------------------------------


def test_untouched_ledger_verifies(ledger_url):
    with build_run(ledger_url) as ledger:
        report = ledger.verify()
        assert report.ok, str(report)
        assert report.entries == len(ledger) == 19
        assert report.snapshots == 3
        assert (report.head_seq, report.head_hash) == ledger.head()
        assert "valid ledger" in str(report)
    assert verify(ledger_url).ok  # the module function opens it read-only


def test_chain_is_deterministic_and_recomputable(ledger_url, tmp_path):
    with build_run(ledger_url) as a, build_run(str(tmp_path / "other.sqlite")) as b:
        assert a.head() == b.head()  # same records, same times: same chain, whatever the backend
        doc = a.document(HUMAN[0])
        assert doc.seq == 1
        with a.engine.connect() as conn:
            first = conn.execute(sa.text("SELECT prev_hash, entry_hash FROM ledger_entries WHERE seq = 1")).one()
        assert first.prev_hash == "0" * 64
        assert first.entry_hash == chain_hash("0" * 64, entry_fields(1, doc))


def test_run_like_workflow_lineage(ledger_url):
    with build_run(ledger_url) as ledger:
        assert ledger.parents("m0") == ()
        assert ledger.parents("m1") == ("m0",)
        assert ledger.parents("m2") == ("m1", "m0")
        assert ledger.synthetic_depth("m0") == 0
        assert ledger.synthetic_depth("m1") == 1
        assert ledger.synthetic_depth("m2") == 2
        assert ledger.ancestors("m2") == ["m1", "m0"]
        m1 = ledger.model("m1")
        assert (m1.family, m1.snapshot, m1.seq) == ("ngram", "s1", 14)
        docs = ledger.documents(origin="synthetic", model_id="m0")
        assert [d.content_hash for d in docs] == SYNTH
        assert all(d.generation == 1 and d.watermark_key_id == "key-1" and d.licence == "CC0" for d in docs)
        assert {d.content_hash for d in ledger.documents(snapshot="s1")} == set(HUMAN[:2] + SYNTH)
        s1 = ledger.snapshot("s1")
        assert s1.content_hashes == tuple(sorted(HUMAN[:2] + SYNTH)) and s1.size == 6
        assert [m.model_id for m in ledger.models()] == ["m0", "m1", "m2"]
        # synthetic data with no registered maker counts its generation
        ledger.add_document(h("external"), "synthetic", generation=3)
        ledger.add_snapshot("s3", [h("external"), HUMAN[0]])
        ledger.add_model("m3", "gaussian", snapshot="s3")
        assert ledger.synthetic_depth("m3") == 3
        # a model with only human data and no parents, and a child of it
        ledger.add_model("h0", "ngram", snapshot="s0")
        ledger.add_model("h1", "ngram", parents=["h0"])
        assert ledger.synthetic_depth("h1") == 0
        with pytest.raises(UserError, match="no model 'nope'"):
            ledger.synthetic_depth("nope")
        assert ledger.verify().ok


def test_deep_lineage_does_not_recurse(tmp_path):
    with Ledger(tmp_path / "deep.sqlite") as ledger:
        records: list = [Document(h("seed"), "human", created_at=T0), Snapshot("g0", (h("seed"),), created_at=T0),
                         Model("g0", "ngram", snapshot="g0", created_at=T0)]
        for g in range(1, 1500):
            d = h(f"gen-{g}")
            records += [Document(d, "synthetic", model_id=f"g{g - 1}", generation=g, created_at=T0),
                        Snapshot(f"g{g}", (d,), created_at=T0), Model(f"g{g}", "ngram", snapshot=f"g{g}", created_at=T0)]
        ledger.append(records)
        assert ledger.synthetic_depth("g1499") == 1499


def test_lineage_of_a_tampered_ledger_fails_cleanly(tmp_path):
    with build_run(str(tmp_path / "l.sqlite")) as ledger:
        sql(ledger, "UPDATE ledger_model_parents SET parent_id = 'm2' WHERE model_seq = 14")  # m1's parent := m2
        with pytest.raises(UserError, match="loops back on itself"):
            ledger.synthetic_depth("m2")
        assert ledger.ancestors("m1") == ["m2", "m0"]  # terminates
        assert 14 in ledger.verify().bad_entries()


def test_append_is_idempotent_and_refuses_conflicts(ledger_url):
    with build_run(ledger_url) as ledger:
        n = len(ledger)
        again = ledger.add_document(HUMAN[0], "human", source="sotu/0.txt", licence="public-domain")
        assert again.seq == 1 and len(ledger) == n
        assert ledger.add_snapshot("s0", reversed(HUMAN)).seq == 7
        assert ledger.add_model("m1", "ngram", parents=["m0"], snapshot="s1").seq == 14
        with pytest.raises(UserError, match=r"already entry 1 with origin='human' \(not 'synthetic'\)"):
            ledger.add_document(HUMAN[0], "synthetic", model_id="m0")
        with pytest.raises(UserError, match="snapshot 's0' is already entry 7"):
            ledger.add_snapshot("s0", HUMAN[:3])
        with pytest.raises(UserError, match="model 'm1' is already entry 14"):
            ledger.add_model("m1", "gmm")
        # a batch that fails half-way leaves nothing behind
        with pytest.raises(UserError):
            ledger.append([Document(h("new-1"), "human"), Model("m9", "ngram", parents=["missing"])])
        assert len(ledger) == n and ledger.document(h("new-1")) is None
        assert ledger.verify().ok


def test_references_and_fields_are_checked(ledger_url):
    with Ledger(ledger_url) as ledger:
        ledger.add_document(HUMAN[0], "human")
        bad = [
            (lambda: ledger.add_document(h("x"), "synthetic", model_id="ghost"), "generating model 'ghost' is not in the ledger"),
            (lambda: ledger.add_model("m", "ngram", parents=["ghost"]), "parent 'ghost' is not in the ledger"),
            (lambda: ledger.add_model("m", "ngram", snapshot="ghost"), "training snapshot 'ghost' is not in the ledger"),
            (lambda: ledger.add_snapshot("s", [HUMAN[0], h("never")]), "1 document.s. are not in the ledger"),
            (lambda: ledger.add_document("abc", "human"), "not a SHA-256 hash"),
            (lambda: ledger.add_document(h("y"), "robot"), "origin 'robot' is not one of"),
            (lambda: ledger.add_document(h("y"), "human", generation=2), "a human document has no generating model"),
            (lambda: ledger.add_document(h("y"), "synthetic", generation=-1), "generation must be a whole number"),
            (lambda: ledger.add_model("", "ngram"), "model id must be a non-empty string"),
            (lambda: ledger.add_model("m", "ngram", parents="m0"), "parents must be a list"),
            (lambda: ledger.add_snapshot("s", HUMAN[0]), "content_hashes must be a list"),
        ]
        for call, message in bad:
            with pytest.raises(UserError, match=message):
                call()
        assert len(ledger) == 1
        upper = ledger.add_document(h("case").upper(), "unknown")
        assert upper.content_hash == h("case")


def test_inclusion_proofs(ledger_url):
    with build_run(ledger_url) as ledger:
        for name, members in (("s0", HUMAN), ("s1", HUMAN[:2] + SYNTH), ("s2", SYNTH2 + SYNTH[:1])):
            snap = ledger.snapshot(name)
            for d in members:
                proof = ledger.prove(name, d)
                assert proof.verify() and proof.root == snap.merkle_root and proof.size == len(members)
                forged = proof.__class__(**{**proof.__dict__, "content_hash": h("forged")})
                assert not forged.verify()
                if proof.path:
                    bent = proof.__class__(**{**proof.__dict__, "path": ("00" * 32,) + proof.path[1:]})
                    assert not bent.verify()
        with pytest.raises(UserError, match="is not in snapshot 's0'"):
            ledger.prove("s0", SYNTH[0])
        with pytest.raises(UserError, match="no snapshot named 'zz'"):
            ledger.prove("zz", SYNTH[0])


# --------------------------------------------------------------------------------------------
# Tamper evidence: every column of every table, and whole rows removed, swapped, inserted
# --------------------------------------------------------------------------------------------

# (table, column, key column, key value, seq the report must name)
COLUMNS = [
    ("ledger_entries", "kind", "seq", 3, 3),
    ("ledger_entries", "prev_hash", "seq", 5, 5),
    ("ledger_entries", "entry_hash", "seq", 5, 5),
    ("ledger_documents", "content_hash", "seq", 9, 9),
    ("ledger_documents", "origin", "seq", 9, 9),
    ("ledger_documents", "source", "seq", 9, 9),
    ("ledger_documents", "licence", "seq", 9, 9),
    ("ledger_documents", "model_id", "seq", 9, 9),
    ("ledger_documents", "generation", "seq", 9, 9),
    ("ledger_documents", "watermark_key_id", "seq", 9, 9),
    ("ledger_documents", "created_at", "seq", 2, 2),
    ("ledger_models", "model_id", "seq", 14, 14),
    ("ledger_models", "family", "seq", 14, 14),
    ("ledger_models", "snapshot", "seq", 14, 14),
    ("ledger_models", "created_at", "seq", 8, 8),
    ("ledger_model_parents", "parent_id", "model_seq", 19, 19),
    ("ledger_model_parents", "position", "model_seq", 19, 19),
    ("ledger_snapshots", "name", "seq", 13, 13),
    ("ledger_snapshots", "size", "seq", 13, 13),
    ("ledger_snapshots", "merkle_root", "seq", 13, 13),
    ("ledger_snapshots", "created_at", "seq", 7, 7),
    ("ledger_snapshot_members", "content_hash", "snapshot_seq", 13, 13),
    ("ledger_snapshot_members", "position", "snapshot_seq", 13, 13),
]


def flip(value):
    """Change one byte: the first character of a string (one bit), or an integer."""
    if isinstance(value, int):
        return value + 7
    first = value[0]
    flipped = {"0": "1", "a": "b", "d": "e", "m": "n", "s": "t", "h": "i", "2": "3"}.get(first, chr(ord(first) ^ 1))
    return flipped + value[1:]


@pytest.mark.parametrize("table,column,key,key_value,seq", COLUMNS, ids=[f"{t[7:]}.{c}" for t, c, *_ in COLUMNS])
def test_flipping_any_column_is_detected_and_named(ledger_url, table, column, key, key_value, seq):
    with build_run(ledger_url) as ledger:
        extra = " AND position = 0" if table in ("ledger_model_parents", "ledger_snapshot_members") else ""
        with ledger.engine.connect() as conn:
            value = conn.execute(sa.text(f"SELECT {column} FROM {table} WHERE {key} = :k{extra}"), {"k": key_value}).scalar()
        assert value is not None
        sql(ledger, f"UPDATE {table} SET {column} = :v WHERE {key} = :k{extra}", v=flip(value), k=key_value)
        report = ledger.verify()
        assert not report.ok
        assert seq in report.bad_entries(), str(report)
        named = problems_at(report, seq)
        assert any(p.kind is not None for p in named), str(report)
        assert str(report).startswith(f"{ledger.label}: INVALID ledger")


def test_removed_entries_are_named(ledger_url):
    with build_run(ledger_url) as ledger:
        sql(ledger, "DELETE FROM ledger_entries WHERE seq = 4")
        sql(ledger, "DELETE FROM ledger_documents WHERE seq = 4")  # the whole document gone
        sql(ledger, "DELETE FROM ledger_documents WHERE seq = 10")  # only its record
        sql(ledger, "DELETE FROM ledger_entries WHERE seq = 15")  # only its entry
        report = ledger.verify()
        assert [(p.seq, p.kind) for p in report.problems if p.what == "removed"] == [
            (4, None), (10, "document"), (15, "document")], str(report)
        # and the snapshots that held the removed documents say so
        assert [(p.seq, p.what) for p in report.problems if p.what != "removed"] == [
            (7, "reference"), (13, "reference"), (18, "reference")], str(report)


def test_swapped_rows_are_named(ledger_url):
    with build_run(ledger_url) as ledger:
        # swap the content of two documents (via a temporary value: content_hash is unique)
        sql(ledger, "UPDATE ledger_documents SET content_hash = :t WHERE seq = 2", t=h("tmp"))
        sql(ledger, "UPDATE ledger_documents SET content_hash = :v WHERE seq = 5", v=HUMAN[1])
        sql(ledger, "UPDATE ledger_documents SET content_hash = :v WHERE seq = 2", v=HUMAN[4])
        report = ledger.verify()
        assert report.bad_entries() == {2, 5}, str(report)
        assert {p.what for p in report.problems} == {"changed"}


def test_reordered_entries_are_named(ledger_url):
    with build_run(ledger_url) as ledger:
        # move entry 9 to position 10 and 10 to 9, whole rows, hashes and all
        for table in ("ledger_entries", "ledger_documents"):
            sql(ledger, f"UPDATE {table} SET seq = 1000 WHERE seq = 9")
            sql(ledger, f"UPDATE {table} SET seq = 9 WHERE seq = 10")
            sql(ledger, f"UPDATE {table} SET seq = 10 WHERE seq = 1000")
        report = ledger.verify()
        assert {9, 10} <= report.bad_entries(), str(report)


def test_inserted_rows_are_named(ledger_url):
    with build_run(ledger_url) as ledger:
        # a forged document spliced in at seq 5, later entries renumbered, the chain relinked up to it
        for table in ("ledger_entries", "ledger_documents", "ledger_snapshots", "ledger_models"):
            sql(ledger, f"UPDATE {table} SET seq = seq + 100000 WHERE seq >= 5")
            sql(ledger, f"UPDATE {table} SET seq = seq - 99999 WHERE seq >= 100000")
        sql(ledger, "UPDATE ledger_model_parents SET model_seq = model_seq + 1")
        sql(ledger, "UPDATE ledger_snapshot_members SET snapshot_seq = snapshot_seq + 1")
        forged = Document(h("forged"), "human", created_at=T0)
        with ledger.engine.connect() as conn:
            prev = conn.execute(sa.text("SELECT entry_hash FROM ledger_entries WHERE seq = 4")).scalar()
        sql(ledger, "INSERT INTO ledger_entries VALUES (5, 'document', :p, :e)", p=prev,
            e=chain_hash(prev, entry_fields(5, forged)))
        sql(ledger, "INSERT INTO ledger_documents (seq, content_hash, origin, created_at) VALUES (5, :c, 'human', :t)",
            c=forged.content_hash, t=T0)
        report = ledger.verify()
        assert 6 in report.bad_entries(), str(report)
        assert any(p.seq == 6 and p.what == "broken-chain" and "inserted" in p.message for p in report.problems)
        assert not problems_at(report, 4)


def test_orphan_and_appended_rows_are_named(ledger_url):
    with build_run(ledger_url) as ledger:
        # a record with no entry, and an entry row appended with a made-up hash
        sql(ledger, "INSERT INTO ledger_documents (seq, content_hash, origin, created_at) VALUES (500, :c, 'human', :t)",
            c=h("orphan"), t=T0)
        sql(ledger, "INSERT INTO ledger_entries VALUES (20, 'document', :p, :e)", p="1" * 64, e="2" * 64)
        sql(ledger, "INSERT INTO ledger_documents (seq, content_hash, origin, created_at) VALUES (20, :c, 'human', :t)",
            c=h("late"), t=T0)
        report = ledger.verify()
        assert {(p.seq, p.what) for p in report.problems} >= {(500, "inserted"), (20, "broken-chain"), (20, "changed")}, str(report)


def test_snapshot_members_are_covered_by_the_merkle_root(ledger_url):
    with build_run(ledger_url) as ledger:
        sql(ledger, "DELETE FROM ledger_snapshot_members WHERE snapshot_seq = 7 AND position = 3")
        sql(ledger, "INSERT INTO ledger_snapshot_members VALUES (18, 99, :c)", c=HUMAN[5])
        report = ledger.verify()
        assert [(p.seq, p.what) for p in report.problems] == [(7, "merkle"), (18, "merkle")], str(report)


def test_expected_head_detects_truncation_and_rewrites(ledger_url):
    with build_run(ledger_url) as ledger:
        head = ledger.head()
        ledger.add_document(h("later"), "human")
        assert ledger.verify(expected_head=head).ok  # growing is fine
        sql(ledger, "DELETE FROM ledger_entries WHERE seq >= 19")
        sql(ledger, "DELETE FROM ledger_documents WHERE seq >= 19")
        sql(ledger, "DELETE FROM ledger_models WHERE seq >= 19")
        sql(ledger, "DELETE FROM ledger_model_parents WHERE model_seq >= 19")
        assert ledger.verify().ok  # a cut-off tail is invisible to the chain alone...
        report = ledger.verify(expected_head=head)
        assert [(p.seq, p.what) for p in report.problems] == [(19, "truncated")]  # ...not to a kept head
        assert not ledger.verify(expected_head=(5, "f" * 64)).ok


# --------------------------------------------------------------------------------------------
# Bad input: one clear line, nothing modified
# --------------------------------------------------------------------------------------------


def snapshot_files(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_random_bytes_file_is_a_user_error(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(bytes(range(256)) * 40)
    before = snapshot_files(tmp_path)
    for call in (lambda: verify(path), lambda: Ledger(path), lambda: Ledger(f"sqlite:///{path}")):
        with pytest.raises(UserError) as e:
            call()
        message = str(e.value)
        assert str(path) in message and "\n" not in message and "not a ledger" in message
    assert snapshot_files(tmp_path) == before


def test_sqlite_file_that_is_not_a_ledger(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.execute("INSERT INTO notes VALUES ('keep me')")
    con.commit()
    con.close()
    before = snapshot_files(tmp_path)
    for call in (lambda: verify(path), lambda: Ledger(path)):
        with pytest.raises(UserError, match=r"other\.db: is a database but not a collapselab ledger"):
            call()
    assert snapshot_files(tmp_path) == before  # not even a -wal or -journal file appeared


def test_damaged_ledgers(tmp_path):
    good = tmp_path / "good.sqlite"
    build_run(str(good)).close()
    # cut in half: unreadable pages
    half = tmp_path / "half.sqlite"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    try:
        report = verify(half)
    except UserError as e:
        assert str(half) in str(e) and "\n" not in str(e)
    else:
        assert not report.ok
    # wrong ledger format marker, dropped table
    for statement, message in (("UPDATE ledger_meta SET value = 'x' WHERE key = 'format'", "not a collapselab ledger"),
                               ("UPDATE ledger_meta SET value = '9' WHERE key = 'version'", "ledger version '9'"),
                               ("DROP TABLE ledger_snapshots", "table ledger_snapshots is missing")):
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(good.read_bytes())
        with Ledger(copy) as ledger:
            sql(ledger, statement)
        with pytest.raises(UserError, match=message):
            verify(copy)


def test_garbled_values_fail_closed(tmp_path):
    # SQLite stores whatever it is given: the verifier must refuse values of the wrong type
    for statement in ("UPDATE ledger_documents SET generation = 'one' WHERE seq = 9",
                      "UPDATE ledger_documents SET source = x'00ff' WHERE seq = 2",
                      "UPDATE ledger_documents SET licence = CAST(x'ff' AS TEXT) WHERE seq = 2",
                      "UPDATE ledger_entries SET entry_hash = 'zz' WHERE seq = 3",
                      "UPDATE ledger_entries SET kind = 'coffee' WHERE seq = 3",
                      "UPDATE ledger_snapshot_members SET content_hash = 42 WHERE snapshot_seq = 7 AND position = 0",
                      "UPDATE ledger_entries SET seq = 2.5 WHERE seq = 2"):
        path = tmp_path / f"{uuid.uuid4().hex}.sqlite"
        with build_run(str(path)) as ledger:
            sql(ledger, statement)
            report = ledger.verify()
        assert not report.ok, statement
        assert any(p.what == "unreadable" and p.seq is not None for p in report.problems) or "seq = 2.5" in statement, str(report)


def test_missing_paths_and_unsupported_urls(tmp_path):
    with pytest.raises(UserError, match="no ledger there"):
        verify(tmp_path / "nothing.sqlite")
    assert not (tmp_path / "nothing.sqlite").exists()
    with pytest.raises(UserError, match="is a folder"):
        Ledger(tmp_path)
    with pytest.raises(UserError, match="unsupported database 'mysql'"):
        Ledger("mysql://u:secret@localhost/db")
    with pytest.raises(UserError) as e:
        Ledger("postgresql://user:secret@127.0.0.1:1/nowhere", create=False)
    assert "secret" not in str(e.value) and "127.0.0.1:1/nowhere" in str(e.value)
    made = Ledger(tmp_path / "new" / "sub" / "l.sqlite")  # a new ledger makes its folder
    assert len(made) == 0 and made.verify().ok
    made.close()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(UserError, match="holds no ledger"):
        verify(empty)
    with Ledger(empty) as ledger:  # an empty file becomes a ledger when asked to
        assert ledger.add_document(h("a"), "human").seq == 1


# --------------------------------------------------------------------------------------------
# Concurrent writers
# --------------------------------------------------------------------------------------------


def _append_worker(url: str, worker: int, n: int, single: int, batch: int, barrier) -> None:
    """One writer process: ``n`` documents, the first ``single`` one per transaction, the rest
    ``batch`` per transaction (``append_many``)."""
    barrier.wait()  # all writers start together, and all open (and maybe create) the ledger at once
    with Ledger(url) as ledger:
        def doc(i: int) -> Document:
            return Document(h(f"w{worker}-{i}"), "synthetic" if i % 2 else "human", source=f"worker-{worker}",
                            generation=(i % 5) if i % 2 else None, created_at=T0)

        for i in range(single):
            d = doc(i)
            ledger.add_document(d.content_hash, d.origin, source=d.source, generation=d.generation, created_at=T0)
        for start in range(single, n, batch):
            ledger.append_many([doc(i) for i in range(start, min(start + batch, n))])


def run_writers(url: str, workers: int, n: int, single: int, batch: int = 100) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_append_worker, args=(url, w, n, single, batch, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=900)
    assert [p.exitcode for p in procs] == [0] * workers

    with Ledger(url, create=False) as ledger:
        report = ledger.verify()
        assert report.ok, str(report)
        assert report.entries == len(ledger) == workers * n
        with ledger.engine.connect() as conn:
            seqs = conn.execute(sa.text("SELECT seq FROM ledger_entries ORDER BY seq")).scalars().all()
            rows = conn.execute(sa.text("SELECT seq, source, content_hash FROM ledger_documents ORDER BY seq")).all()
        assert seqs == list(range(1, workers * n + 1))  # gap-free, no fork
        for w in range(workers):
            mine = [r for r in rows if r.source == f"worker-{w}"]
            assert [r.content_hash for r in mine] == [h(f"w{w}-{i}") for i in range(n)]  # all there, in order


def test_concurrent_appends_4x2000(ledger_url):
    """4 processes, 2,000 documents each: 100 single appends, then batches of 100, all interleaved."""
    run_writers(ledger_url, workers=4, n=2000, single=100)


@pytest.mark.slow
def test_concurrent_single_appends_4x2000(ledger_url):
    """The same with every one of the 8,000 documents in its own transaction."""
    run_writers(ledger_url, workers=4, n=2000, single=2000)


# --------------------------------------------------------------------------------------------
# The command line (runs once `collapselab ledger` is wired into cli.py)
# --------------------------------------------------------------------------------------------


def test_cli_ledger_verify(tmp_path, monkeypatch, capsys):
    import sys

    from collapselab import cli

    if "ledger" not in {g.name for g in cli.app.registered_groups}:
        pytest.skip("`collapselab ledger` is not in cli.py yet")

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["collapselab", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    path = tmp_path / "ledger.sqlite"
    build_run(str(path)).close()
    code, out, _ = run("ledger", "verify", str(path))
    assert code == 0 and "valid ledger, 19 entries" in out
    with Ledger(path) as ledger:
        sql(ledger, "UPDATE ledger_documents SET licence = 'stolen' WHERE seq = 3")
    code, out, _ = run("ledger", "verify", str(path))
    assert code == 1 and "entry 3 (document): changed" in out
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 100)
    code, _, err = run("ledger", "verify", str(junk))
    assert code == 2 and "junk.sqlite: not a ledger" in err and err.count("\n") == 1


def test_wal_switch_refused_while_another_process_writes_is_not_an_error(tmp_path):
    """Several processes opening a new ledger together: one may be writing when another asks for
    WAL mode, which SQLite then refuses at once. The open must succeed (CI saw
    'database is locked' from the PRAGMA) and the switch happen on a later open."""
    import sqlite3

    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    con = sqlite3.connect(path, isolation_level=None)
    assert con.execute("PRAGMA journal_mode=DELETE").fetchall() == [("delete",)]
    con.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with Ledger(path) as ledger:
            assert len(ledger) == 0
    finally:
        con.execute("ROLLBACK")
    con.close()
    Ledger(path).close()
    with sqlite3.connect(path) as fresh:
        assert fresh.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
