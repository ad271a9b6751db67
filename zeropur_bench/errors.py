"""User-facing errors.

Library code raises :class:`UserError` for anything the user can fix (a wrong name, a missing file, bad
input). The CLI prints its message on one line and exits with status 2, never a traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""
