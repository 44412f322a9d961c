"""``collapselab``: the command line, one module per command group, each command one call of the Python API.

- :mod:`collapselab.cli.run`: ``run``, ``report``, ``lineage`` (the loop);
- :mod:`collapselab.cli.pipeline`: ``scan``, ``filter``, ``mix`` (the corpus pipeline);
- :mod:`collapselab.cli.vault`, :mod:`~collapselab.cli.credentials`, :mod:`~collapselab.cli.ledger`,
  :mod:`~collapselab.cli.keys`: provenance.

:func:`main` is the entry point: a user error, ours or a usage error or a file-system refusal, is
one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from collapselab.cli import credentials, keys, ledger, pipeline, run, sweep, vault
from collapselab.cli import audit as audit_cli
from collapselab.cli import transparency
from collapselab.cli.common import console, err_console  # noqa: F401  (re-exported for tests and scripts)
from collapselab.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Collapse Lab: make model collapse happen on purpose, measure it, and test the defences.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("collapselab")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        typer.echo(f"collapselab {v}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Collapse Lab: make model collapse happen on purpose, measure it, and test the defences."""


run.register(app)  # run, report, lineage
pipeline.register(app)  # scan, filter, mix
sweep.register(app)  # sweep
transparency.register(app)  # compose, gate
audit_cli.register(app)  # audit
app.add_typer(keys.keys_app, name="keys")
app.add_typer(vault.vault_app, name="vault")
app.add_typer(credentials.credentials_app, name="credentials")
app.add_typer(ledger.ledger_app, name="ledger")


def main() -> None:
    """Entry point: every user error, ours or a usage error, is one line on stderr and exit 2."""
    run_app(app)


def run_app(typer_app: typer.Typer) -> None:
    """Run ``typer_app`` with the CLI's error handling (also ``python -m collapselab.cli.pipeline``)."""
    try:
        rc = typer_app(standalone_mode=False)  # click returns typer.Exit's code here instead of exiting
    except UserError as e:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # click's usage errors (typer vendors click)
        hint = f" See `{e.ctx.command_path} --help`." if getattr(e, "ctx", None) else ""
        err_console.print(f"[bold red]error:[/bold red] {e.format_message()}{hint}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except OSError as e:  # the file system said no: a full disk, a read-only folder, a path under a file
        from collapselab.oserrors import describe

        err_console.print(f"[bold red]error:[/bold red] {escape(describe(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    if isinstance(rc, int) and rc:
        sys.exit(rc)

