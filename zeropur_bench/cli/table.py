"""``zeropur-bench table``: one of the paper's Tables 2–6 from the records found."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import click

from ..errors import UserError, friendly, one_line


@click.command("table")
@click.option("--out", required=True, help="Output file, e.g. results/table2.md (the table number is taken from "
              "the name unless --table is given; .csv / .tex choose the format), or a folder (with --table).")
@click.option("--table", "table_no", type=int, default=None, help="Paper table number (reports.paper.TABLES): 2, 3, "
              "4, 5 or 6.")
@click.option("--results", "results_dir", default="results", show_default=True, help="Folder of run records "
              "(searched recursively; it must exist).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex"]), default=None,
              help="Default: from the file suffix (.md markdown, .csv, .tex latex).")
@friendly
def table_cmd(out: str, table_no: int | None, results_dir: str, fmt: str | None) -> None:
    """Render one of the paper's Tables 2–6 from the records found plus the reference rows in leaderboards/
    (markdown and LaTeX get a CSV beside them with every number at full precision).

    Each file starts with a comment line, the mark of this command: a table is rewritten only over a file that
    carries it, never over a user's file (read the CSV with pandas.read_csv(path, skiprows=1)).

    \b
    Example:
      zeropur-bench table --out results/table2.md
      zeropur-bench table --out results/t4.csv --table 4
    """
    from ..fsio import claim, write_text_atomic
    from ..marks import add_mark, is_marked
    from ..reports import build_document, infer_format, infer_table_number, load_records, render
    from ..reports.paper import check_table
    from ..store import resolve_out

    folder = out.endswith(("/", os.sep)) or Path(out).is_dir()
    if folder and table_no is None:
        raise UserError(f"--out '{out}' is a folder: give --table N (2..6) to name the file, or give a file name "
                        "such as results/table2.md")
    number = table_no if table_no is not None else infer_table_number(out)
    check_table(number)
    ext = {"csv": ".csv", "latex": ".tex"}.get(fmt or "markdown", ".md")
    path = resolve_out(out, f"table{number}{ext}")  # a device, a FIFO, a folder: refused here
    fmt = fmt or infer_format(path)
    csv_path = path.with_suffix(".csv") if fmt != "csv" else None  # every number at full precision beside it
    if csv_path == path:
        raise UserError(f"--out '{path}' ends in .csv but --format is {fmt}: the CSV of its numbers would replace "
                        "it; give a .md or .tex file name")
    # both files checked before any work: each missing, or a table this command made (never a user's file)
    ours = lambda p: is_marked(p, "table")  # noqa: E731
    claim(path, ours, "a table made by `zeropur-bench table`")
    if csv_path is not None:
        claim(csv_path, ours, "a table made by `zeropur-bench table`", option="the CSV beside --out,")
    with warnings.catch_warnings(record=True) as caught:  # a skipped record: one line each, not a Python warning
        warnings.simplefilter("always")
        records = load_records(results_dir)
    for w in caught:
        click.echo(f"warning: {one_line(str(w.message))}", err=True)
    if not records and not caught:
        click.echo(f"warning: no run records in '{results_dir}'; the table holds the paper's rows only (make records "
                   "with `zeropur-bench run`, or give --results FOLDER)", err=True)
    doc = build_document(number, records)  # matched once, rendered in each format
    text = render(doc, fmt)
    write_text_atomic(path, add_mark(text, "table", fmt))
    click.echo(text)
    click.echo(f"table {number} written to {path}", err=True)
    if csv_path is not None:
        write_text_atomic(csv_path, add_mark(render(doc, "csv"), "table", "csv"))
        click.echo(f"its numbers at full precision: {csv_path}", err=True)
