"""The Python API under every CLI command: ``run_experiment``, ``load_run``, ``Run``.

    >>> import collapselab as cl
    >>> run = cl.run_experiment({"generations": 3, "train_items": 2000})
    >>> run.metrics.head()            # one row per (policy, seed, generation)
    >>> run.table()                   # the article's table, computed from the run
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from collapselab.atomic import check_writable_dir
from collapselab.config import NEURAL_FAMILIES, ExperimentConfig, load_config, make_config
from collapselab.corpus import load_corpus
from collapselab.data import n_items
from collapselab.errors import UserError
from collapselab.loop.engine import Event, run_loop
from collapselab.loop.marking import load_loop_scheme
from collapselab.loop.sinks import run_sinks
from collapselab.loop.provenance import RunLedger, dataset_hash
from collapselab.loop.seeds import SeedData
from collapselab.provenance.ledger import run_head
from collapselab.metrics.suite import make_evaluator
from collapselab.report.table import PolicyBlock, build_table, build_tree_table, caption, table_records
from collapselab.runfolder import RUN_CHECKPOINT_SECONDS, RunFolder, RunLock, new_run_id

DEFAULT_RUNS_DIR = Path("runs")
NEW_KEY = "new"  # watermark_key: make the run its own key


def seed_ranges(seeds, most: int = 4) -> str:
    """Seeds as runs of consecutive numbers, ``0-999`` or ``0-4, 7, 9-10``; past ``most`` runs, the first ones and '…'."""
    runs: list[list[int]] = []
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]
    return ", ".join(text[:most]) + (", …" if len(text) > most else "")


class Run:
    """A run folder, read back: config, metrics, summary, table and plots."""

    def __init__(self, path: str | Path):
        self.folder = RunFolder(path)
        self.config = make_config(self.folder.read_config(), source=str(self.folder.config_path))

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def complete(self) -> bool:
        return self.folder.complete

    @property
    def metrics(self) -> pd.DataFrame:
        return self.folder.read_metrics()

    @property
    def summary(self) -> dict:
        return self.folder.read_summary()

    def table(self) -> list[PolicyBlock]:
        """The article's table: one block per policy (a tree run: per lineage, root to leaf)."""
        if self.config.tree:
            return build_tree_table(self.metrics, self.config.diversity_metric, self.config.kind)
        return build_table(self.metrics, self.config.diversity_metric, self.config.kind, order=self.config.policies)

    def caption(self) -> str:
        return caption(self.config.diversity_metric, len(self.config.seeds))

    def title(self) -> str:
        """What a figure of this run shows: model, corpus, seeds, generations."""
        c = self.config
        seeds = f"seed {c.seeds[0]}" if len(c.seeds) == 1 else f"{len(c.seeds):,} seeds ({seed_ranges(c.seeds)})"
        return f"{c.family} on {c.corpus}, {seeds}, {c.generations} generations"

    def plot(self) -> list[Path]:
        """(Re)draw every PNG of the run from its folder."""
        from collapselab.report.plots import plot_histograms, plot_metrics  # matplotlib: only when drawing

        if self.config.tree:
            from collapselab.report.plots import plot_tree

            return plot_tree(self.metrics, self.folder.plots_dir, self.config.kind)
        rank = {p: i for i, p in enumerate(self.config.policies)}
        metrics = self.metrics.sort_values("policy", key=lambda s: s.map(rank), kind="stable")
        paths = plot_metrics(metrics, self.folder.plots_dir, self.config.kind, caption=self.title())
        if self.config.is_text:
            seed = self.config.seeds[0]
            per_policy = {}
            for p in self.config.policies:  # an unfinished run: each policy up to where it got
                reached = metrics.loc[(metrics["policy"] == p) & (metrics["seed"] == seed), "generation"]
                if len(reached):
                    G = int(reached.max())
                    per_policy[p] = {g: self.folder.read_sample_column(p, seed, g, "ppl_under_gen0") for g in sorted({0, 1, G // 2, G}) if g <= G}
            if per_policy:
                paths.append(plot_histograms(per_policy, self.folder.plots_dir / "ppl_histogram.png"))
        return paths

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"Run({str(self.path)!r}, {self.config.family}, {state})"


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        what = "a file, not a run folder" if path.exists() else "no such run folder"
        raise UserError(f"{path}: {what}. Pass a folder that `collapselab run` created (under runs/).")
    return Run(path)


def latest_incomplete_run(root: Path = DEFAULT_RUNS_DIR) -> Path | None:
    if not root.is_dir():
        return None
    cands = [p for p in root.iterdir() if (p / "config.yaml").exists() and not (p / "summary.json").exists()]
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


def _vault_shard(corpus) -> dict:
    ref = getattr(corpus, "vault_ref", None)
    if ref is None:
        return {}
    return {"vault": dataset_hash(corpus.vault),
            "vault_source": f"vault {ref['vault']}, snapshot {ref['snapshot']}, Merkle root {ref['merkle_root']}"}


def _new_run_key(config: ExperimentConfig, folder: RunFolder) -> tuple[ExperimentConfig, str]:
    """``watermark_key: new``: a fresh key in the run folder (0600); the config records its path."""
    from collapselab.provenance.keys import load_key, new_key_file
    from collapselab.provenance.watermark import Watermark

    path = new_key_file(folder.path / "watermark.key").resolve()
    return config.model_copy(update={"watermark_key": str(path)}), Watermark(load_key(path)).key_id


# the id space a scheme is checked in before the run (the run builds it over the seed's generation-0 model's)
_PRE_RUN_VOCAB = {"gpt": lambda c: c.model["bpe_vocab"], "smollm2": lambda c: 49152, "ngram": lambda c: None}


def _check_scheme(config: ExperimentConfig) -> tuple[ExperimentConfig, str]:
    """``watermark``: read the spec and its key (one UserError line if either is bad or the family
    cannot sample with the scheme); the config records the spec's absolute path, never the key.
    Returns the config and the key's public ``key_id``."""
    spec = Path(config.watermark).expanduser().resolve()
    config = config.model_copy(update={"watermark": str(spec)})
    scheme = load_loop_scheme(config, _PRE_RUN_VOCAB[config.family](config))
    return config, scheme.key_id


def _watermark_summary(config: ExperimentConfig, key_id: str | None) -> dict:
    """What summary.json says of the run's watermark: the scheme, its public parameters, the spec's
    path and the key's ``key_id`` (never the key)."""
    if config.watermark is not None:
        from collapselab.detect.schemes import read_spec

        spec, _ = read_spec(config.watermark)
        params = spec.model_dump(exclude={"key_file"})
        return {"watermark": {"scheme": spec.scheme, "key_id": key_id, "spec": config.watermark,
                              "share": config.watermark_share, "params": params}}
    if config.watermark_key is not None:
        return {"watermark": {"scheme": "collapselab", "key_id": key_id, "share": config.watermark_share,
                              "params": {"gamma": config.watermark_gamma, "delta": config.watermark_delta, "context_width": 1}}}
    return {}


def _check_corpus(config: ExperimentConfig, corpus) -> None:
    n = n_items(corpus.train)
    n_out = config.samples or n
    reserve = getattr(corpus, "vault", None)
    reserve = corpus.pool if reserve is None else reserve
    for spec, policy in zip(config.policies, config.parsed_policies):
        need = policy.human_pool_needed(config.generations, n_out)
        if need > n_items(reserve):
            raise UserError(
                f"policy {spec}: needs {need} unseen human items over {config.generations} generations, but the corpus "
                f"{config.vault or config.corpus} has only {n_items(reserve)} unseen items"
                f"{'' if config.vault else f' left after the {n} training items'}. "
                "Lower --train-items, the fraction or --generations, or use a larger corpus."
            )


def run_experiment(
    config: ExperimentConfig | dict[str, Any] | str | Path | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    jobs: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    plots: bool = True,
) -> Run:
    """Run an experiment end to end and return its :class:`Run`.

    ``config``: an :class:`ExperimentConfig`, a dict of its fields, a YAML/TOML path, or ``None``
    for the default experiment. ``out``: the run folder (default ``runs/<run-id>``). With
    ``resume=True``, ``out`` names an unfinished run folder; its own config is used and the run
    continues from its last finished generation (``out=None``: the newest unfinished run).
    ``jobs``: processes running (seed, policy) chains side by side (default 1; the CLI uses one
    per core); the numbers do not depend on it. Workers are started with 'spawn', so a script
    that asks for ``jobs > 1`` must call this under ``if __name__ == "__main__":``. ``plots=False``
    draws no PNGs (``Run.plot()`` draws them later; a sweep's chains skip them).
    """
    started = time.perf_counter()
    if resume:
        path = Path(out) if out else latest_incomplete_run()
        if path is None:
            raise UserError("--resume: no unfinished run under runs/. Name the run folder with --out.")
        if not (path / "config.yaml").exists():
            raise UserError(f"{path}: not a run folder (no config.yaml); nothing to resume.")
        folder = RunFolder(path)
        config = make_config(folder.read_config(), source=str(folder.config_path))
    else:
        if config is None or isinstance(config, (str, Path)):
            config = load_config(config)
        elif isinstance(config, dict):
            config = make_config(config)
        if out is None:
            DEFAULT_RUNS_DIR.mkdir(exist_ok=True)
            out = DEFAULT_RUNS_DIR / new_run_id(config.family, DEFAULT_RUNS_DIR)
        folder = RunFolder(out)
        if folder.path.exists() and not folder.path.is_dir():
            raise UserError(f"{folder.path}: --out is a file; give a folder for the run (it is created).")
        if folder.path.exists() and any(folder.path.iterdir()):
            raise UserError(f"{folder.path}: the folder exists and is not empty. Choose another --out, or add --resume to finish it.")

    key_id = None
    if config.watermark is not None:  # a bad spec or key, or one the family cannot sample with, fails before any folder
        config, key_id = _check_scheme(config)
    if config.watermark_key not in (None, NEW_KEY):  # a bad key fails here too, before any folder is written
        from collapselab.provenance.keys import load_key
        from collapselab.provenance.watermark import Watermark

        key_id = Watermark(load_key(config.watermark_key)).key_id
    if config.ledger_signing_key is not None:  # a bad signing key fails now, not after the last generation
        from collapselab.provenance.keys import load_signing_key

        load_signing_key(config.ledger_signing_key)
    if config.credentials is not None:  # missing or unreadable credentials fail before any folder too
        from collapselab.provenance.credentials import check_credentials

        check_credentials(config.credentials)
    if config.family in NEURAL_FAMILIES or config.is_image:  # torch is the [neural] extra, not the core
        from collapselab.extras import require_torch

        require_torch(f"--family {config.family}" + (f" on images ({config.corpus})" if config.is_image else ""))
    device = config.model.get("device", "cpu")
    if device != "cpu":  # --device cuda without a GPU fails here, before any folder is written
        from collapselab.models.torch_utils import resolve_device

        resolve_device(device)
    check_writable_dir(folder.path.parent, "run")  # a parent that is a file or read-only fails before the corpus loads
    corpus = load_corpus(config)  # bad input fails here, before any folder is written
    _check_corpus(config, corpus)
    requested = None
    if config.train_items and n_items(corpus.train) < config.train_items:
        requested, used = config.train_items, n_items(corpus.train)
        config = config.model_copy(update={"train_items": used})  # config.yaml records what was used
        if on_event is not None:
            on_event(Event("note", message=f"--train-items {requested}: the corpus {config.corpus} has only {used} "
                                           f"training items, so the run uses {used} (recorded in config.yaml; "
                                           f"summary.json keeps the {requested} asked for)."))
    existed = folder.path.exists()
    folder.path.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(folder.path):
            return _run_in(folder, config, corpus, key_id, jobs, on_event, started, requested, plots)
    except UserError:
        if not resume and not folder.metrics_path.exists():  # refused before any generation (a model too big
            _empty(folder.path, remove=not existed)         # for the machine): leave no unfinished run behind
        raise
    except OSError as e:  # the disk said no: every file is written whole or not at all (collapselab.atomic)
        if not folder.metrics_path.exists():
            if not resume:  # before the first generation: no half-made run folder either
                _empty(folder.path, remove=not existed)
            raise
        from collapselab.oserrors import describe

        raise UserError(f"{describe(e)}. The finished generations are saved; continue with "
                        f"`collapselab run --resume --out {folder.path}`.") from None


def _empty(path: Path, remove: bool) -> None:
    """Delete what a refused run wrote into ``path`` (and ``path`` itself when the run made it)."""
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if remove:
        path.rmdir()


def _run_in(folder: RunFolder, config: ExperimentConfig, corpus, key_id, jobs, on_event, started: float,
            requested: int | None = None, plots: bool = True) -> Run:
    """The run proper, once the input is checked and the folder made: the loop, the plots, the summary."""
    if config.watermark_key == NEW_KEY:
        config, key_id = _new_run_key(config, folder)
    folder.write_config(config.model_dump(mode="json"))
    if config.is_text:
        corpus.vocab.save(folder.path / "vocab.txt")
    evaluator = make_evaluator(config, corpus)

    ledger = RunLedger(folder.ledger_path, family=config.family, corpus_name=str(config.corpus),
                       human=dataset_hash(corpus.train), pool=dataset_hash(corpus.pool), watermark_key_id=key_id,
                       **_vault_shard(corpus))
    # A text or image generation takes far longer than a checkpoint: one after each. A theory model's
    # takes a millisecond, and runs have thousands of chains: one a second at most (see runfolder).
    folder.checkpoint_every = 0.0 if (config.is_text or config.is_image) else RUN_CHECKPOINT_SECONDS
    folder.before_checkpoint = ledger.flush  # provenance first: a row in metrics.parquet always has its entries
    try:
        data = SeedData(config, corpus, evaluator)
        run_loop(config, data, folder, sinks=run_sinks(config, folder, ledger=ledger, vocab=data.vocab), jobs=jobs,
                 on_event=on_event)
    finally:
        try:
            folder.flush_metrics()  # the generations held back by the checkpoint interval (also on Ctrl-C)
        finally:
            ledger.close()
    run = Run(folder.path)
    if plots:
        run.plot()
    blocks = run.table()
    summary = {
        "status": "complete",
        "family": config.family,
        "corpus": {
            "name": config.corpus,
            "train_items": n_items(corpus.train),
            **({"train_items_requested": requested} if requested is not None else {}),
            "pool_items": n_items(corpus.pool),
            "holdout_items": n_items(corpus.holdout),
            **({"vault": corpus.vault_ref} if getattr(corpus, "vault_ref", None) else {}),
            **({"vocab_size": len(corpus.vocab), "train_tokens": corpus.train.n_tokens,
                "rare_words": int(len(evaluator.rare_)), "rare_max_count": config.rare_max_count} if config.is_text else {}),
        },
        "diversity_metric": config.diversity_metric,
        **_watermark_summary(config, key_id),
        "caption": run.caption(),
        "final": _final(run.metrics, config),
        "table": table_records(blocks),
        # the ledger's final tree head: `ledger verify RUN/ledger.sqlite` checks the ledger extends it
        "ledger_head": run_head(folder.ledger_path, config.ledger_signing_key),
        "seconds": round(time.perf_counter() - started, 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    folder.write_summary(summary)
    return run


def _final(metrics: pd.DataFrame, config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Per policy: the last generation's metrics (mean over seeds)."""
    G = config.generations
    last = metrics[metrics["generation"] == G]
    num = last.select_dtypes(include=[np.number]).drop(columns=["seed", "generation"], errors="ignore")
    return {p: {k: float(v) for k, v in g.mean().items()} for p, g in num.groupby(last["policy"])}
