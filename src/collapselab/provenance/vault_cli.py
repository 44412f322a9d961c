"""Moved to :mod:`collapselab.cli.vault`; this name keeps old imports working."""

from collapselab.cli.vault import vault_app  # noqa: F401
