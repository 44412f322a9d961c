"""The one exception a user can cause.

Anything raised as :class:`UserError` is the user's to fix (a bad path, a malformed line, an
unknown option). The CLI prints its message on one line and exits with status 2, without a
traceback; the Python API lets it propagate so notebooks can catch it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message says what was wrong, where, and what to do."""

    exit_code = 2
