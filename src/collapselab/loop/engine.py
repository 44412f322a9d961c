"""The self-consuming loop: a runner that yields one :class:`~collapselab.loop.types.Generation`
per generation, and :func:`run_loop`, which hands each to the run's sinks.

For every seed: generation 0 learns from human data only and is shared by all policies (same
data, same seed, so their curves start from one point). Then, per policy, generation g = 1..G is
fitted on the training set the policy builds from human data and earlier outputs, and samples the
data generation g+1 will see. A tree run (``tree``) grows one child per policy from every model
instead, each trained on what its ancestors produced.

The runner knows no sink: whatever stores a generation (sample shards, grids, credentials, the
ledger, the metrics table; :mod:`collapselab.loop.sinks`) is handed to :func:`run_loop`. It reads
back from the run folder only what a resumed run has already made (``done``).

Randomness: generation g of policy p under seed s uses its own generator, derived from
``(s, p, g)`` alone, so a resumed run draws exactly what an uninterrupted one would, adding a
policy does not change the others' numbers, and chains may run in parallel processes
(``jobs``) without changing a single number. The watermark's part is in
:mod:`collapselab.loop.marking`, the models' in :mod:`collapselab.loop.lineage`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from collapselab.config import ExperimentConfig
from collapselab.data import n_items
from collapselab.loop.lineage import Lineage
from collapselab.loop.marking import Marking, load_loop_scheme, pooled_z  # noqa: F401  (their old home)
from collapselab.loop.provenance import dataset_hash
from collapselab.loop.seeds import SeedData
from collapselab.loop.streams import generation_rng  # noqa: F401  (its old home, still imported from here)
from collapselab.loop.types import Generation, LoopState, Origin, Policy
from collapselab.runfolder import RunFolder
from collapselab.workers import exit_with_parent


@dataclass
class Event:
    """A progress report: ``kind`` is 'start', 'generation', 'done' or 'note' (``message`` for the user)."""

    kind: str
    seed: int = 0
    policy: str = ""
    generation: int = 0
    total: int = 0
    seconds: float = 0.0
    sources: tuple = ()  # origins of the training items (see types.TrainingSet)
    ancestors: tuple = ()  # tree runs: the label of the model at each depth above this one
    output_hash: str = ""  # content hash of what the generation produced
    message: str = ""  # 'note': something the user should know (a setting the run had to change)


class Sink(Protocol):
    def write(self, result: Generation) -> None: ...


def total_steps(config: ExperimentConfig) -> int:
    P, G = len(config.policies), config.generations
    per_seed = sum(P ** d for d in range(1, G + 1)) if config.tree else P * G
    return len(config.seeds) * (1 + per_seed)


class Runner:
    """Everything a chain needs; worker processes get a pickled copy (keys and caches are rebuilt there)."""

    def __init__(self, config: ExperimentConfig, data: SeedData, folder: RunFolder) -> None:
        self.config, self.data, self.folder = config, data, folder
        self.lineage = Lineage(config, self.data.vocab, folder)
        self.marking = Marking(config, self.lineage.gen0)
        self._judge_draws: dict = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_judge_draws": {}}

    def n_out(self, seed: int) -> int:
        """Items each generation of seed ``seed`` produces."""
        return self.config.samples or n_items(self.data(seed)[0].train)

    def judge_draw(self, seed: int):
        """The judges' own sample of generation 0's model (loop.judges): as many items as one
        generation's output, from the stream ``(seed, 'judges', 0)``; drawn once per process."""
        if seed not in self._judge_draws:
            rng = generation_rng(seed, "judges", 0)
            self._judge_draws[seed] = self.marking.sample(self.lineage.gen0[seed], self.n_out(seed), rng, seed)
        return self._judge_draws[seed]

    def measure(self, seed: int, model, samples) -> tuple[dict, dict]:
        evaluator = self.data(seed)[1]
        evaluator.gen0 = self.lineage.gen0[seed]
        row, per_item = evaluator.evaluate(model, samples)
        return {**row, **self.marking.measure(seed, samples)}, per_item

    def row(self, label: str, seed: int, g: int, share: float, metrics: dict, train_items: int) -> dict:
        """The metrics row; ``train_items_used``: the items the generation's model was fitted on."""
        return {"policy": label, "seed": seed, "generation": g, "family": self.config.family, "synthetic_share": share,
                "train_items_used": float(train_items), **metrics}

    def loop_state(self, seed: int, label: str, outputs: list) -> LoopState:
        """What the policy of chain (or tree node) ``label`` may draw from and judge with."""
        c = self.data(seed)[0]
        return LoopState(human=c.train, pool=c.pool, vault=getattr(c, "vault", None), outputs=outputs,
                         holdout=getattr(c, "holdout", None), watermark=self.marking.watermark,
                         scheme=self.marking.detector(seed), generations=self.config.generations, seed=seed,
                         label=label, judge_draw=lambda: self.judge_draw(seed), vocab=getattr(c, "vocab", None))

    def generation0(self, seed: int, done: set) -> Generation:
        """Fit seed ``seed``'s generation 0 on human data (every process that runs its chains does);
        sampled and measured once, for the root labels not stored yet."""
        t0 = time.perf_counter()
        rng = generation_rng(seed, "gen0", 0)
        corpus = self.data(seed)[0]
        human = (dataset_hash(corpus.train), dataset_hash(corpus.pool)) if self.config.resample_data else None
        model = self.lineage.gen0[seed] = self.lineage.fit(corpus.train, rng, seed, human=corpus)
        missing = tuple(p for p in self.config.root_labels if (p, seed, 0) not in done)
        if not missing:
            return Generation(seed, 0, (), [], human=human, seconds=time.perf_counter() - t0)
        samples = self.marking.sample(model, self.n_out(seed), rng, seed)
        metrics, per_item = self.measure(seed, model, samples)
        rows = [self.row(p, seed, 0, 0.0, metrics, n_items(corpus.train)) for p in missing]
        return Generation(seed, 0, missing, rows, samples, per_item, (int(Origin.HUMAN),), dataset_hash(samples),
                          human=human, seconds=time.perf_counter() - t0)

    def step(self, label: str, seed: int, g: int, policy: Policy, state: LoopState, *, extra: dict | None = None,
             ancestors: tuple = (), parent: str = "gen0") -> Generation:
        """One generation: build its training set, fit, sample, measure. ``label`` names the model
        (a policy, or a tree path) and its rng stream; ``parent`` the model it descends from."""
        t0 = time.perf_counter()
        rng = generation_rng(seed, label, g)
        ts = policy.training_set(g, state, rng)
        model = self.lineage.fit(ts.data, rng, seed, parent=parent, human=self.data(seed)[0])
        self.lineage.keep(label, seed, g, model)
        samples = self.marking.sample(model, self.n_out(seed), rng, seed)
        metrics, per_item = self.measure(seed, model, samples)
        row = {**self.row(label, seed, g, ts.synthetic_share, metrics, len(ts.origin)), **ts.stats, **(extra or {})}
        return Generation(seed, g, (label,), [row], samples, per_item, tuple(int(o) for o in np.unique(ts.origin)),
                          dataset_hash(samples), ancestors, seconds=time.perf_counter() - t0)

    def chain(self, seed: int, policy: Policy, done: set) -> Iterator[Generation]:
        """Generations 1..G of one (seed, policy), from where a resumed run got to."""
        cfg = self.config
        last = max(g for g in range(cfg.generations + 1) if (policy.name, seed, g) in done)
        # earlier outputs come back from disk, bit for bit
        state = self.loop_state(seed, policy.name, [self.folder.read_samples(policy.name, seed, g, cfg.is_text)
                                                    for g in range(last + 1)])
        for g in range(last + 1, cfg.generations + 1):
            result = self.step(policy.name, seed, g, policy, state, parent="gen0" if g == 1 else policy.name)
            state.outputs.append(result.samples)
            yield result

    def tree(self, seed: int, done: set) -> Iterator[Generation]:
        """The derivative tree of one seed: every model spawns one child per policy, trained on
        the training set that policy builds from the child's ancestors' outputs (depth first)."""
        cfg = self.config
        stack = [("root", [self.folder.read_samples("root", seed, 0, cfg.is_text)], ("root",))]
        while stack:
            label, outputs, path = stack.pop()
            d = len(outputs)  # depth of the children
            if d > cfg.generations:
                continue
            for policy in reversed(cfg.parsed_policies):
                child = policy.name if label == "root" else f"{label}>{policy.name}"
                if (child, seed, d) in done:
                    samples = self.folder.read_samples(child, seed, d, cfg.is_text)
                else:
                    result = self.step(child, seed, d, policy, self.loop_state(seed, child, outputs),
                                       extra={"parent": label, "branch_policy": policy.name}, ancestors=path,
                                       parent="gen0" if label == "root" else label)
                    samples = result.samples
                    yield result
                stack.append((child, outputs + [samples], path + (child,)))


_RUNNER: Runner | None = None  # in a worker process: set once by _init_worker
_QUEUE = None


def _init_worker(runner: Runner, q) -> None:
    global _RUNNER, _QUEUE
    threadpool_limits(1)  # one BLAS/OpenMP thread per worker: the workers already fill the cores
    if "torch" in sys.modules:  # unpickling a neural generation 0 brought torch in
        sys.modules["torch"].set_num_threads(1)
    _RUNNER, _QUEUE = runner, q
    exit_with_parent()


def _chain_worker(args) -> None:
    seed, policy, done = args
    for result in _RUNNER.chain(seed, policy, done):
        _QUEUE.put(result)


def default_jobs(n_chains: int) -> int:
    return max(1, min(n_chains, os.cpu_count() or 1))


def run_loop(config: ExperimentConfig, data: SeedData, folder: RunFolder, *, sinks: Iterable[Sink] = (),
             jobs: int | None = None, on_event: Callable[[Event], None] | None = None) -> None:
    """Run (or finish) every (seed, policy) chain, or every seed's tree, on each seed's human data
    (``data``); each generation goes to ``sinks`` in their order, then to ``on_event``.

    ``jobs`` > 1 runs chains in that many worker processes (started with 'spawn': forking a
    process whose OpenMP/BLAS threads are running can deadlock the child); the parent alone
    hands their generations to the sinks, in the order they arrive.
    """
    emit_event = on_event or (lambda e: None)
    sinks = list(sinks)
    done = {(r["policy"], int(r["seed"]), int(r["generation"])) for r in folder.read_metrics().to_dict("records")}
    emit_event(Event("start", total=total_steps(config), generation=len(done)))

    def accept(result: Generation) -> None:
        for sink in sinks:
            sink.write(result)
        done.update((label, result.seed, result.generation) for label in result.labels)
        emit_event(Event("generation", seed=result.seed, policy=result.labels[0] if result.generation else "all",
                         generation=result.generation, seconds=result.seconds, sources=result.sources,
                         output_hash=result.output_hash, ancestors=result.ancestors))

    runner = Runner(config, data, folder)
    for seed in config.seeds:
        accept(runner.generation0(seed, done))
    chains = [(s, p) for s in config.seeds for p in config.parsed_policies
              if any((p.name, s, g) not in done for g in range(1, config.generations + 1))]
    jobs = 1 if jobs is None else max(1, min(jobs, len(chains) or 1))
    if config.tree:  # one process: a tree's nodes depend on each other all the way up
        for seed in config.seeds:
            for result in runner.tree(seed, done):
                accept(result)
    elif jobs == 1:
        for seed, policy in chains:
            for result in runner.chain(seed, policy, done):
                accept(result)
    else:
        _run_parallel(runner, chains, done, jobs, accept)
    emit_event(Event("done", total=total_steps(config)))


def _run_parallel(runner: Runner, chains, done, jobs: int, accept: Callable) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(runner, q)) as pool:
        result = pool.map_async(_chain_worker, [(s, p, set(done)) for s, p in chains], chunksize=1)
        while True:
            try:
                accept(q.get(timeout=0.1))
            except queue_mod.Empty:
                if result.ready():
                    break
        while True:  # generations sent just before the last worker finished
            try:
                accept(q.get(timeout=0.2))
            except queue_mod.Empty:
                break
        result.get()  # re-raise a worker's exception here
        pool.close()  # let the workers finish and release their locks (terminate() would leak them)
        pool.join()
    q.close()
    q.join_thread()
