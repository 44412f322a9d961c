"""Corpus pipeline: ``scan`` (score documents into a sidecar), ``filter`` (drop flagged documents
into a quarantine with their reason) and ``mix`` (a training set with a guaranteed share of
verified human text from the vault). Streaming, batch by batch, constant memory; every output is
written to a temporary file and renamed; a rerun with the same inputs skips finished outputs.
See ``docs/pipeline.md``.
"""

from collapselab.pipeline.filter import FilterResult, filter_file
from collapselab.pipeline.mix import MixResult, mix
from collapselab.pipeline.scan import ScanResult, scan

__all__ = ["scan", "ScanResult", "filter_file", "FilterResult", "mix", "MixResult"]
