"""``zeropur-bench purifiers``: the purifier leaderboard (issue 34) from the records found."""
from __future__ import annotations

import warnings

import click

from ..errors import UserError, friendly, one_line


@click.command("purifiers")
@click.option("--out", required=True, help="Output markdown file, e.g. results/purifiers.md (a CSV with the same "
              "rows is written beside it).")
@click.option("--results", "results_dirs", multiple=True, default=("results",), show_default=True,
              help="Folder of run records (searched recursively); repeatable.")
@click.option("--model", "models", multiple=True, help="Only these classifiers (repeatable). Default: all. Named "
              "classifiers also get a 'Not measured yet' list: the protocol's defenses with no ranked row on them.")
@friendly
def purifiers_cmd(out: str, results_dirs: tuple[str, ...], models: tuple[str, ...]) -> None:
    """Rank every measured defense by the worst case over an adaptive cascade (or AutoAttack alone, for a
    static defense); defenses with transfer numbers alone are listed apart, never ranked.

    \b
    Example:
      zeropur-bench purifiers --out results/purifiers.md --model resnet20-cifar10-standard
    """
    from ..fsio import claim, write_text_atomic
    from ..marks import add_mark, is_marked
    from ..reports import load_records
    from ..reports.purifiers import board, load_sanity_reports, render_board
    from ..store import resolve_out

    path = resolve_out(out, "purifiers.md")
    if path.suffix.lower() == ".csv":
        raise UserError(f"--out '{path}' is a CSV name: give a markdown file such as results/purifiers.md (the CSV "
                        "is written beside it)")
    csv_path = path.with_suffix(".csv")
    ours = lambda p: is_marked(p, "purifiers")  # noqa: E731
    claim(path, ours, "a board made by `zeropur-bench purifiers`")
    claim(csv_path, ours, "a board made by `zeropur-bench purifiers`", option="the CSV beside --out,")
    records, sanity = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for d in dict.fromkeys(results_dirs):
            records += load_records(d)
            sanity += load_sanity_reports(d)
    for w in caught:
        click.echo(f"warning: {one_line(str(w.message))}", err=True)
    ranked, rest = board(records, list(models) or None, sanity)
    text = render_board(ranked, rest, models=list(models))
    write_text_atomic(path, add_mark(text, "purifiers", "markdown"))
    write_text_atomic(csv_path, add_mark(render_board(ranked, rest, "csv"), "purifiers", "csv"))
    click.echo(text)
    click.echo(f"written to {path} and {csv_path}", err=True)
