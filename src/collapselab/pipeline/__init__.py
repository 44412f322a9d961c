"""Corpus pipeline: ``scan`` (score documents into a sidecar), ``filter`` (drop flagged documents
into a quarantine with their reason) and ``mix`` (a training set with a guaranteed share of
verified human text from the vault). Streaming, block by block, constant memory. Inputs of every
format (``sources.py``: files, folders, URLs) are read by one reader (``io.py``) and cut into shards
(``shards.py``) that small steps (``steps.py``: Reader, Score, ThresholdFilter, Mix) process on a
backend (``collapselab.backends``: local processes or Ray); one runner (``runner.py``) skips
finished shards by their done-markers, merges the parts and writes the manifest last, so a rerun
resumes and the outputs do not depend on the backend or the number of workers.
See ``docs/pipeline.md``.
"""

__all__ = ["scan_corpus", "ScanResult", "filter_corpus", "FilterResult", "mix_corpus", "MixResult"]

_WHERE = {"scan_corpus": "scan", "ScanResult": "scan", "filter_corpus": "filter", "FilterResult": "filter",
          "mix_corpus": "mix", "MixResult": "mix"}


def __getattr__(name):  # lazy: importing the package costs nothing until a step is used
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"collapselab.pipeline.{_WHERE[name]}"), name)
    raise AttributeError(name)
