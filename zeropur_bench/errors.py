"""User-facing errors.

Library code raises :class:`UserError` for anything the user can fix (a wrong name, a missing file, bad
input). The CLI prints its message on one line and exits with status 2, never a traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def friendly(fn: Callable) -> Callable:
    """Command decorator (cli, plot, sweep): UserError (and Ctrl-C) → one line on stderr and a non-zero exit."""

    # click is imported here, not at module level: this module is imported by the training path, which must run on
    # a bare GPU machine with only torch / torchvision / numpy (tests/test_train_gpu_path.py)
    import click

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume from the last finished batch", err=True)
            sys.exit(130)

    return wrapper
