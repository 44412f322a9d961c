"""Corpus readers (collapselab.corpus.readers): .txt files and folders, JSONL(.gz), Parquet.

``read_documents`` yields ``(where, text)`` per document, streaming; ``--text-field`` /
``text_field`` names the JSONL field or Parquet column. Two small end-to-end runs check that the
field choice reaches the model (its vocabulary).
"""

from __future__ import annotations

import gzip
import inspect
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import collapselab as cl
from collapselab.corpus.readers import read_documents
from collapselab.errors import UserError
from conftest import make_documents

DOCS = ["First document. It has two sentences.", "Second one!", "Third: with ünïcødé — and “quotes”?"]


def texts(path, **kw) -> list[str]:
    return [t for _, t in read_documents(path, **kw)]


def write_jsonl(path: Path, records: list, *, gz: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# ------------------------------------------------------------------ .txt
def test_txt_file_is_one_document_verbatim(tmp_path):
    text = "Para one, line one.\nLine two.\n\nPara two — ünïcødé.\n"
    p = tmp_path / "a.txt"
    p.write_text(text, encoding="utf-8")
    docs = list(read_documents(p))
    assert len(docs) == 1
    where, got = docs[0]
    assert got == text
    assert "a.txt" in where


def test_txt_folder_reads_every_text_file_in_sorted_order(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(DOCS[1], encoding="utf-8")
    (folder / "a.txt").write_text(DOCS[0], encoding="utf-8")
    (folder / "sub" / "c.md").write_text(DOCS[2], encoding="utf-8")  # nested, other text suffix
    (folder / "notes.csv").write_text("not,a,corpus\n", encoding="utf-8")  # ignored
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")  # ignored (not even UTF-8)
    docs = list(read_documents(folder))
    assert [t for _, t in docs] == DOCS
    assert [Path(w).name for w, _ in docs] == ["a.txt", "b.txt", "c.md"]


def test_txt_with_crlf_and_bom_free_utf8(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes("One.\r\nTwo.\r\n".encode("utf-8"))
    assert texts(p) == ["One.\r\nTwo.\r\n"]


def test_uppercase_suffixes_are_recognised_in_folders(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "A.TXT").write_text(DOCS[0], encoding="utf-8")
    write_jsonl(folder / "B.JSONL.GZ", [{"text": DOCS[1]}], gz=True)
    assert texts(folder) == DOCS[:2]


# ------------------------------------------------------------------ JSONL
def test_jsonl_one_document_per_line(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": d, "id": i} for i, d in enumerate(DOCS)])
    docs = list(read_documents(p))
    assert [t for _, t in docs] == DOCS
    assert [w.rsplit(", ", 1)[1] for w, _ in docs] == ["line 1", "line 2", "line 3"]


def test_jsonl_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a."}\n\n   \n{"text": "b."}\n', encoding="utf-8")
    docs = list(read_documents(p))
    assert [t for _, t in docs] == ["a.", "b."]
    assert docs[1][0].endswith("line 4")


def test_jsonl_gz_reads_like_jsonl(tmp_path):
    recs = [{"text": d} for d in DOCS]
    plain = write_jsonl(tmp_path / "d.jsonl", recs)
    gz = write_jsonl(tmp_path / "d.jsonl.gz", recs, gz=True)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"  # really compressed
    assert texts(gz) == texts(plain) == DOCS


def test_ndjson_suffix(tmp_path):
    p = write_jsonl(tmp_path / "d.ndjson", [{"text": d} for d in DOCS])
    assert texts(p) == DOCS


def test_jsonl_text_field_picks_the_field(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "title " + d, "body": d} for d in DOCS])
    assert texts(p, text_field="body") == DOCS
    assert texts(p) == ["title " + d for d in DOCS]


def test_jsonl_gz_text_field_picks_the_field(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl.gz", [{"body": d} for d in DOCS], gz=True)
    assert texts(p, text_field="body") == DOCS
    with pytest.raises(UserError, match=r"d\.jsonl\.gz, line 1.*'text'"):
        texts(p)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"text": "ok"', "line 2"),  # malformed JSON
        ('"just a string"', r"line 2: expected a JSON object"),
        ('{"text": ["a", "b"]}', r"line 2: field 'text' is list"),
        ('{"body": "x"}', r"line 2: no field 'text' \(fields: body\)"),
    ],
)
def test_jsonl_bad_line_names_file_and_line(tmp_path, line, match):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "fine."}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=match) as info:
        texts(p)
    assert "bad.jsonl" in str(info.value)


def test_jsonl_non_utf8_line(tmp_path):
    p = tmp_path / "enc.jsonl"
    p.write_bytes(b'{"text": "fine."}\n{"text": "fine."}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"enc\.jsonl, line 3: not UTF-8"):
        texts(p)


def test_gzip_that_is_not_gzip(tmp_path):
    p = tmp_path / "plain.jsonl.gz"
    p.write_text('{"text": "not compressed"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"plain\.jsonl\.gz"):
        texts(p)


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_gzip_is_a_user_error(tmp_path, damage):
    data = bytearray(gzip.compress("".join(json.dumps({"text": d}) + "\n" for d in make_documents(50, 5)).encode()))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        for i in range(20, 40):
            data[i] ^= 0xFF
    p = tmp_path / "damaged.jsonl.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"damaged\.jsonl\.gz"):
        texts(p)


# ------------------------------------------------------------------ Parquet
def test_parquet_column_as_documents(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "text": [DOCS[0], None, DOCS[1], DOCS[2]]}), p)
    docs = list(read_documents(p))
    assert [t for _, t in docs] == DOCS  # null rows skipped
    assert [w.rsplit(", ", 1)[1] for w, _ in docs] == ["row 1", "row 3", "row 4"]


def test_parquet_text_field_picks_the_column(tmp_path):
    p = tmp_path / "d.pq"
    pq.write_table(pa.table({"text": ["x", "y", "z"], "body": DOCS}), p)
    assert texts(p, text_field="body") == DOCS
    assert texts(p) == ["x", "y", "z"]


def test_parquet_large_string_and_many_row_groups(tmp_path):
    p = tmp_path / "big.parquet"
    docs = make_documents(50, 2)
    pq.write_table(pa.table({"text": pa.array(docs, pa.large_string())}), p, row_group_size=7)
    assert texts(p) == docs


def test_parquet_missing_or_non_string_column(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": DOCS, "n": [1, 2, 3]}), p)
    with pytest.raises(UserError, match=r"t\.parquet: no column 'text' \(columns: body, n\)"):
        texts(p)
    with pytest.raises(UserError, match=r"t\.parquet: column 'n' has type int64"):
        texts(p, text_field="n")


def test_mixed_folder_reads_all_three_formats(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "1.txt").write_text(DOCS[0], encoding="utf-8")
    write_jsonl(folder / "2.jsonl", [{"body": DOCS[1]}])
    pq.write_table(pa.table({"body": [DOCS[2]]}), folder / "3.parquet")
    assert texts(folder, text_field="body") == DOCS


# ------------------------------------------------------------------ streaming
def test_read_documents_is_lazy(tmp_path):
    """Nothing is read before the first document is asked for, and then only what is needed."""
    p = tmp_path / "stream.jsonl"
    p.write_text('{"text": "first."}\n{"text": "second."}\n{"text": broken}\n', encoding="utf-8")
    gen = read_documents(p)
    assert inspect.isgenerator(gen)
    assert next(gen)[1] == "first."
    assert next(gen)[1] == "second."
    with pytest.raises(UserError, match="line 3"):
        next(gen)


def test_streaming_stops_at_the_first_bad_file_in_a_folder(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("good text.", encoding="utf-8")
    (folder / "b.txt").write_bytes(b"bad \xff text")
    gen = read_documents(folder)
    assert next(gen)[1] == "good text."
    with pytest.raises(UserError, match=r"b\.txt, line 1"):
        next(gen)


def test_missing_path_raises_on_first_read(tmp_path):
    gen = read_documents(tmp_path / "nope")
    with pytest.raises(UserError, match="no such file or folder"):
        next(gen)


def test_parquet_is_read_in_batches(tmp_path, monkeypatch):
    """A Parquet file is read batch by batch: the first document comes before the rest is read."""
    p = tmp_path / "many.parquet"
    pq.write_table(pa.table({"text": [f"doc {i}." for i in range(10000)]}), p, row_group_size=1000)
    batches = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *a, **kw):
        for b in real(self, *a, **kw):
            batches.append(b.num_rows)
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    gen = read_documents(p)
    assert next(gen)[1] == "doc 0."
    assert 0 < sum(batches) < 10000


# ------------------------------------------------------------------ end to end: the field reaches the model
@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_text_field_reaches_the_vocabulary(tmp_path, fmt):
    bodies = make_documents(30, 10, seed=1)
    titles = [f"Headline{i} xylophone{i}." for i in range(30)]  # words only the other field has
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table({"title": titles, "body": bodies}), path)
    else:
        write_jsonl(path, [{"title": t, "body": b} for t, b in zip(titles, bodies)], gz=True)
    run = cl.run_experiment(
        {"corpus": str(path), "text_field": "body", "train_items": 150, "generations": 1, "policies": ["replace"]},
        out=tmp_path / "run", jobs=1,
    )
    vocab = set((run.path / "vocab.txt").read_text(encoding="utf-8").split())
    body_words = {w.strip(".?!").lower() for b in bodies for w in b.split()}
    assert vocab - {".", "?", "!"} <= body_words
    assert len(vocab & body_words) > 20
    assert not any(w.startswith(("headline", "xylophone")) for w in vocab)
    assert run.config.text_field == "body"
    assert run.summary["corpus"]["train_items"] == 150
