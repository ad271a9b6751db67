"""``zeropur-bench leaderboard --out DIR``: the static HTML leaderboard (one page per dataset × threat)."""
from __future__ import annotations

import warnings

import click

from ..errors import UserError, friendly, one_line


def read_records(results_dir: str) -> list:
    """The v2 records under ``results_dir``; a skipped record is one warning line, none found is a UserError."""
    from pathlib import Path

    from ..records import scan_records

    if not Path(results_dir).is_dir():
        raise UserError(f"--results '{results_dir}' is not a folder of run records")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = scan_records(results_dir)
    for w in caught:
        click.echo(f"warning: {one_line(str(w.message))}", err=True)
    if not records:
        raise UserError(f"no run records found under '{results_dir}'; run `zeropur-bench run` first or point "
                        "--results at a folder of records")
    return records


@click.command("leaderboard")
@click.option("--out", required=True, metavar="DIR", help="Folder for index.html and one page per dataset × threat.")
@click.option("--results", "results_dir", default="results", show_default=True, help="Folder of run records.")
@friendly
def leaderboard_cmd(out: str, results_dir: str) -> None:
    """Write a static, offline HTML leaderboard from the records, in RobustBench's column layout, ranked by the
    best known (worst-case) robust accuracy; transfer-only evaluations in a separate, unranked section.

    \b
    Example:
      zeropur-bench leaderboard --out site/
    """
    from ..reports.leaderboard import leaderboard_entries
    from ..reports.leaderboard_html import render_leaderboard

    entries = leaderboard_entries(read_records(results_dir))
    paths = render_leaderboard(entries, out)
    click.echo(f"{len(paths)} page(s) written: {paths[-1]} and one per dataset x threat "
               f"({sum(e.ranked for e in entries)} ranked entries, {sum(not e.ranked for e in entries)} transfer only)",
               err=True)
