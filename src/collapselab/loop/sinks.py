"""Where a run's generations go: each sink stores one thing of every
:class:`~collapselab.loop.types.Generation` the engine yields, in the order :func:`run_sinks` lists
them (a shard is written before it is signed, the ledger before the metrics row that needs it).

- :class:`SampleShards`: the samples, one shard per (label, seed, generation), with per-item columns;
- :class:`Grids`: image runs, a PNG grid of the generation's first images;
- :class:`Credentials`: C2PA content credentials: inside each grid PNG, or a signed sidecar of each
  text shard (C2PA has no text format);
- :class:`LedgerEntries`: the run's provenance ledger (:class:`~collapselab.loop.provenance.RunLedger`);
- :class:`MetricsTable`: ``metrics.parquet``, checkpointed after each generation (the run folder
  holds rows back by its checkpoint interval, see :mod:`collapselab.runfolder`).
"""

from __future__ import annotations

from collapselab.config import ExperimentConfig
from collapselab.loop.provenance import RunLedger, model_id
from collapselab.loop.types import Generation
from collapselab.provenance.credentials import sign_png, sign_text_shard
from collapselab.report.grid import save_grid
from collapselab.runfolder import RunFolder

GRID_IMAGES = 100  # images per generation in the PNG grid


class SampleShards:
    def __init__(self, folder: RunFolder, vocab=None) -> None:
        self.folder, self.vocab = folder, vocab  # vocab(seed): text runs, the seed's vocabulary (decodes the shard)

    def write(self, r: Generation) -> None:
        decode = self.vocab(r.seed).decode if self.vocab is not None else None
        for label in r.labels:
            self.folder.write_samples(label, r.seed, r.generation, r.samples, decode=decode, extra=r.per_item)


class Grids:
    """What people look at: a grid of the generation's first images."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def write(self, r: Generation) -> None:
        for label in r.labels:
            save_grid(r.samples[:GRID_IMAGES], self.folder.grid_path(label, r.seed, r.generation))


class Credentials:
    """C2PA content credentials of what each generation made (``credentials``: their folder)."""

    def __init__(self, folder: RunFolder, credentials: str, text: bool) -> None:
        self.folder, self.credentials, self.text = folder, credentials, text

    def write(self, r: Generation) -> None:
        for label in r.labels:
            mid, g = model_id(label, r.seed, r.generation), r.generation  # made by generation g, as its file name says
            if self.text:  # C2PA has no text format: a signed sidecar
                sign_text_shard(self.folder.sample_path(label, r.seed, g, True), origin="synthetic", model_id=mid,
                                generation=g, credentials_dir=self.credentials)
            else:
                png = self.folder.grid_path(label, r.seed, g)
                sign_png(png, png, model_id=mid, generation=g, credentials_dir=self.credentials)


class LedgerEntries:
    def __init__(self, ledger: RunLedger) -> None:
        self.ledger = ledger

    def write(self, r: Generation) -> None:
        if r.human is not None:  # the seed's own human data (resample_data), for its provenance
            self.ledger.add_seed(r.seed, *r.human)
        if r.labels:  # generation 0 is one model, whatever the labels it is stored under
            self.ledger.record(r.labels[0], r.seed, r.generation, r.sources, r.output_hash, ancestors=r.ancestors or None)


class MetricsTable:
    """Every row so far, rewritten as ``metrics.parquet`` at each checkpoint (a resumed run's rows first)."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.rows = folder.read_metrics().to_dict("records")

    def write(self, r: Generation) -> None:
        if r.rows:
            self.rows.extend(r.rows)
            self.folder.write_metrics(self.rows)


def run_sinks(config: ExperimentConfig, folder: RunFolder, *, ledger: RunLedger | None = None, vocab=None) -> list:
    """The sinks of a run, in order: samples, grids (images), credentials, ledger, metrics."""
    sinks: list = [SampleShards(folder, vocab if config.is_text else None)]
    if config.is_image:
        sinks.append(Grids(folder))
    if config.credentials and (config.is_image or config.is_text):
        sinks.append(Credentials(folder, config.credentials, config.is_text))
    if ledger is not None:
        sinks.append(LedgerEntries(ledger))
    return sinks + [MetricsTable(folder)]
