"""What every command group shares: the consoles, strict ``--json`` output, progress bars."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console

console = Console(emoji=False)  # ":name:" in a path or value stays text
err_console = Console(stderr=True, emoji=False)

JSON_HELP = "Print the result as one JSON object on stdout (strict JSON: null, never NaN)."
QUIET_HELP = "No progress bar (it is off anyway when stderr is not a terminal)."


def print_json(obj: Any) -> None:
    """One strict JSON document on stdout (``collapselab.jsonout``)."""
    from collapselab.jsonout import dumps

    typer.echo(dumps(obj))


def progress_enabled(quiet: bool) -> bool:
    return not quiet and err_console.is_terminal and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: Optional[float] = None, *, quiet: bool = False,
                 bytes_unit: bool = False) -> Iterator[Callable[..., None]]:
    """A Rich progress bar on stderr; yields ``update(advance=..., completed=..., total=..., description=...)``.

    Shown only on a terminal and without ``--quiet``, so pipes, CI logs and ``--json`` stay clean."""
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

    count = [DownloadColumn(), TransferSpeedColumn()] if bytes_unit else [MofNCompleteColumn()]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), *count, TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, disable=not progress_enabled(quiet), transient=False) as p:
        task = p.add_task(description, total=total)

        def update(**kw: Any) -> None:
            p.update(task, **kw)

        yield update
