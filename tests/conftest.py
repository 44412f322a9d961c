"""Shared fixtures: tiny corpora written into tmp_path, and a runner for the CLI in a subprocess.

The corpora are made of deterministic pseudo-random sentences over a small vocabulary, so every
run is fast (a few hundred sentences) yet has enough text for the loop, the held-out split and
the ``fresh`` policy's reserve pool.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textgen import make_sentences  # noqa: F401  (tests import it from here too)

KEY_COLUMNS = ["policy", "seed", "generation"]


def make_documents(n_docs: int, sentences_per_doc: int, seed: int = 0) -> list[str]:
    sents = make_sentences(n_docs * sentences_per_doc, seed)
    return [" ".join(sents[i * sentences_per_doc : (i + 1) * sentences_per_doc]) for i in range(n_docs)]


def write_text_folder(folder: Path, n_docs: int = 20, sentences_per_doc: int = 20, seed: int = 0) -> Path:
    """A folder of ``n_docs`` .txt files (one document each): 400 sentences by default."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(make_documents(n_docs, sentences_per_doc, seed)):
        (folder / f"doc{i:03d}.txt").write_text(doc + "\n", encoding="utf-8")
    return folder


def write_text_file(path: Path, n_sentences: int = 300, seed: int = 0) -> Path:
    """One .txt file (a single document), paragraphs of 10 sentences separated by blank lines."""
    sents = make_sentences(n_sentences, seed)
    paras = [" ".join(sents[i : i + 10]) for i in range(0, len(sents), 10)]
    path.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shared_text_folder(tmp_path_factory) -> Path:
    """One read-only corpus folder for the whole session (never write into it)."""
    return write_text_folder(tmp_path_factory.mktemp("shared") / "corpus")


def cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m collapselab.cli ARGS`` in ``cwd``; a hang fails the test instead of the suite."""
    env = dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "collapselab.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def sorted_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Metrics in a canonical row and column order, so two runs compare value by value."""
    cols = KEY_COLUMNS + sorted(c for c in df.columns if c not in KEY_COLUMNS)
    return df[cols].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def assert_same_metrics(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert set(a.columns) == set(b.columns)
    pd.testing.assert_frame_equal(sorted_metrics(a), sorted_metrics(b), check_exact=True)


@pytest.fixture
def run_main(monkeypatch, capsys):
    """``collapselab.cli.main()`` in this process with ``sys.argv`` set: the CLI's own code path
    without an interpreter start-up. Returns (exit status, stdout, stderr); an exception that
    escapes ``main()`` (a traceback, for a user) fails the test."""
    from collapselab import cli as cli_module

    def go(args: list, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["collapselab", *map(str, args)])
        code = 0
        try:
            cli_module.main()
        except SystemExit as e:
            code = 0 if e.code is None else e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return go


def interrupt_after(k: int):
    """An ``on_event`` callback that presses Ctrl-C after the k-th finished generation."""
    seen = []

    def on_event(event):
        if event.kind == "generation":
            seen.append(event)
            if len(seen) == k:
                raise KeyboardInterrupt

    return on_event


def fixed_key_file(path: Path, byte: int = 3) -> Path:
    """A watermark key file (0600) with a fixed key: the same green lists, so the same numbers, every run.

    Tests that make statistical assertions on watermark scores use this rather than
    ``new_key_file``, whose random key makes each run draw different green lists.
    """
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((bytes([byte]) * 32).hex() + "\n")
    return path


def watermarked_sotu(folder: Path, *, n_train: int, n_human: int, n_marked: int, size: int):
    """Human SOTU held-out chunks of ``size`` sentences, and chunks sampled with our watermark by a
    3-gram trained on ``n_train`` other sentences: (corpus, key file, human, marked), the last two
    as TokenSequences (``n_human`` and ``n_marked`` chunks)."""
    from collapselab.corpus.text_corpus import build_text_corpus, sotu_documents
    from collapselab.detect.base import chunk
    from collapselab.models.ngram import NGramModel
    from collapselab.provenance.keys import load_key
    from collapselab.provenance.watermark import Watermark

    corpus = build_text_corpus(sotu_documents(), name="sotu", n_train=n_train, split_seed=0)
    gen = NGramModel(3, vocab_size=len(corpus.vocab)).fit(corpus.train)
    key_file = fixed_key_file(folder / "wm.key")
    human = chunk(corpus.holdout.take(np.arange(size * n_human)), size)
    marked = chunk(gen.sample(size * n_marked, rng=np.random.default_rng(0), watermark=Watermark(load_key(key_file))), size)
    return corpus, key_file, human, marked
