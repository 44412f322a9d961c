"""Moved to :mod:`collapselab.cli.credentials`; this name keeps old imports working."""

from collapselab.cli.credentials import credentials_app  # noqa: F401
