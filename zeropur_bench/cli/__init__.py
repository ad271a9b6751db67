"""``zeropur-bench``: a thin Click layer over the Python API (data → classifier → defense → attack → record →
table). Every user error ends in one line on stderr and exit status 2.

One module per command; ``run``, ``sweep`` and ``sanity`` share their options (:mod:`.options`). What a run is
made of (parsing, defaults, variants, calibrations, the summary) is library code in :mod:`zeropur_bench.runspec`.
"""
from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import one_line
from .calibrate import calibrate_cmd
from .check import check_cmd
from .export import export_cmd
from .leaderboard import leaderboard_cmd
from .listing import list_cmd
from .plot import plot_cmd
from .purifiers import purifiers_cmd
from .run import run_cmd
from .sanity import sanity_cmd
from .sweep import sweep_cmd
from .table import table_cmd
from .train import train_cmd


class _Group(click.Group):
    """Click's usage errors (a bad --dataset, a missing option) as one line too, with where to look."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"error: {one_line(e.format_message())}{where}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="zeropur-bench")
def main() -> None:
    """ZeroPur purification benchmarks for RobustBench / AutoAttack.

    \b
    Example:
      zeropur-bench run --dataset cifar10 --threat linf --model resnet20-cifar10-public --n-ex 200
      zeropur-bench table --out results/table2.md
    """


for _cmd in (run_cmd, sweep_cmd, sanity_cmd, check_cmd, table_cmd, leaderboard_cmd, export_cmd, calibrate_cmd,
             train_cmd, list_cmd, plot_cmd, purifiers_cmd):
    main.add_command(_cmd)
del _cmd

__all__ = ["main"]
