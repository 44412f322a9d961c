"""scan, filter and mix write the same bytes as before the pipeline was cut into steps (issue 14).

Small fixtures (a plain JSONL file cut into several shards, with a blank and a malformed line, a
``.jsonl.gz`` file and a Parquet file; a vault with a fixed signing key) go through scan
(watermark with ``--tpr-from``, length, perplexity), filter (``--scores`` with ``--threshold`` and
``--fpr``, one-pass ``--detector length`` on plain and gzip JSONL) and mix. Every output file is
hashed and compared with ``tests/data/steps-identity/hashes.json``, recorded from the code before
the refactor (``python tests/test_steps_identity.py --record``, on a commit whose outputs are known
good). Manifests are compared by content without the ``steps`` field (per-step statistics, with
timings) added by the refactor; Parquet files by their bytes when pyarrow's version is the
recorded one (the footer names it), else by schema and values.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "data" / "steps-identity" / "hashes.json"
SHARD = 16 << 10
NOT_COMPARED = ("steps",)  # manifest fields added after the baseline: timings, not outputs


def _documents(n: int, seed: int) -> list[str]:
    sys.path.insert(0, str(HERE))
    from textgen import make_sentences

    sents = make_sentences(3 * n, seed)
    return [" ".join(sents[3 * i: 3 * i + 3]) for i in range(n)]


def make_inputs(d: Path) -> dict:
    """The fixtures, in ``d`` (the current folder: every path below is relative, as a user types it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collapselab.corpus.tokenize import Vocabulary, tokenize

    docs = _documents(400, 0)
    docs[5] = "<s> The Nation’s people — Zephyr <UNK> quorum </s> naïve café 42-year-old"  # specials, non-ASCII
    lines = []
    for i, t in enumerate(docs):
        rec = {"text": t, "id": f"d{i}"} if i % 3 == 0 else ({"text": t, "id": i} if i % 7 == 0 else {"text": t})
        lines.append(json.dumps(rec, ensure_ascii=(i % 2 == 0)))
    lines[17] = ""  # a blank line: no record
    lines[123] = '{"text": 5}'  # malformed: no string text field
    lines[250] = "not json"
    (d / "web.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    gz_docs = _documents(60, 1)
    with gzip.GzipFile(d / "more.jsonl.gz", "wb", mtime=0) as f:
        f.write("".join(json.dumps({"text": t, "id": f"g{i}"}) + "\n" for i, t in enumerate(gz_docs)).encode())
    pq_docs = _documents(80, 2)
    pq.write_table(pa.table({"id": [f"p{i}" if i % 4 else None for i in range(80)], "text": pq_docs,
                             "lang": ["en"] * 80}), d / "rows.parquet")
    words = sorted({w for t in docs + gz_docs + pq_docs for w in tokenize(t)})
    Vocabulary(words[: len(words) - 5]).save(d / "vocab.txt")  # a few words unknown
    key = d / "wm.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((bytes([3]) * 32).hex() + "\n")
    return {"jsonl": "web.jsonl", "gz": "more.jsonl.gz", "parquet": "rows.parquet", "vocab": "vocab.txt", "key": "wm.key"}


def make_vault(path: str):
    """A vault whose signing key is fixed (the mix manifest names the key's id)."""
    from unittest import mock

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collapselab.provenance.vault import init_vault

    fixed = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    with mock.patch.object(Ed25519PrivateKey, "generate", staticmethod(lambda: fixed)):
        v = init_vault(path)
    v.add_texts([(f"h{i}", t) for i, t in enumerate(_documents(120, 9))], source="test", licence="CC0",
                captured_before="2020-01-01")
    v.seal("s1")
    return v


def run_all(d: Path) -> None:
    """Every command of the test, in ``d`` (the current folder)."""
    from collapselab.pipeline import filter_corpus, mix_corpus, scan_corpus

    f = make_inputs(d)
    make_vault("vault")
    ins = [f["jsonl"], f["gz"], f["parquet"]]
    common = dict(on_error="skip", shard_bytes=SHARD, jobs=1)
    scan_corpus(ins, key=f["key"], vocab=f["vocab"], out="wm.parquet", tpr_from=[f["gz"]], **common)
    scan_corpus(ins, detector="length", out="len.parquet", **common)
    scan_corpus(ins, detector="perplexity", vocab=f["vocab"], reference_vault="vault", fpr_target=0.1, out="ppl.parquet",
                **common)
    filter_corpus(f["jsonl"], scores="wm.parquet", out="kept.jsonl", quarantine="quar.jsonl", threshold=1.0,
                  on_error="skip", jobs=1)
    filter_corpus(f["parquet"], scores="wm.parquet", out="kept.parquet", quarantine="quar.parquet", fpr=0.3, jobs=1)
    filter_corpus(f["gz"], scores="ppl.parquet", out="pkept.jsonl.gz", quarantine="pquar.jsonl.gz", threshold=3.95,
                  jobs=1)
    filter_corpus(f["jsonl"], detector="length", out="lkept.jsonl", quarantine="lquar.jsonl", threshold=150,
                  on_error="skip", shard_bytes=SHARD, jobs=1)
    filter_corpus(f["gz"], detector="length", out="gkept.jsonl.gz", quarantine="gquar.jsonl.gz", threshold=123, jobs=1)
    mix_corpus([f["jsonl"], f["parquet"], f["gz"]], vault="vault", min_human=0.1, out="train.jsonl", seed=3,
               on_error="skip", jobs=1)
    mix_corpus([f["gz"]], vault="vault", min_human=0.2, out="train.jsonl.gz", seed=0, jobs=1)


OUTPUTS = ["wm.parquet", "len.parquet", "ppl.parquet", "kept.jsonl", "quar.jsonl", "quar.jsonl.reasons.jsonl",
           "kept.parquet", "quar.parquet", "quar.parquet.reasons.jsonl", "pkept.jsonl.gz", "pquar.jsonl.gz",
           "pquar.jsonl.gz.reasons.jsonl", "lkept.jsonl", "lquar.jsonl", "lquar.jsonl.reasons.jsonl",
           "gkept.jsonl.gz", "gquar.jsonl.gz", "gquar.jsonl.gz.reasons.jsonl", "train.jsonl", "train.jsonl.gz"]
MANIFESTS = ["wm.parquet.json", "len.parquet.json", "ppl.parquet.json", "kept.jsonl.json", "kept.parquet.json",
             "pkept.jsonl.gz.json", "lkept.jsonl.json", "gkept.jsonl.gz.json", "train.jsonl.json", "train.jsonl.gz.json"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content(path: Path) -> str:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return _sha(str(t.schema).encode() + json.dumps(t.to_pydict(), sort_keys=True, default=repr).encode())


def _manifest(path: Path) -> str:
    m = json.loads(path.read_text(encoding="utf-8"))
    return _sha(json.dumps({k: v for k, v in m.items() if k not in NOT_COMPARED}, sort_keys=True).encode())


def hashes(d: Path) -> dict:
    import pyarrow

    out = {"pyarrow": pyarrow.__version__, "files": {}}
    for name in OUTPUTS:
        p = d / name
        out["files"][name] = _sha(p.read_bytes())
        if name.endswith(".parquet"):
            out["files"][name + "#content"] = _content(p)
    for name in MANIFESTS:
        out["files"][name + "#content"] = _manifest(d / name)
    return out


def compare(base: dict, now: dict) -> list[str]:
    same_arrow = base["pyarrow"] == now["pyarrow"]
    wrong = []
    for name, h in base["files"].items():
        if name.endswith(".parquet") and not same_arrow:
            continue  # compared by content instead
        if now["files"].get(name) != h:
            wrong.append(name)
    return wrong


def test_outputs_match_the_recorded_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    run_all(tmp_path)
    base = json.loads(BASELINE.read_text())
    assert compare(base, hashes(tmp_path)) == []


if __name__ == "__main__":  # python tests/test_steps_identity.py --record: write the baseline
    import tempfile

    assert sys.argv[1:] == ["--record"], "usage: python tests/test_steps_identity.py --record"
    sys.path.insert(0, str(HERE.parent / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        run_all(Path(tmp))
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE.write_text(json.dumps(hashes(Path(tmp)), indent=2, sort_keys=True) + "\n")
    print(f"recorded {BASELINE}")
