"""The loop's output is bit-identical to the recorded manifest (bench/refactor_identity.py).

Slow (about a minute): every metrics.parquet and sample shard of seven small runs (chains, a tree,
a watermark key, a gpt with an hf-kgw scheme, an image run, the Gaussian theory model) hashed and
compared with ``tests/data/refactor-identity/manifest.json``, recorded before the loop's refactor
(issue 16) and re-recorded with content hashes on a commit that matched it byte for byte. Parquet
files are compared by schema and values (their bytes name pyarrow's version, which a fresh
environment may not share); the hashes still depend on the numeric libraries: after an upgrade,
re-record with ``python bench/refactor_identity.py --out tests/data/refactor-identity`` on a commit
whose numbers are known good.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tests" / "data" / "refactor-identity" / "manifest.json"


def _script():
    spec = importlib.util.spec_from_file_location("refactor_identity", ROOT / "bench" / "refactor_identity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_runs_are_bit_identical_to_the_manifest(tmp_path):
    ri = _script()
    now = ri.run_all(tmp_path)
    assert ri.compare(json.loads(BASELINE.read_text()), now, content_only=True) == []
