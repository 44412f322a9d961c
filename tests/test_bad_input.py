"""Bad input: every mistake a user can make ends in one short error line and exit status 2.

Each case runs ``python -m collapselab.cli ...`` in its own folder and checks: status 2, stderr
is a short ``error:`` line that names the file / line / field at fault, no ``Traceback``, and no
finished run folder (no ``summary.json``) is left behind. The CLI cases run side by side (their
cost is mostly Python start-up) in one module fixture; each case is still its own test.

The same mistakes through the Python API raise :class:`collapselab.UserError`.
"""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import collapselab as cl
from conftest import cli, make_documents, write_text_file

GOOD_JSONL = "".join(json.dumps({"text": d, "body": d.upper()}) + "\n" for d in make_documents(30, 10))


# ------------------------------------------------------------------ inputs each case writes
def _empty_file(d: Path) -> None:
    (d / "empty.txt").write_bytes(b"")


def _blank_file(d: Path) -> None:
    (d / "blank.txt").write_text("\n \n\t\n", encoding="utf-8")


def _folder_without_text(d: Path) -> None:
    (d / "nodocs").mkdir()
    (d / "nodocs" / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (d / "nodocs" / "image.png").write_bytes(b"\x89PNG\r\n")


def _empty_folder(d: Path) -> None:
    (d / "emptydir").mkdir()


def _latin1(d: Path) -> None:
    (d / "latin1.txt").write_bytes(b"First line here.\nSecond line here.\nCaf\xe9 au lait.\nFourth.\n")


def _latin1_jsonl(d: Path) -> None:
    (d / "latin1.jsonl").write_bytes(b'{"text": "ok one."}\n{"text": "ok two."}\n{"text": "caf\xe9."}\n')


def _jsonl_missing_field(d: Path) -> None:
    (d / "nofield.jsonl").write_text('{"text": "one two."}\n{"body": "three four."}\n{"text": "five."}\n', encoding="utf-8")


def _jsonl_good(d: Path) -> None:
    (d / "good.jsonl").write_text(GOOD_JSONL, encoding="utf-8")


def _jsonl_malformed(d: Path) -> None:
    (d / "bad.jsonl").write_text('{"text": "one two."}\n{"text": "three."}\n{"text": oops}\n{"text": "four."}\n', encoding="utf-8")


def _jsonl_not_object(d: Path) -> None:
    (d / "list.jsonl").write_text('{"text": "one two."}\n["not", "an", "object"]\n', encoding="utf-8")


def _jsonl_not_string(d: Path) -> None:
    (d / "num.jsonl").write_text('{"text": "one two."}\n{"text": 42}\n', encoding="utf-8")


def _parquet_missing_column(d: Path) -> None:
    pq.write_table(pa.table({"body": ["one two.", "three four."]}), d / "nocol.parquet")


def _parquet_int_column(d: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2, 3]}), d / "ints.parquet")


def _not_parquet(d: Path) -> None:
    (d / "fake.parquet").write_text("this is not parquet", encoding="utf-8")


def _truncated_gzip(d: Path) -> None:
    (d / "trunc.jsonl.gz").write_bytes(gzip.compress(GOOD_JSONL.encode())[:200])


def _corrupt_gzip(d: Path) -> None:
    data = bytearray(gzip.compress(GOOD_JSONL.encode()))
    for i in range(20, 40):
        data[i] ^= 0xFF
    (d / "corrupt.jsonl.gz").write_bytes(bytes(data))


def _bad_yaml(d: Path) -> None:
    (d / "bad.yaml").write_text("family: ngram\ngenerations: 2\npolicies: [replace\ntrain_items: 300\n", encoding="utf-8")


def _yaml_bad_value(d: Path) -> None:
    (d / "badval.yaml").write_text("family: ngram\ngenerations: 0\n", encoding="utf-8")


def _yaml_unknown_key(d: Path) -> None:
    (d / "typo.yaml").write_text("famly: ngram\n", encoding="utf-8")


def _yaml_not_mapping(d: Path) -> None:
    (d / "list.yaml").write_text("- family\n- ngram\n", encoding="utf-8")


def _yaml_bad_policy(d: Path) -> None:
    (d / "pol.yaml").write_text("policies: [replace, anchor:2]\n", encoding="utf-8")


def _tiny_corpus(d: Path) -> None:
    write_text_file(d / "tiny.txt", 200)


def _nonempty_out(d: Path) -> None:
    _tiny_corpus(d)
    (d / "out").mkdir()
    (d / "out" / "keep.txt").write_text("mine", encoding="utf-8")


@dataclass
class Case:
    id: str
    args: list[str]
    expect: list[str]  # substrings stderr must contain (file, line, field, value)
    setup: Callable[[Path], None] | None = None
    command: str = "run"
    marks: list = field(default_factory=list)



CASES = [
    # empty corpus
    Case("empty-file", ["--corpus", "empty.txt"], ["empty.txt"], _empty_file),
    Case("blank-file", ["--corpus", "blank.txt"], ["blank.txt"], _blank_file),
    Case("folder-without-text-files", ["--corpus", "nodocs"], ["nodocs"], _folder_without_text),
    Case("empty-folder", ["--corpus", "emptydir"], ["emptydir"], _empty_folder),
    # missing corpus path
    Case("missing-corpus", ["--corpus", "missing.txt"], ["missing.txt"]),
    Case("missing-corpus-folder", ["--corpus", "no/such/dir"], ["no/such/dir"]),
    # encodings and formats
    Case("non-utf8-txt", ["--corpus", "latin1.txt"], ["latin1.txt", "line 3", "UTF-8"], _latin1),
    Case("non-utf8-jsonl", ["--corpus", "latin1.jsonl"], ["latin1.jsonl", "line 3", "UTF-8"], _latin1_jsonl),
    Case("jsonl-missing-field", ["--corpus", "nofield.jsonl"], ["nofield.jsonl", "line 2", "'text'"], _jsonl_missing_field),
    Case("jsonl-text-field-absent", ["--corpus", "good.jsonl", "--text-field", "content"], ["good.jsonl", "line 1", "'content'"], _jsonl_good),
    Case("jsonl-malformed-line", ["--corpus", "bad.jsonl"], ["bad.jsonl", "line 3"], _jsonl_malformed),
    Case("jsonl-not-an-object", ["--corpus", "list.jsonl"], ["list.jsonl", "line 2"], _jsonl_not_object),
    Case("jsonl-field-not-string", ["--corpus", "num.jsonl"], ["num.jsonl", "line 2", "'text'"], _jsonl_not_string),
    Case("parquet-missing-column", ["--corpus", "nocol.parquet"], ["nocol.parquet", "'text'"], _parquet_missing_column),
    Case("parquet-text-field-absent", ["--corpus", "nocol.parquet", "--text-field", "content"], ["nocol.parquet", "'content'"], _parquet_missing_column),
    Case("parquet-column-not-string", ["--corpus", "ints.parquet"], ["ints.parquet", "'text'"], _parquet_int_column),
    Case("not-parquet", ["--corpus", "fake.parquet"], ["fake.parquet"], _not_parquet),
    Case("truncated-jsonl-gz", ["--corpus", "trunc.jsonl.gz"], ["trunc.jsonl.gz"], _truncated_gzip),
    Case("corrupt-jsonl-gz", ["--corpus", "corrupt.jsonl.gz"], ["corrupt.jsonl.gz"], _corrupt_gzip),
    # options
    Case("unknown-family", ["--family", "transformer"], ["family", "transformer"]),
    Case("unknown-policy", ["--policy", "bogus"], ["bogus"]),
    Case("policy-fraction-not-number", ["--policy", "fresh:lots"], ["fresh:lots"]),
    Case("generations-zero", ["--generations", "0"], ["generations"]),
    Case("generations-negative", ["-g", "-3"], ["generations"]),
    Case("anchor-fraction-above-1", ["--policy", "anchor:1.5"], ["anchor:1.5", "[0, 1]"]),
    Case("fresh-fraction-below-0", ["--policy", "fresh:-0.2"], ["fresh:-0.2", "[0, 1]"]),
    Case("seeds-not-a-number", ["--seeds", "x"], ["--seeds", "'x'"]),
    Case("seeds-empty-range", ["--seeds", "5-2"], ["--seeds", "5-2"]),
    Case("seeds-repeated", ["--seeds", "1,1"], ["seed"]),
    Case("seeds-negative", ["--seeds=-1", "--corpus", "tiny.txt", "--train-items", "100", "-g", "1", "-p", "replace", "-j", "1"], ["seed"], _tiny_corpus),
    Case("train-items-too-small", ["--train-items", "1"], ["train"]),
    Case("top-p-zero", ["--top-p", "0"], ["top"]),
    Case("beam-without-prompt", ["--family", "gpt", "--decoding", "beam", "--prompt-len", "0"], ["prompt_len", "beam"]),
    Case("holdout-items-zero", ["--holdout-items", "0"], ["--holdout-items", "greater than or equal to 1"]),
    Case("fresh-pool-too-small", ["--corpus", "tiny.txt", "--train-items", "190", "-p", "fresh:0.5", "-g", "3"], ["fresh:0.5", "tiny.txt"], _tiny_corpus),
    # config files
    Case("malformed-yaml", ["bad.yaml"], ["bad.yaml", "line 4"], _bad_yaml),
    Case("yaml-bad-value", ["badval.yaml"], ["badval.yaml", "generations"], _yaml_bad_value),
    Case("yaml-unknown-key", ["typo.yaml"], ["typo.yaml", "famly"], _yaml_unknown_key),
    Case("yaml-not-a-mapping", ["list.yaml"], ["list.yaml"], _yaml_not_mapping),
    Case("yaml-bad-policy", ["pol.yaml"], ["anchor:2"], _yaml_bad_policy),
    Case("missing-config-file", ["nope.yaml"], ["nope.yaml"]),
    # run folders
    Case("out-not-empty", ["--corpus", "tiny.txt", "--train-items", "100", "-g", "1"], ["out", "not empty"], _nonempty_out),
    Case("resume-missing-folder", ["--resume"], ["out", "run folder"]),
    Case("report-missing-folder", ["nowhere"], ["nowhere"], command="report"),
    # plain usage errors (the CLI parser's own): also status 2, no traceback
    Case("generations-not-integer", ["--generations", "abc"], ["--generations", "valid integer"]),
    Case("unknown-option", ["--bogus"], ["--bogus"]),
    Case("jobs-zero", ["--jobs", "0"], ["jobs"]),
]


# The cases the issue lists, one per kind of mistake, go through a real interpreter; every case
# (these included) also goes through the same ``main()`` in this process, which is much faster.
SUBPROCESS = [
    "empty-file", "folder-without-text-files", "missing-corpus", "non-utf8-txt", "jsonl-missing-field",
    "parquet-missing-column", "jsonl-malformed-line", "unknown-family", "unknown-policy", "generations-zero",
    "anchor-fraction-above-1", "seeds-not-a-number", "malformed-yaml", "unknown-option",
]
BY_ID = {c.id: c for c in CASES}


def _prepare(base: Path, case: Case) -> tuple[Path, list[str]]:
    d = base / case.id
    d.mkdir()
    if case.setup:
        case.setup(d)
    args = [case.command, *case.args]
    if case.command == "run":
        args += ["--out", "out", "--quiet"]
    return d, args


def _check(case: Case, d: Path, status, err: str, out_text: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert status == 2, (status, err[-3000:])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    # short: one error line, or click's usage message (usage line, hint, a 3-line error box)
    assert 1 <= len(lines) <= 6, err
    for s in case.expect:
        assert s in err, f"{s!r} not in stderr: {err!r}"
    assert out_text.strip() == ""  # nothing on stdout: no table, no run folder line
    out = d / "out"
    assert not (out / "summary.json").exists()
    if case.id == "out-not-empty":  # the user's folder is left as it was
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    elif case.command == "run":
        assert not out.exists() or not any(out.rglob("*.parquet")), sorted(out.rglob("*"))
    assert not (d / "runs").exists() or not any((d / "runs").rglob("summary.json"))


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """The SUBPROCESS cases, two at a time (each is mostly interpreter start-up)."""
    base = tmp_path_factory.mktemp("bad_input")

    def one(case: Case):
        d, args = _prepare(base, case)
        return d, cli(args, cwd=d, timeout=240)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {i: pool.submit(one, BY_ID[i]) for i in SUBPROCESS}
    return {i: f.result() for i, f in futures.items()}


@pytest.mark.parametrize("case", [pytest.param(BY_ID[i], id=i, marks=BY_ID[i].marks) for i in SUBPROCESS])
def test_cli_bad_input_subprocess(case: Case, cli_results):
    d, proc = cli_results[case.id]
    _check(case, d, proc.returncode, proc.stderr, proc.stdout)
    if not case.marks:
        assert proc.stderr.lstrip().startswith("error:")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_cli_bad_input(case: Case, tmp_path, run_main):
    """``collapselab.cli.main()`` in this process, with sys.argv set: the same code path."""
    d, args = _prepare(tmp_path, case)
    status, out, err = run_main(args, d)
    _check(case, d, status, err, out)


# ------------------------------------------------------------------ the Python API
API_CASES = [
    ("missing-corpus", None, {"corpus": "missing.txt"}, ["missing.txt"]),
    ("empty-file", _empty_file, {"corpus": "empty.txt"}, ["empty.txt"]),
    ("folder-without-text-files", _folder_without_text, {"corpus": "nodocs"}, ["nodocs"]),
    ("non-utf8", _latin1, {"corpus": "latin1.txt"}, ["latin1.txt", "line 3"]),
    ("jsonl-missing-field", _jsonl_missing_field, {"corpus": "nofield.jsonl"}, ["line 2", "'text'"]),
    ("jsonl-malformed-line", _jsonl_malformed, {"corpus": "bad.jsonl"}, ["bad.jsonl", "line 3"]),
    ("parquet-missing-column", _parquet_missing_column, {"corpus": "nocol.parquet"}, ["nocol.parquet", "'text'"]),
    ("unknown-family", None, {"family": "transformer"}, ["family"]),
    ("unknown-policy", None, {"policies": ["bogus"]}, ["bogus"]),
    ("generations-zero", None, {"generations": 0}, ["generations"]),
    ("anchor-fraction-above-1", None, {"policies": ["anchor:1.5"]}, ["anchor:1.5"]),
    ("negative-seed", _tiny_corpus, {"seeds": [-1], "corpus": "tiny.txt", "train_items": 100, "generations": 1, "policies": ["replace"]}, ["seed"]),
]


@pytest.mark.parametrize(
    "setup,config,expect",
    [
        pytest.param(s, c, e, id=i, )
        for i, s, c, e in API_CASES
    ],
)
def test_api_raises_user_error(tmp_path, monkeypatch, setup, config, expect):
    monkeypatch.chdir(tmp_path)
    if setup:
        setup(tmp_path)
    with pytest.raises(cl.UserError) as info:
        cl.run_experiment(config, out=tmp_path / "out", jobs=1)
    for s in expect:
        assert s in str(info.value)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_api_bad_yaml_path_raises_user_error(tmp_path):
    _bad_yaml(tmp_path)
    with pytest.raises(cl.UserError, match=r"bad\.yaml, line 4"):
        cl.run_experiment(tmp_path / "bad.yaml", out=tmp_path / "out")
    with pytest.raises(cl.UserError, match=r"bad\.yaml, line 4"):
        cl.load_config(tmp_path / "bad.yaml")
    assert not (tmp_path / "out").exists()


def test_api_resume_without_run_folder(tmp_path):
    with pytest.raises(cl.UserError, match="no config.yaml|not a run folder"):
        cl.run_experiment(out=tmp_path / "nothing", resume=True)
