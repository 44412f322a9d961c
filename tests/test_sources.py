"""One reader for every command (issue 14 item 1): collapselab.pipeline.sources, shards.plan,
io.shard_records and corpus.readers.read_documents on every format, folder and URL.

The same documents, stored in each format, must come back the same (texts, order and ids) through
both ``read_documents`` (``run --corpus``, ``vault add``) and ``plan`` + ``shard_records``
(``scan``, ``filter``, ``mix``); errors name the file and line (or row) and say what to do.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapselab.corpus.readers import read_documents
from collapselab.errors import UserError
from collapselab.pipeline import shards as sh
from collapselab.pipeline.io import Found, JsonlWriter, MalformedRecord, shard_records
from collapselab.pipeline.sources import expand_inputs, file_size, format_of, get_field, open_stream
from conftest import make_documents

DOCS = make_documents(30, 3, seed=7) + ["ünïcødé — “quotes” and a\nnewline", ""]
IDS = [f"doc-{i}" for i in range(len(DOCS))]


def records(nested: bool = False) -> list[dict]:
    """Dolma-shaped records: id, text (or metadata.body when nested), source, added."""
    if nested:
        return [{"id": i, "meta": {"body": d, "lang": "en"}, "source": "test"} for i, d in zip(IDS, DOCS)]
    return [{"id": i, "text": d, "source": "test", "added": "2020-01-01"} for i, d in zip(IDS, DOCS)]


def jsonl_bytes(recs: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def zstd(data: bytes) -> bytes:
    return pa.compress(data, codec="zstd", asbytes=True)


def save_dataset(folder: Path, recs: list[dict], num_shards: int = 3) -> Path:
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_list(recs).save_to_disk(str(folder), num_shards=num_shards)
    return folder


def write(fmt: str, root: Path, nested: bool = False) -> Path:
    """The corpus stored as ``fmt``; returns what a user would pass."""
    recs = records(nested)
    data = jsonl_bytes(recs)
    if fmt == "jsonl":
        (p := root / "c.jsonl").write_bytes(data)
    elif fmt == "jsonl.gz":
        (p := root / "c.jsonl.gz").write_bytes(gzip.compress(data))
    elif fmt == "json.gz":
        (p := root / "c.json.gz").write_bytes(gzip.compress(data))
    elif fmt == "jsonl.zst":
        (p := root / "c.jsonl.zst").write_bytes(zstd(data))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(recs), p := root / "c.parquet", row_group_size=7)
    elif fmt == "dolma":  # a documents/ folder of .json.gz files, nested, sorted by relative path
        p = root / "documents"
        parts = [recs[:10], recs[10:20], recs[20:]]
        for name, part in zip(["a/0000.json.gz", "a/0001.json.gz", "b.json.gz"], parts):
            (p / name).parent.mkdir(parents=True, exist_ok=True)
            (p / name).write_bytes(gzip.compress(jsonl_bytes(part)))
    elif fmt == "datasets":
        p = save_dataset(root / "ds", recs)
    else:
        raise AssertionError(fmt)
    return p


FORMATS = ["jsonl", "jsonl.gz", "json.gz", "jsonl.zst", "parquet", "dolma", "datasets"]


def via_shards(inputs, field: str = "text", **kw) -> tuple[list[str], list[str | None]]:
    texts, ids = [], []
    for s in sh.plan(inputs, **kw):
        found = Found()
        for b in shard_records(s, text_field=field, on_error="fail", found=found, batch_size=4):
            texts += b.texts
            ids += b.ids
        assert found.sha256 and found.lines
    return texts, ids


# ------------------------------------------------------------------ every format, the same corpus
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_documents(tmp_path, fmt):
    p = write(fmt, tmp_path)
    assert [t for _, t in read_documents(p)] == DOCS
    assert via_shards([p]) == (DOCS, IDS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dotted_text_field_in_every_format(tmp_path, fmt):
    p = write(fmt, tmp_path, nested=True)
    assert [t for _, t in read_documents(p, text_field="meta.body")] == DOCS
    assert via_shards([p], "meta.body") == (DOCS, IDS)
    with pytest.raises(UserError, match="meta.lang2|'meta.nope'"):
        list(read_documents(p, text_field="meta.nope"))


def test_where_names_the_file_and_line_or_row(tmp_path):
    jl, pqf, ds = write("jsonl", tmp_path), write("parquet", tmp_path), write("datasets", tmp_path)
    assert [w for w, _ in read_documents(jl)][:2] == [f"{jl}, line 1", f"{jl}, line 2"]
    assert [w for w, _ in read_documents(pqf)][-1] == f"{pqf}, row {len(DOCS)}"
    wheres = [w for w, _ in read_documents(ds)]
    assert wheres[0] == f"{ds / 'data-00000-of-00003.arrow'}, row 1"
    assert wheres[-1].startswith(str(ds / "data-00002-of-00003.arrow"))


def test_text_folder_and_a_txt_shard(tmp_path):
    folder = tmp_path / "txt"
    folder.mkdir()
    for i, d in enumerate(DOCS):
        (folder / f"{i:03d}.txt").write_text(d, encoding="utf-8")
    assert [t for _, t in read_documents(folder)] == DOCS
    texts, ids = via_shards([folder])
    assert texts == DOCS and ids == [None] * len(DOCS)
    assert {s.fmt for s in sh.plan([folder])} == {"text"}


def test_plain_key_with_a_dot_wins_over_nesting(tmp_path):
    rec = {"meta.body": "flat", "meta": {"body": "nested"}}
    assert get_field(rec, "meta.body") == "flat"
    assert get_field({"meta": {"body": "nested"}}, "meta.body") == "nested"
    for bad in ({"meta": "a string"}, {"meta": {}}, {}):
        with pytest.raises(KeyError):
            get_field(bad, "meta.body")
    p = tmp_path / "d.jsonl"
    p.write_bytes(jsonl_bytes([rec]))
    assert [t for _, t in read_documents(p, text_field="meta.body")] == ["flat"]
    pq.write_table(pa.Table.from_pylist([rec]), tmp_path / "d.parquet")
    assert via_shards([tmp_path / "d.parquet"], "meta.body")[0] == ["flat"]


def test_parquet_struct_nulls_are_no_documents_for_read_documents(tmp_path):
    p = tmp_path / "n.parquet"
    pq.write_table(pa.Table.from_pylist([{"meta": {"body": "a"}}, {"meta": None}, {"meta": {"body": "b"}}]), p)
    assert list(read_documents(p, text_field="meta.body")) == [(f"{p}, row 1", "a"), (f"{p}, row 3", "b")]
    with pytest.raises(UserError, match=r"n\.parquet:2: malformed record"):  # scan's view: a malformed row
        via_shards([p], "meta.body")


# ------------------------------------------------------------------ folders
def test_folder_expansion_is_sorted_by_relative_path_and_skips_the_rest(tmp_path):
    d = write("dolma", tmp_path)
    (d / "a-b.json.gz").write_bytes(gzip.compress(b'{"text": "x"}\n'))  # '-' sorts before '/' as a string
    (d / ".tmp-part.json.gz").write_bytes(b"half written")  # hidden: skipped
    (d / "config.json").write_text("{}")  # a plain .json in a folder is no data file
    (d / "notes.csv").write_text("a,b\n")
    names = [str(Path(f).relative_to(d)) for f in expand_inputs([d])]
    assert names == ["a/0000.json.gz", "a/0001.json.gz", "a-b.json.gz", "b.json.gz"]
    assert expand_inputs([str(d) + "/"])[0] == str(d / "a/0000.json.gz")


def test_datasets_folder_follows_state_json_and_skips_cache_files(tmp_path):
    ds = write("datasets", tmp_path)
    state = json.loads((ds / "state.json").read_text())
    state["_data_files"].reverse()  # the order state.json gives, not the sorted one
    (ds / "state.json").write_text(json.dumps(state))
    pa.ipc.new_stream(ds / "cache-0123.arrow", pa.schema([("text", pa.string())])).close()
    files = expand_inputs([ds])
    assert [Path(f).name for f in files] == [d["filename"] for d in state["_data_files"]]
    assert {format_of(f) for f in files} == {"arrow"}
    texts = via_shards([ds])[0]
    assert sorted(texts) == sorted(DOCS) and texts != DOCS


def test_dataset_dict_folder_reads_its_splits_in_order(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(records()[:20]),
                               "test": datasets.Dataset.from_list(records()[20:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert [t for _, t in read_documents(tmp_path / "dd")] == DOCS


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(UserError, match="nope: no such file or folder"):
        expand_inputs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.csv").write_text("")
    with pytest.raises(UserError, match=r"empty: the folder holds no data files"):
        sh.plan([tmp_path / "empty"])
    with pytest.raises(UserError, match="unknown format"):
        sh.plan([tmp_path / "empty" / "x.csv"])


# ------------------------------------------------------------------ shards: today's cuts unchanged
def test_plain_local_jsonl_is_cut_as_before_and_records_keep_their_shape(tmp_path):
    p = write("jsonl", tmp_path)
    size = p.stat().st_size
    plan = sh.plan([str(p)], 1000)
    assert [(s.file, s.part, s.start, s.end, s.whole) for s in plan] == [
        (str(p), i, lo, min(lo + 1000, size), False) for i, lo in enumerate(range(0, size, 1000))]
    assert all(s.fmt == "jsonl" for s in plan)
    assert set(plan[0].to_dict()) == {"index", "file", "part", "start", "end", "whole"}  # markers, manifests unchanged
    assert via_shards([p], shard_bytes=1000) == (DOCS, IDS)
    gz = write("json.gz", tmp_path)
    assert [(s.whole, s.fmt, s.end) for s in sh.plan([gz], 1000)] == [(True, "jsonl.gz", gz.stat().st_size)]
    assert sh.Shard(0, "x.parquet", 0, 0, 1, True).fmt == "parquet"  # old callers: fmt follows the name
    with pytest.raises(UserError, match="given twice"):
        sh.plan([p, tmp_path / "." / "c.jsonl"])


# ------------------------------------------------------------------ URLs
@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    root = "/srcs-test"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_urls(tmp_path, memfs, fmt):
    fs, root = memfs
    local = write(fmt, tmp_path)
    fs.put(str(local), f"{root}/{local.name}", recursive=local.is_dir())
    url = f"memory://{root}/{local.name}"
    assert [t for _, t in read_documents(url)] == DOCS
    assert via_shards([url]) == (DOCS, IDS)
    plan = sh.plan([url], 100)
    assert all(s.whole and s.file.startswith("memory://") for s in plan)  # a URL is never cut into ranges
    assert sum(file_size(s.file) for s in plan) == sum(s.end for s in plan)


def test_memory_url_names_file_and_line(memfs):
    fs, root = memfs
    fs.pipe(f"{root}/bad.jsonl.zst", zstd(b'{"text": "a"}\n{"text": 1}\n'))
    url = f"memory://{root}/bad.jsonl.zst"
    with pytest.raises(UserError, match=r"bad\.jsonl\.zst, line 2: field 'text' is int"):
        list(read_documents(url))


def test_file_urls(tmp_path):
    d = write("dolma", tmp_path)
    url = "file://" + str(d)
    assert [t for _, t in read_documents(url)] == DOCS
    files = expand_inputs([url])
    assert files[0] == url + "/a/0000.json.gz"
    assert via_shards([url]) == (DOCS, IDS)
    from collapselab.pipeline.io import file_sha256, inputs_record

    rec = inputs_record(files[:1])[0]
    assert rec["bytes"] == (d / "a/0000.json.gz").stat().st_size
    assert rec["sha256"] == file_sha256(d / "a/0000.json.gz")


@pytest.mark.parametrize("url,package", [("s3://bucket/c.jsonl", "s3fs"), ("gs://bucket/c.jsonl", "gcsfs")])
def test_a_missing_backend_is_one_user_error_naming_the_package(url, package):
    import importlib.util

    if importlib.util.find_spec(package):
        pytest.skip(f"{package} is installed")
    with pytest.raises(UserError, match=rf"pip install {package}"):
        list(read_documents(url))
    with pytest.raises(UserError, match=package):
        sh.plan([url])


def test_an_unknown_protocol_is_a_user_error():
    with pytest.raises(UserError, match="nosuch://"):
        sh.plan(["nosuch://x/c.jsonl"])


# ------------------------------------------------------------------ errors
BAD = jsonl_bytes(records()[:3]) + b'{"text": "cut\n' + jsonl_bytes(records()[3:5])


@pytest.mark.parametrize("name,pack", [("b.jsonl", bytes), ("b.jsonl.gz", gzip.compress),
                                       ("b.json.gz", gzip.compress), ("b.jsonl.zst", zstd)])
def test_malformed_line_names_file_and_line_in_each_json_lines_format(tmp_path, name, pack):
    p = tmp_path / name
    p.write_bytes(pack(BAD))
    gen = read_documents(p)
    assert [next(gen)[1] for _ in range(3)] == DOCS[:3]  # documents before the bad line come first
    with pytest.raises(UserError, match=rf"{name}, line 4: malformed JSON at column \d+"):
        next(gen)
    with pytest.raises(MalformedRecord, match=rf"{name}:4: malformed record .*--on-error skip"):
        via_shards([p])
    found = Found()
    texts = [t for b in shard_records(sh.plan([p])[0], text_field="text", on_error="skip", found=found) for t in b.texts]
    assert texts == DOCS[:5] and found.malformed == 1 and found.examples[0][0] == 3


@pytest.mark.parametrize("name,pack", [("t.jsonl.gz", gzip.compress), ("t.json.gz", gzip.compress),
                                       ("t.jsonl.zst", zstd)])
def test_a_truncated_compressed_file_is_one_user_error(tmp_path, name, pack):
    data = pack(jsonl_bytes(records() * 20))
    p = tmp_path / name
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=rf"{name}: cannot be read .*truncated") as info:
        list(read_documents(p))
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(UserError, match=rf"{name}: cannot be read"):
        via_shards([p])


def test_a_damaged_arrow_file_is_one_user_error(tmp_path):
    ds = write("datasets", tmp_path)
    f = ds / "data-00001-of-00003.arrow"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(UserError, match=r"data-00001-of-00003\.arrow: .*(truncated|damaged)"):
        list(read_documents(ds))


def test_wrong_type_and_missing_column_in_a_datasets_folder(tmp_path):
    ds = save_dataset(tmp_path / "ds", [{"text": "a", "n": 1}, {"text": "b", "n": 2}], num_shards=1)
    with pytest.raises(UserError, match=r"column 'n' has type int64, not string"):
        list(read_documents(ds, text_field="n"))
    with pytest.raises(UserError, match=r"no column 'body' \(columns: text, n\)"):
        via_shards([ds], "body")


# ------------------------------------------------------------------ writing .zst
def test_jsonl_writer_compresses_zst_and_the_reader_reads_it_back(tmp_path):
    lines = [json.dumps({"text": d}).encode() + b"\n" for d in DOCS]
    for _ in range(2):
        with JsonlWriter(tmp_path / "o.jsonl.zst") as w:
            for ln in lines:
                w.write(ln)
        first = (tmp_path / "o.jsonl.zst").read_bytes()
    assert first[:4] == b"\x28\xb5\x2f\xfd"  # zstd's magic number
    with open_stream(tmp_path / "o.jsonl.zst") as f:
        assert f.read() == b"".join(lines)
    assert via_shards([tmp_path / "o.jsonl.zst"])[0] == DOCS


def test_shard_records_rows_are_lines_and_rows(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_bytes(b'{"text": "a"}\n\n{"text": "b"}\n')
    rows = [r for b in shard_records(sh.plan([p])[0], text_field="text", on_error="fail", found=Found()) for r in b.rows]
    assert np.array_equal(rows, [0, 2])


@pytest.mark.parametrize("fmt", ["jsonl", "json.gz", "jsonl.zst"])
def test_input_hash_is_the_files_hash_read_once(tmp_path, memfs, fmt, monkeypatch):
    """A whole file's done-marker hash is the file's SHA-256, taken while reading (not a second read)."""
    from collapselab.pipeline import io

    p = write(fmt, tmp_path)
    want = io.file_sha256(p)
    fs, root = memfs
    fs.put(str(p), f"{root}/{p.name}")
    monkeypatch.setattr(io, "file_sha256", lambda path: pytest.fail(f"{path} read a second time"))
    for f in [p, f"memory://{root}/{p.name}"]:
        found = Found()
        for s in sh.plan([f], 1 << 30):
            assert len([b for b in shard_records(s, text_field="text", on_error="fail", found=found)])
        assert found.sha256 == want and found.lines == len(DOCS)


def test_patterns_expand_to_the_data_files_they_match(tmp_path, memfs, monkeypatch):
    d = write("dolma", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["documents/*.json.gz"]) == ["documents/b.json.gz"]
    assert expand_inputs(["./documents/*"]) == ["./documents/a/0000.json.gz", "./documents/a/0001.json.gz",
                                                 "./documents/b.json.gz"]  # a matched folder expands
    fs, root = memfs
    fs.put(str(d), f"{root}/documents", recursive=True)
    url = f"memory://{root}/documents/**/*.json.gz"
    assert expand_inputs([url]) == [f"memory://{root}/documents/{n}" for n in ["a/0000.json.gz", "a/0001.json.gz", "b.json.gz"]]
    assert [t for _, t in read_documents(url)] == DOCS
    assert via_shards([url]) == (DOCS, IDS)
    with pytest.raises(UserError, match=r"documents/\*\.parquet: matches no data files"):
        sh.plan(["documents/*.parquet"])


def test_a_remote_store_that_fails_is_one_user_error_naming_the_url():
    from fsspec.spec import AbstractFileSystem

    class Down(AbstractFileSystem):
        protocol = "down-test"

        def info(self, path, **kw):
            raise ConnectionError("connection refused by the store")

        def _open(self, path, mode="rb", **kw):
            raise ConnectionError("connection refused by the store")

    fsspec.register_implementation("down-test", Down, clobber=True)
    for call in (lambda: sh.plan(["down-test://bucket/c.jsonl"]), lambda: list(read_documents("down-test://bucket/c.jsonl"))):
        with pytest.raises(UserError, match=r"down-test://bucket/c\.jsonl: cannot be read \(ConnectionError: connection "
                                            r"refused by the store\)\. Check the URL, the network"):
            call()
    with pytest.raises(UserError, match=r"down-test://bucket/c\.jsonl: cannot be read"):
        file_size("down-test://bucket/c.jsonl")


def test_a_store_failing_mid_read_is_one_user_error(memfs, monkeypatch):
    """Each backend raises its own errors (httpx, botocore, aiohttp): one failing after the first bytes
    is one UserError naming the URL."""
    import io as pyio

    class StoreError(Exception):
        pass

    class Flaky(pyio.BytesIO):
        def read(self, n=-1):
            if self.tell() >= 100:
                raise StoreError("connection reset by the store")
            return super().read(100 - self.tell() if n is None or n < 0 else min(n, 100 - self.tell()))

    fs, root = memfs
    data = gzip.compress(jsonl_bytes(records()))
    fs.pipe(f"{root}/c.jsonl.gz", data)
    shard = sh.plan([f"memory://{root}/c.jsonl.gz"])[0]
    monkeypatch.setattr(type(fs), "_open", lambda *a, **k: Flaky(data))
    with pytest.raises(UserError, match=r"c\.jsonl\.gz: cannot be read \(StoreError: connection reset by the store\)"):
        list(shard_records(shard, text_field="text", on_error="fail", found=Found()))
