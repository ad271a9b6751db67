"""Reports: the paper's Tables 2–6 and the figures, made from run records (read through ``records.RecordView``).

* :mod:`.paper`: what each table holds and its reference rows (``leaderboards/tableN.csv``);
* :mod:`.match`: which records fill a table and which paper row each measured row stands under;
* :mod:`.commands`: what a table lacks and the command that fills it;
* :mod:`.render`: markdown / LaTeX / CSV;
* :mod:`.figures`: the figures of ``zeropur-bench plot``.

A new table: a :class:`~.paper.TableSpec` in :data:`~.paper.TABLES` (its columns, grouping and row matching are
fields of the spec) and its ``leaderboards/tableN.csv``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import UserError
from ..records import RecordError, RecordView, scan_records
from .commands import missing_list
from .match import in_table, measured_rows
from .paper import TABLES, check_table, infer_table_number, load_leaderboard, paper_rows
from .render import Document, render_csv, render_latex, render_markdown

FORMATS = ("markdown", "csv", "latex")


def infer_format(path: str | os.PathLike) -> str:
    """Output format from a file extension: .csv → csv, .tex → latex, anything else → markdown."""
    ext = Path(path).suffix.lower()
    return {".csv": "csv", ".tex": "latex", ".latex": "latex"}.get(ext, "markdown")


def load_records(results_dir: str | os.PathLike) -> list[RecordView]:
    """Every v2 record under ``results_dir`` (recursively, sorted by path); old-schema, unknown-schema and
    damaged records are skipped with one warning each. A missing folder is a :class:`UserError` (a typo would
    otherwise give a table without a measured row)."""
    root = Path(results_dir)
    if not root.exists():
        raise UserError(f"results folder '{root}' does not exist; give --results FOLDER, the folder that holds "
                        "the run records")
    if not root.is_dir():
        raise UserError(f"results path '{root}' is not a directory; pass the folder that holds the records")
    return scan_records(root)


def _views(records: Iterable[Any]) -> list[RecordView]:
    import warnings

    out = []
    for r in records:
        if isinstance(r, RecordView):
            out.append(r)
            continue
        try:
            out.append(RecordView.from_dict(r, r.get("_path") if isinstance(r, dict) else None))
        except RecordError as exc:
            warnings.warn(f"{exc} (skipped)", stacklevel=3)
    return out


def paired_frame(table: int, records: list[RecordView]) -> pd.DataFrame:
    """Exact two-sided McNemar p-values of C-F vs C and of calibrated vs authors (``paired.compare``) for every
    record of this table that holds such variants."""
    from ..paired import compare, fmt_cell

    spec = TABLES[table]
    keys = [m.key for m in spec.metrics if m.kind == "attack" and m.key]
    rows = []
    for rec in records:
        if not spec.paired or not keys or not in_table(spec, rec):
            continue
        for c in compare(rec, keys):
            row = {"Classifier": rec.model, "Comparison": c["comparison"], "Blur": c["blur"], "n": c["n"]}
            for m in spec.metrics:
                if m.kind == "attack":
                    row[f"{m.name} paper protocol Δ (p)"] = fmt_cell(c["cells"].get((m.key, "adv")))
                    row[f"{m.name} robust Δ (p)"] = fmt_cell(c["cells"].get((m.key, "robust")))
            rows.append(row)
    return pd.DataFrame(rows)


def build_document(table: int, records: Iterable[Any], leaderboards_dir: str | os.PathLike | None = None) -> Document:
    spec = check_table(table)
    views = _views(records)
    prows = paper_rows(load_leaderboard(table, leaderboards_dir))
    rows = measured_rows(spec, prows, views)
    return Document(spec, prows, rows, missing_list(spec, prows, rows), paired_frame(table, views))


def render_table(table: int, records: Iterable[Any], fmt: str = "markdown",
                 leaderboards_dir: str | os.PathLike | None = None) -> str:
    """Render the paper's Table ``table`` (2–6) from ``records`` (RecordViews or record dicts): the paper's table
    in its layout with the measured rows beneath their paper rows, a compact table of robust accuracy and cost,
    and the list of what is not measured with the command that fills it. ``fmt``: markdown, csv (every number
    at full precision) or latex."""
    check_table(table)
    check_format(fmt)
    return render(build_document(table, records, leaderboards_dir), fmt)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")


def render(doc: Document, fmt: str = "markdown") -> str:
    """A built table (:func:`build_document`) in ``fmt``: several formats of one table match its records once."""
    check_format(fmt)
    return {"markdown": render_markdown, "csv": render_csv, "latex": render_latex}[fmt](doc)


__all__ = ["FORMATS", "TABLES", "build_document", "check_format", "infer_format", "infer_table_number", "load_records",
           "paired_frame", "render", "render_table"]
