"""A sweep: one experiment over a grid of settings × seeds × policies, each chain a task on a backend.

    >>> from collapselab.loop.sweep import run_sweep
    >>> sweep = run_sweep("sweep.yaml", "runs/sweep", backend="ray", jobs=2)
    >>> sweep.metrics.groupby(["top_p", "policy"])["vocab_size"].last()

The config is an experiment config (the fields of ``collapselab run``'s) plus ``grid:``, a mapping
from a setting to the values it takes; a key is a config field (``train_items``), a setting of the
family's model (``top_p``, the same as ``model.top_p``). Every combination is a *point*, and every
point × seed × policy is a *chain*: one ``collapselab run`` with one seed and one policy, run by
:func:`collapselab.api.run_experiment` into its own run folder. All randomness of a chain comes from
its seed, policy and generation, so a chain's numbers are the ones ``collapselab run`` gives the same
(seed, policy) with the point's settings, whatever backend, process or order ran it.

::

    OUT/
      sweep.json                          the resolved base config, the grid, the points, the chains
      watermark.key                       watermark_key: new: one key for every chain (0600)
      chains/point000/seed0/replace/      a run folder per chain (config.yaml, metrics.parquet, ...)
      metrics.parquet                     every chain's rows: point, the grid's columns, then the run's
      summary.json                        written last: the final diversity per point and policy

A chain is finished when its folder has ``summary.json`` (written last, atomically: its done-marker).
Rerunning a killed sweep into the same ``OUT`` skips the finished chains, resumes an unfinished one
from its last checkpointed generation (``run --resume``), and writes the same ``metrics.parquet``
byte for byte. A rerun with another config into the same ``OUT`` is refused.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from collapselab.atomic import atomic_write, atomic_write_json, check_writable_dir
from collapselab.config import ExperimentConfig, make_config, read_config_file
from collapselab.errors import UserError
from collapselab.runfolder import RunFolder, RunLock, slug

SWEEP_KEY = "watermark.key"  # watermark_key: new: the sweep's own key, in OUT (0600)
RESERVED = {"seeds": "seeds:", "seed": "seeds:", "policies": "policies:", "policy": "policies:"}
PATH_FIELDS = ("corpus", "vault", "credentials", "watermark_key", "watermark", "ledger_signing_key")
Progress = Callable[[int, int, str], None]  # (chains done, chains in all, 'chains')


@dataclass(frozen=True)
class Chain:
    """One task: the point's settings, one seed, one policy, and the run folder it writes."""

    point: int
    values: dict
    seed: int
    policy: str
    config: dict  # the chain's experiment config (JSON-able): the base, the point, [seed], [policy]
    folder: str  # absolute

    @property
    def name(self) -> str:
        return f"point{self.point:03d}/seed{self.seed}/{slug(self.policy)}"

    @property
    def done(self) -> bool:
        return RunFolder(self.folder).complete


# ----------------------------------------------------------------------------- the config
def read_sweep(config: str | Path | dict) -> tuple[dict, dict, str]:
    """``(base settings, grid, source)`` of a sweep config file or dict."""
    if isinstance(config, dict):
        values, source = dict(config), "config"
    else:
        values, source = read_config_file(config), str(config)
    grid = values.pop("grid", None) or {}
    if not isinstance(grid, dict):
        raise UserError(f"{_at(source, 'grid')}: grid must be a mapping of settings to lists of values, "
                        f"e.g. grid: {{top_p: [0.9, 1.0]}}.")
    for key, vals in grid.items():
        where = _at(source, "grid", key)
        if key in RESERVED:
            raise UserError(f"{where}: grid.{key}: list them under {RESERVED[key]} (every chain is one seed and one policy).")
        if not isinstance(vals, list) or not vals:
            raise UserError(f"{where}: grid.{key}: give a non-empty list of values, e.g. {key}: [a, b].")
        for v in vals:
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise UserError(f"{where}: grid.{key}: {v!r} is not a number, string, boolean or null; "
                                "grid values become metrics columns.")
        if len({json.dumps(v) for v in vals}) != len(vals):
            raise UserError(f"{where}: grid.{key}: a value is listed twice; give each once.")
    return values, grid, source


def expand_grid(grid: dict) -> list[dict]:
    """Every combination of the grid's values, the first key varying slowest (``[{}]`` for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def apply_point(base: dict, point: dict, source: str = "config") -> dict:
    """``base`` with the point's settings: a config field, ``model.NAME``, or a setting of the family's model."""
    values = {**base, "model": dict(base.get("model") or {})}
    for key, v in point.items():
        if key.startswith("model."):
            values["model"][key.removeprefix("model.")] = v
        elif key in ExperimentConfig.model_fields:
            values[key] = v
        else:
            family = values.get("family", ExperimentConfig.model_fields["family"].default)
            fields = make_config({"family": family}).params_class().model_fields
            if key not in fields:
                raise UserError(f"{_at(source, 'grid', key)}: grid.{key}: not a config setting nor a setting of the "
                                f"{family} model ({', '.join(fields)}). Check the spelling.")
            values["model"][key] = v
    if not values["model"]:
        del values["model"]
    return values


def plan_sweep(config: str | Path | dict, out: str | Path) -> tuple[dict, list[Chain]]:
    """The sweep's manifest and its chains, every point's config validated before any work starts."""
    base, grid, source = read_sweep(config)
    if base.get("preset"):
        from collapselab.presets import preset_config

        base = {**preset_config(base["preset"]), **base}
    base = _absolute_paths(base)
    if base.get("tree"):
        raise UserError(f"{_at(source, 'tree')}: tree: a sweep runs one chain per seed and policy; a tree run grows "
                        "every policy from every model. Run trees with `collapselab run`.")
    out = Path(out).resolve()
    if base.get("watermark_key") == "new":  # one key for the whole sweep (made by run_sweep), not one per chain
        base["watermark_key"] = str(out / SWEEP_KEY)
    chains = []
    points = expand_grid(grid)
    for i, point in enumerate(points):
        values = apply_point(base, point, source)
        label = ", ".join(f"{k}={v}" for k, v in point.items())
        cfg = make_config(values, source=f"{source} (grid point {label})" if point else source)
        for policy in cfg.policies:
            for seed in cfg.seeds:
                chain = Chain(i, point, seed, policy, {**values, "seeds": [seed], "policies": [policy]}, "")
                chains.append(replace(chain, folder=str(out / "chains" / chain.name)))
    names = [c.name for c in chains]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: two policies share a folder name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                        "spell each policy once.")
    manifest = {"base": base, "grid": grid, "points": points, "chains": names}
    return manifest, chains


def _absolute_paths(base: dict) -> dict:
    """Paths in the config as absolute paths, so that a worker in another folder reads the same files."""
    out = dict(base)
    for key in PATH_FIELDS:
        v = out.get(key)
        if isinstance(v, str) and "://" not in v and Path(v).expanduser().exists():
            out[key] = str(Path(v).expanduser().resolve())
    return out


def _at(source: str, *keys: str) -> str:
    """``FILE, line N`` of a YAML key (``grid``, then ``top_p`` under it), or just ``source``."""
    path = Path(source)
    if source == "config" or path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return source
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return source
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == key), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return f"{source}, line {line}" if line else source


# ------------------------------------------------------------------------------- one chain
def run_chain(chain: Chain) -> dict:
    """Run (or finish) one chain into its folder; the backends' task. One BLAS (and torch) thread,
    whatever process runs it, so that its numbers do not depend on the backend."""
    from threadpoolctl import threadpool_limits

    from collapselab.api import run_experiment

    folder = Path(chain.folder)
    t0 = time.perf_counter()
    if RunFolder(folder).complete:
        return {"chain": chain.name, "ran": False, "seconds": 0.0}
    resume = RunFolder(folder).metrics_path.exists()
    if folder.exists() and not resume:  # killed before its first generation: start it again
        shutil.rmtree(folder)
    torch = sys.modules.get("torch") or _torch_for(chain)
    threads = torch.get_num_threads() if torch else None
    try:
        with threadpool_limits(1):
            if torch:
                torch.set_num_threads(1)
            if resume:
                run_experiment(out=folder, resume=True, jobs=1, plots=False)
            else:
                run_experiment(chain.config, out=folder, jobs=1, plots=False)  # plots: 94% of a gaussian chain
    except UserError as e:  # say which chain: the point's settings are not the user's flags
        label = "".join(f", {k}={v}" for k, v in chain.values.items())
        raise UserError(f"chain {chain.name} (seed {chain.seed}, policy {chain.policy}{label}): {e}") from None
    finally:
        if torch:
            torch.set_num_threads(threads)
    return {"chain": chain.name, "ran": True, "resumed": resume, "seconds": round(time.perf_counter() - t0, 3)}


def _torch_for(chain: Chain):
    """torch, imported now when the chain will use it (neural families, image metrics), so that its
    thread count is set before the chain's first tensor; else None."""
    from collapselab.config import NEURAL_FAMILIES

    cfg = make_config(chain.config)
    if cfg.family not in NEURAL_FAMILIES and not cfg.is_image:
        return None
    try:
        import torch
    except ImportError:  # run_experiment says which extra to install
        return None
    return torch


# ------------------------------------------------------------------------------- the sweep
class Sweep:
    """A sweep folder, read back: its manifest, merged metrics and summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "sweep.json").read_text(encoding="utf-8"))

    @property
    def metrics(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "metrics.parquet")

    @property
    def summary(self) -> dict:
        p = self.path / "summary.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    @property
    def complete(self) -> bool:
        return (self.path / "summary.json").exists()

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, {'complete' if self.complete else 'incomplete'})"


def run_sweep(config: str | Path | dict, out: str | Path, *, backend: str = "local", jobs: int | None = None,
              address: str | None = None, progress: Progress | None = None) -> Sweep:
    """Run every chain of the sweep ``config`` (a YAML/TOML path or a dict) on ``backend``
    (``"local"``: ``jobs`` processes; ``"ray"``: Ray tasks, ``address`` a cluster's) into ``out``,
    merge their metrics into ``out/metrics.parquet`` and return the :class:`Sweep`.

    A rerun into the same ``out`` skips the chains already finished. ``progress(done, total, chain)``
    is called at the start and as chains finish. The local backend starts workers with 'spawn': a script asking for
    ``jobs > 1`` must call this under ``if __name__ == "__main__":``.
    """
    from collapselab.backends import make_backend

    started = time.perf_counter()
    manifest, chains = plan_sweep(config, out)
    existed = Path(out).exists()
    out = check_writable_dir(out, "sweep")
    try:
        runner = make_backend(backend, jobs=jobs, address=address)
    except BaseException:
        if not existed and not any(out.iterdir()):  # a bad backend or address leaves no folder behind
            out.rmdir()
        raise
    with runner, RunLock(out):
        _check_manifest(out, manifest)
        if manifest["base"].get("watermark_key") == str(out / SWEEP_KEY) and not (out / SWEEP_KEY).exists():
            from collapselab.provenance.keys import new_key_file

            new_key_file(out / SWEEP_KEY)
        todo = [c for c in chains if not c.done]
        done = [len(chains) - len(todo)]
        report = progress or (lambda *a: None)
        report(done[0], len(chains), "chains")

        def tick() -> None:
            done[0] += 1
            report(done[0], len(chains), "chains")

        records = runner.map(run_chain, todo, on_done=tick)
        metrics = merge_metrics(chains, list(manifest["grid"]))
        atomic_write(out / "metrics.parquet", lambda tmp: metrics.to_parquet(tmp, index=False))
        summary = {"status": "complete", "chains": len(chains), "ran": sum(r["ran"] for r in records),
                   "resumed": sum(bool(r.get("resumed")) for r in records), "skipped": len(chains) - len(todo),
                   "points": len(manifest["points"]), "grid": manifest["grid"], "backend": backend,
                   "chain_seconds": round(sum(r["seconds"] for r in records), 2),
                   "final": final_table(metrics, chains), "seconds": round(time.perf_counter() - started, 2)}
        atomic_write_json(out / "summary.json", summary)
    return Sweep(out)


def _check_manifest(out: Path, manifest: dict) -> None:
    """Write ``sweep.json``, or check that the one there describes the same sweep."""
    path = out / "sweep.json"
    want = json.loads(json.dumps(manifest))  # as it reads back from JSON
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != want:
            raise UserError(f"{out}: holds a sweep of another config (sweep.json differs). Choose another --out, "
                            "or delete the folder to start over.")
        return
    if any(p.name not in (RunLock.NAME, SWEEP_KEY) for p in out.iterdir()):
        raise UserError(f"{out}: the folder exists and is not a sweep folder (no sweep.json). Choose another --out.")
    atomic_write_json(path, want)


def merge_metrics(chains: list[Chain], grid_keys: list[str]) -> pd.DataFrame:
    """Every chain's metrics rows, in chain order: ``point``, the grid's columns, then the run's columns."""
    frames = []
    for c in chains:
        df = RunFolder(c.folder).read_metrics().sort_values("generation", kind="stable").reset_index(drop=True)
        df = df.drop(columns=[k for k in grid_keys if k in df.columns])  # a grid over 'family': the point's value
        for j, key in enumerate(["point", *grid_keys]):
            df.insert(j, key, c.point if key == "point" else c.values[key])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def final_table(metrics: pd.DataFrame, chains: list[Chain]) -> list[dict]:
    """Per point and policy: the last generation's output diversity relative to generation 0
    (mean over seeds and spread, as ``collapselab run``'s table)."""
    from collapselab.report.table import build_table

    rows = []
    for point in sorted({c.point for c in chains}):
        first = next(c for c in chains if c.point == point)
        cfg = make_config(first.config)
        df = metrics[metrics["point"] == point].drop(columns=["point", *first.values])
        policies = list(dict.fromkeys(c.policy for c in chains if c.point == point))
        for block in build_table(df, cfg.diversity_metric, cfg.kind, order=policies):
            g, d, spread, text = block.rows[-1]
            rows.append({"point": point, **first.values, "policy": block.policy, "generation": g,
                         "diversity_metric": cfg.diversity_metric, "diversity_relative": d,
                         "diversity_spread": spread, "degradation": text})
    return rows
