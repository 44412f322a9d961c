"""The self-consuming loop.

For every seed: generation 0 learns from human data only and is shared by all policies (same
data, same seed, so their curves start from one point). Then, per policy, generation g = 1..G is
fitted on the training set the policy builds from human data and earlier outputs, and samples the
data generation g+1 will see. After each generation the samples and the metrics row are written
to the run folder, which is what ``--resume`` continues from.

Randomness: generation g of policy p under seed s uses its own generator, derived from
``(s, p, g)`` alone, so a resumed run draws exactly what an uninterrupted one would, adding a
policy does not change the others' numbers, and chains may run in parallel processes
(``jobs``) without changing a single number.

Watermarks
----------
With ``watermark_key`` (ngram), every sampler embeds our green-list watermark, as it always did:
``watermark_z`` is the pooled z-score of the generation's output and ``watermark_flagged_share`` the
share of its items with z >= 4. With ``watermark`` (a scheme spec file,
:mod:`collapselab.detect.schemes`), the samplers follow the scheme's generation rule in the token
space of the seed's generation-0 model (``watermark_tokens``, ``watermark_vocab_size``: gpt's BPE
pieces, SmolLM2's tokenizer, the n-gram's word ids), which every later generation shares, and:

* ``watermark_flagged_share``: the share of the generation's items the scheme flags
  (``p_value <= flag_p_value``, the spec's, default 0.01);
* ``watermark_z``: one pooled statistic, standard normal for text written without the key. Where
  the scheme has per-item z-scores (collapselab, hf-kgw, gumbel, gumbel-dual) it is
  ``sum z_i sqrt(n_i) / sqrt(sum n_i)`` over the items with scored tokens (``n_i`` of them): the
  z-score of all the generation's scored tokens taken together. SynthID has no z: there it is
  Stouffer's combination of the items' p-values, ``sum Phi^-1(1 - p_i) / sqrt(k)``.

A share ``watermark_share`` of each generation's items carries the watermark, either way.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from collapselab.config import NEURAL_TEXT_FAMILIES, ExperimentConfig
from collapselab.data import concat, n_items
from collapselab.loop.policies import LoopState, parse_policy
from collapselab.loop.provenance import RunLedger, dataset_hash
from collapselab.loop.streams import generation_rng
from collapselab.models import make_model
from collapselab.runfolder import RunFolder
from collapselab.workers import exit_with_parent


GRID_IMAGES = 100  # images per generation in the PNG grid


def load_loop_scheme(config: ExperimentConfig, vocab_size: int | None):
    """The scheme of ``config.watermark`` over ``vocab_size`` ids, its key read from its key file.

    One UserError line where the loop cannot sample with it: a scheme other than ``collapselab``
    for the n-gram (its sampler forms no logits), or a spec that fixes ``vocab_size`` (the loop's
    model decides the id space). The ``collapselab`` scheme embeds with the config's
    ``watermark_delta`` (its spec has no bias)."""
    from collapselab.detect.schemes import build, read_key, read_spec
    from collapselab.errors import UserError

    spec, key_path = read_spec(config.watermark)
    if config.family == "ngram" and spec.scheme != "collapselab":
        raise UserError(f"watermark: {config.watermark} is a {spec.scheme} spec; the ngram family samples only with the "
                        "collapselab scheme (its sampler forms no logits for a logits processor). Use --family gpt or smollm2.")
    if spec.vocab_size is not None:
        raise UserError(f"watermark: {config.watermark} sets vocab_size ({spec.vocab_size}); leave it out in a run, whose "
                        f"model decides the id space (the {config.family} model's).")
    key = read_key(spec.scheme, key_path)
    scheme = build(spec, key, vocab_size=vocab_size)
    if spec.scheme == "collapselab":
        from collapselab.provenance.watermark import Watermark

        scheme.watermark = Watermark(key, gamma=spec.gamma, delta=config.watermark_delta, context_width=spec.context_width)
    return scheme


def pooled_z(scores) -> float:
    """A generation's pooled watermark statistic (see the module docstring); NaN if nothing was scored."""
    n = np.asarray(scores.n_scored, dtype=np.float64)
    ok = n > 0
    if not ok.any():
        return float("nan")
    z = np.asarray(scores.z, dtype=np.float64)[ok]
    if np.isfinite(z).all():
        return float(np.sum(z * np.sqrt(n[ok])) / np.sqrt(n[ok].sum()))
    from scipy.stats import norm

    p = np.clip(np.asarray(scores.p_value, dtype=np.float64)[ok], 1e-300, 1.0)
    return float(norm.isf(p).sum() / np.sqrt(ok.sum()))


@dataclass
class Event:
    """A progress report: ``kind`` is 'start', 'generation', 'done' or 'note' (``message`` for the user)."""

    kind: str
    seed: int = 0
    policy: str = ""
    generation: int = 0
    total: int = 0
    seconds: float = 0.0
    sources: tuple = ()  # origins of the training items (see policies.TrainingSet)
    ancestors: tuple = ()  # tree runs: the label of the model at each depth above this one
    output_hash: str = ""  # content hash of what the generation produced
    message: str = ""  # 'note': something the user should know (a setting the run had to change)


def total_steps(config: ExperimentConfig) -> int:
    P, G = len(config.policies), config.generations
    per_seed = sum(P ** d for d in range(1, G + 1)) if config.tree else P * G
    return len(config.seeds) * (1 + per_seed)


@dataclass
class _Job:
    """Everything a chain needs; forked worker processes inherit it."""

    config: ExperimentConfig
    corpus: object
    evaluator: object
    folder: RunFolder
    gen0: dict  # seed -> generation 0's model

    def data(self, seed: int) -> tuple:
        """(corpus, evaluator) of run seed ``seed``: the run's own, or with ``resample_data`` the seed's
        own split (built once per process, from the config alone)."""
        if not self.config.resample_data:
            return self.corpus, self.evaluator
        self._data = getattr(self, "_data", {})
        if seed not in self._data:
            from collapselab.corpus import load_corpus
            from collapselab.metrics.suite import make_evaluator

            corpus = load_corpus(self.config, seed)
            self._data[seed] = (corpus, make_evaluator(self.config, corpus))
        return self._data[seed]

    def new_model(self, seed: int):
        vocab = self.data(seed)[0].vocab if self.config.is_text else None
        return make_model(self.config.family, self.config.model, vocab=vocab, image=self.config.is_image)

    def fit(self, data, rng, seed: int, parent: str | None = None):
        """A new model fitted on ``data``. Neural text families fine-tune (``init``): from generation
        0's weights (the Nature paper), from the ``parent`` model's, or from scratch."""
        model = self.new_model(seed)
        init = self.config.model.get("init") if self.config.family in NEURAL_TEXT_FAMILIES else None
        if init is None or parent is None:
            return model.fit(data, rng=rng)
        start = self.gen0[seed] if init == "gen0" else self.parent_model(parent, seed) if init == "previous" else None
        return model.fit(data, rng=rng, init_from=start)

    def keep_model(self, label: str, seed: int, g: int, model) -> None:
        """``init: previous`` only: keep the model for its child, in memory and as a checkpoint in the
        run folder (so a resumed run fine-tunes from exactly the same weights)."""
        if self.config.model.get("init") != "previous" or self.config.family not in NEURAL_TEXT_FAMILIES:
            return
        import pickle

        from collapselab.atomic import atomic_write

        def dump(tmp: str) -> None:
            with open(tmp, "wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)

        self._models = getattr(self, "_models", {})
        self._models[(label, seed)] = model
        path = self.folder.checkpoint_path(label, seed, g)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dump)

    def parent_model(self, label: str, seed: int):
        if label == "gen0":
            return self.gen0[seed]
        cached = getattr(self, "_models", {}).get((label, seed))
        if cached is not None:
            return cached
        import pickle

        g = max(int(p.stem[3:]) for p in self.folder.checkpoint_path(label, seed, 0).parent.glob("gen*.pkl"))
        with open(self.folder.checkpoint_path(label, seed, g), "rb") as f:
            return pickle.load(f)

    def scheme(self, seed: int):
        """The run's watermark scheme (``watermark``) in seed ``seed``'s token space (its generation-0
        model's), built once per process from the spec and key files (the key is never pickled)."""
        if self.config.watermark is None:
            return None
        self._schemes = getattr(self, "_schemes", {})
        if seed not in self._schemes:
            self._schemes[seed] = load_loop_scheme(self.config, self.gen0[seed].watermark_vocab_size())
        return self._schemes[seed]

    def scheme_scores(self, seed: int, items):
        """The scheme's scores of word-id ``items``, read in seed ``seed``'s token space."""
        return self.scheme(seed).score(self.gen0[seed].watermark_tokens(items))

    def marker(self, seed: int | None):
        """What the samplers of seed ``seed`` embed: the scheme, the key's watermark, or None."""
        if self.config.watermark is None:
            return self.watermark
        if seed is None:
            raise ValueError("a run with a watermark scheme samples in a seed's token space: pass the seed")
        return self.scheme(seed)

    @property
    def watermark(self):
        """The run's watermark, from its key file (loaded in each process; the key is never pickled)."""
        if self.config.watermark_key is None:
            return None
        if not hasattr(self, "_watermark"):
            from collapselab.provenance.keys import load_key
            from collapselab.provenance.watermark import Watermark

            self._watermark = Watermark(load_key(self.config.watermark_key), gamma=self.config.watermark_gamma,
                                        delta=self.config.watermark_delta)
        return self._watermark

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_watermark", "_schemes", "_models", "_judge_draws", "_data")}

    def judge_draw(self, seed: int):
        """The judges' own sample of generation 0's model (loop.judges): as many items as one
        generation's output, from the stream ``(seed, 'judges', 0)``; drawn once per process."""
        self._judge_draws = getattr(self, "_judge_draws", {})
        if seed not in self._judge_draws:
            n = self.config.samples or n_items(self.data(seed)[0].train)
            self._judge_draws[seed] = self.sample(self.gen0[seed], n, generation_rng(seed, "judges", 0), seed)
        return self._judge_draws[seed]

    def sample(self, model, n: int, rng, seed: int | None = None):
        """``n`` items; with a watermark, the first ``round(watermark_share n)`` carry it and the
        rest are drawn after them, unmarked, from the same generator (the contaminated web)."""
        wm = self.marker(seed)
        marked = n if wm is None else int(round(self.config.watermark_share * n))
        if wm is None or marked == n:
            return model.sample(n, rng=rng) if wm is None else model.sample(n, rng=rng, watermark=wm)
        parts = [model.sample(marked, rng=rng, watermark=wm)] if marked else []
        return concat(parts + [model.sample(n - marked, rng=rng)])

    def measure(self, seed: int, model, samples) -> tuple[dict, dict]:
        evaluator = self.data(seed)[1]
        evaluator.gen0 = self.gen0[seed]
        row, per_item = evaluator.evaluate(model, samples)
        if self.config.watermark is not None:  # how strongly the generation's output carries the scheme's key
            scores = self.scheme_scores(seed, samples)
            row["watermark_z"] = pooled_z(scores)
            row["watermark_flagged_share"] = float(np.mean(scores.p_value <= self.scheme(seed).flag_p_value))
            return row, per_item
        wm = self.watermark
        if wm is not None:  # how strongly the generation's output carries the key
            from collapselab.models.ngram import BOS

            det = wm.detect(samples, pad=BOS)
            z, _ = wm.z_and_p(det.n_green.sum(), det.n_scored.sum())
            row["watermark_z"] = float(z)
            row["watermark_flagged_share"] = float(np.mean(det.z >= 4.0))
        return row, per_item

    def save(self, policy: str, seed: int, g: int, samples, per_item: dict) -> None:
        decode = self.data(seed)[0].vocab.decode if self.config.is_text else None
        self.folder.write_samples(policy, seed, g, samples, decode=decode, extra=per_item)
        if self.config.is_image:  # what people look at: a grid of the generation's first images
            from collapselab.report.grid import save_grid

            png = save_grid(samples[:GRID_IMAGES], self.folder.grid_path(policy, seed, g))
            if self.config.credentials:  # C2PA content credentials inside the PNG
                from collapselab.loop.provenance import model_id
                from collapselab.provenance.credentials import sign_png

                sign_png(png, png, model_id=model_id(policy, seed, g), generation=g,  # made by generation g, as its file name says
                         credentials_dir=self.config.credentials)
        if self.config.credentials and self.config.is_text:  # C2PA has no text format: a signed sidecar
            from collapselab.loop.provenance import model_id
            from collapselab.provenance.credentials import sign_text_shard

            sign_text_shard(self.folder.sample_path(policy, seed, g, True), origin="synthetic",
                            model_id=model_id(policy, seed, g), generation=g, credentials_dir=self.config.credentials)

    def loop_state(self, seed: int, label: str, outputs: list) -> LoopState:
        """What the policy of chain (or tree node) ``label`` may draw from and judge with."""
        c = self.data(seed)[0]
        scheme = None
        if self.config.watermark is not None:
            from collapselab.loop.judges import SchemeDetector

            scheme = SchemeDetector(self.scheme(seed), self.gen0[seed].watermark_tokens)
        return LoopState(human=c.train, pool=c.pool, vault=getattr(c, "vault", None), outputs=outputs,
                         holdout=getattr(c, "holdout", None), watermark=self.watermark, scheme=scheme,
                         generations=self.config.generations, seed=seed, label=label,
                         judge_draw=lambda: self.judge_draw(seed))

    def row(self, policy: str, seed: int, g: int, share: float, metrics: dict, train_items: int) -> dict:
        """The metrics row; ``train_items_used``: the items the generation's model was fitted on."""
        return {"policy": policy, "seed": seed, "generation": g, "family": self.config.family, "synthetic_share": share,
                "train_items_used": float(train_items), **metrics}

    def run_chain(self, seed: int, policy_name: str, done: set, emit: Callable) -> None:
        """Generations 1..G of one (seed, policy); ``emit(row, event)`` after each."""
        cfg = self.config
        policy = parse_policy(policy_name)
        last = max(g for g in range(cfg.generations + 1) if (policy.name, seed, g) in done)
        # earlier outputs come back from disk, bit for bit
        state = self.loop_state(seed, policy.name, [self.folder.read_samples(policy.name, seed, g, cfg.is_text) for g in range(last + 1)])
        for g in range(last + 1, cfg.generations + 1):
            state.outputs.append(self.step(policy.name, seed, g, policy, state, emit,
                                           parent="gen0" if g == 1 else policy.name))

    def step(self, label: str, seed: int, g: int, policy, state: LoopState, emit: Callable,
             extra: dict | None = None, ancestors: tuple = (), parent: str = "gen0"):
        """One generation: build its training set, fit, sample, measure, save, report; returns
        the samples. ``label`` names the model (a policy, or a tree path) and its rng stream;
        ``parent`` the model it descends from (its label, or 'gen0')."""
        t0 = time.perf_counter()
        rng = generation_rng(seed, label, g)
        ts = policy.training_set(g, state, rng)
        model = self.fit(ts.data, rng, seed, parent=parent)
        self.keep_model(label, seed, g, model)
        samples = self.sample(model, self.config.samples or n_items(self.data(seed)[0].train), rng, seed)
        metrics, per_item = self.measure(seed, model, samples)
        self.save(label, seed, g, samples, per_item)
        emit({**self.row(label, seed, g, ts.synthetic_share, metrics, len(ts.origin)), **ts.stats, **(extra or {})},
             Event("generation", seed=seed, policy=label, generation=g, seconds=time.perf_counter() - t0,
                   sources=tuple(int(o) for o in np.unique(ts.origin)), output_hash=dataset_hash(samples),
                   ancestors=ancestors))
        return samples


    def run_tree(self, seed: int, done: set, emit: Callable) -> None:
        """The derivative tree of one seed: every model spawns one child per policy, trained on
        the training set that policy builds from the child's ancestors' outputs (depth first)."""
        cfg = self.config
        policies = [parse_policy(p) for p in cfg.policies]
        stack = [("root", [self.folder.read_samples("root", seed, 0, cfg.is_text)], ("root",))]
        while stack:
            label, outputs, path = stack.pop()
            d = len(outputs)  # depth of the children
            if d > cfg.generations:
                continue
            for policy in reversed(policies):
                child = policy.name if label == "root" else f"{label}>{policy.name}"
                if (child, seed, d) in done:
                    samples = self.folder.read_samples(child, seed, d, cfg.is_text)
                else:
                    state = self.loop_state(seed, child, outputs)
                    samples = self.step(child, seed, d, policy, state, emit,
                                        extra={"parent": label, "branch_policy": policy.name}, ancestors=path,
                                        parent="gen0" if label == "root" else label)
                stack.append((child, outputs + [samples], path + (child,)))


_JOB: _Job | None = None  # in a worker process: set once by _init_worker
_QUEUE = None


def _init_worker(job: _Job, q) -> None:
    global _JOB, _QUEUE
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS/OpenMP thread per worker: the workers already fill the cores
    if "torch" in sys.modules:  # unpickling a neural generation 0 brought torch in
        sys.modules["torch"].set_num_threads(1)
    _JOB, _QUEUE = job, q
    exit_with_parent()


def _chain_worker(args) -> None:
    seed, policy, done = args
    _JOB.run_chain(seed, policy, done, lambda row, ev: _QUEUE.put((row, ev)))


def default_jobs(n_chains: int) -> int:
    return max(1, min(n_chains, os.cpu_count() or 1))


def run_loop(config: ExperimentConfig, corpus, evaluator, folder: RunFolder, *, jobs: int | None = None,
             on_event: Callable[[Event], None] | None = None, ledger: RunLedger | None = None) -> list[dict]:
    """Run (or finish) every (seed, policy) chain; returns all metrics rows.

    ``jobs`` > 1 runs chains in that many worker processes (started with 'spawn': forking a
    process whose OpenMP/BLAS threads are running can deadlock the child); the parent alone
    writes ``metrics.parquet``, after each row, so the checkpoint is always whole.
    """
    emit_event = on_event or (lambda e: None)
    rows = folder.read_metrics().to_dict("records")
    done = {(r["policy"], int(r["seed"]), int(r["generation"])) for r in rows}
    emit_event(Event("start", total=total_steps(config), generation=len(done)))

    def accept(row: dict, event: Event) -> None:
        if ledger is not None:  # provenance first: a row in metrics.parquet always has its entries
            ledger.record(row["policy"], row["seed"], row["generation"], event.sources, event.output_hash,
                          ancestors=event.ancestors or None)
        rows.append(row)
        done.add((row["policy"], row["seed"], row["generation"]))
        folder.write_metrics(rows)
        emit_event(event)

    job = _Job(config, corpus, evaluator, folder, gen0={})
    for seed in config.seeds:
        # generation 0: human data only, shared by all policies, evaluated once
        t0 = time.perf_counter()
        rng = generation_rng(seed, "gen0", 0)
        seed_corpus = job.data(seed)[0]
        if ledger is not None and config.resample_data:  # the seed's own human data, for its provenance
            ledger.add_seed(seed, dataset_hash(seed_corpus.train), dataset_hash(seed_corpus.pool))
        n_out = config.samples or n_items(seed_corpus.train)
        job.gen0[seed] = job.fit(seed_corpus.train, rng, seed)
        missing = [p for p in config.root_labels if (p, seed, 0) not in done]
        if missing:
            samples0 = job.sample(job.gen0[seed], n_out, rng, seed)
            metrics0, per_item0 = job.measure(seed, job.gen0[seed], samples0)
            if ledger is not None:
                ledger.record("", seed, 0, (-1,), dataset_hash(samples0))
            for p in missing:
                job.save(p, seed, 0, samples0, per_item0)
                rows.append(job.row(p, seed, 0, 0.0, metrics0, n_items(seed_corpus.train)))
                done.add((p, seed, 0))
            folder.write_metrics(rows)
        emit_event(Event("generation", seed=seed, policy="all", generation=0, seconds=time.perf_counter() - t0))

    chains = [(s, p) for s in config.seeds for p in config.policies
              if any((p, s, g) not in done for g in range(1, config.generations + 1))]
    jobs = 1 if jobs is None else max(1, min(jobs, len(chains) or 1))
    if config.tree:  # one process: a tree's nodes depend on each other all the way up
        for seed in config.seeds:
            job.run_tree(seed, done, accept)
    elif jobs == 1:
        for seed, policy in chains:
            job.run_chain(seed, policy, done, accept)
    else:
        _run_parallel(job, chains, done, jobs, accept)
    emit_event(Event("done", total=total_steps(config)))
    return rows


def _run_parallel(job: _Job, chains, done, jobs: int, accept: Callable) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(job, q)) as pool:
        result = pool.map_async(_chain_worker, [(s, p, set(done)) for s, p in chains], chunksize=1)
        while True:
            try:
                accept(*q.get(timeout=0.1))
            except queue_mod.Empty:
                if result.ready():
                    break
        while True:  # rows sent just before the last worker finished
            try:
                accept(*q.get(timeout=0.2))
            except queue_mod.Empty:
                break
        result.get()  # re-raise a worker's exception here
        pool.close()  # let the workers finish and release their locks (terminate() would leak them)
        pool.join()
    q.close()
    q.join_thread()
