"""Recording a pipeline command in the provenance ledger.

``scan``, ``filter`` and ``mix`` given a ledger (``--ledger PATH|URL``, or ``ledger=`` in the Python
API) append one :class:`~collapselab.provenance.ledger.Step` when they finish: the files they read
and wrote, each by the SHA-256 of its bytes (in-toto's materials and products, so
``ledger export --format in-toto`` attests them), and, as its parameters, the command's settings
and its counts (``{"params": ..., "result": ...}``, the same as its manifest's). A rerun that finds
its finished output records the same step again, which adds no entry.

The ledger is opened before any work (:func:`check_ledger`), so a wrong path fails in one line
before a file is read.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from collapselab.jsonout import jsonable
from collapselab.pipeline.io import file_sha256

# Result fields that are lists of examples or per-file breakdowns (in the manifest), or that say
# whether or how fast this call did the work: not part of what the step did.
_NOT_RECORDED = ("skipped", "per_file", "malformed_lines", "stats")


def check_ledger(ledger: str | os.PathLike | None) -> None:
    """Open (creating if need be) the ledger at ``ledger``: a UserError now rather than after the work."""
    if ledger is not None:
        from collapselab.provenance.ledger import Ledger

        Ledger(ledger).close()


def file_digests(paths: Iterable[str | os.PathLike], known: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(path as given, SHA-256 of its bytes)`` of each file; ``known``: digests the command already
    computed, by path, so that no file is read twice for them."""
    known = known or {}
    return [(os.fspath(p), known.get(os.fspath(p)) or file_sha256(p)) for p in paths]


def record_step(ledger: str | os.PathLike | None, name: str, *, inputs: Iterable[str | os.PathLike],
                outputs: Iterable[str | os.PathLike], params: dict[str, Any], result: Any,
                known: dict[str, str] | None = None):
    """Append the step ``name`` to ``ledger`` (nothing when ``ledger`` is None); return the stored step.
    ``known``: SHA-256 digests already computed, by path (see :func:`file_digests`)."""
    if ledger is None:
        return None
    from collapselab.provenance.ledger import Ledger

    stats = {k: v for k, v in jsonable(result).items() if k not in _NOT_RECORDED}
    with Ledger(ledger) as book:
        return book.add_step(name, inputs=file_digests(inputs, known), outputs=file_digests(outputs, known),
                             params={"params": jsonable(params), "result": stats})
