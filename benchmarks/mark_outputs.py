"""Give tables and figure CSVs made before issue 33 the mark of the command that made them (the first line,
``zeropur_bench.marks``), so that ``table`` / ``plot`` may rewrite them. Nothing else in a file changes: the
script prepends one line and checks that the rest is byte for byte what was there. Figures' PNG / SVG / PDF
files already carry their mark in their metadata (``Software: zeropur-bench plot``) and are left alone.

    python benchmarks/mark_outputs.py results/table2.md results/table2.csv results/figures/*.csv

A file is marked as a ``table`` output when its name is ``table*.md|csv|tex``, as a ``plot`` output (a figure's
CSV) when a figure of the same name lies beside it; anything else is refused and left as it is.
"""
from __future__ import annotations

import sys
from pathlib import Path

from zeropur_bench.fsio import write_text_atomic
from zeropur_bench.marks import add_mark, is_marked, strip_mark
from zeropur_bench.reports import infer_format

FIGURES = (".png", ".svg", ".pdf")


def command_of(path: Path) -> str | None:
    if path.name.startswith("table") and path.suffix in (".md", ".csv", ".tex"):
        return "table"
    if path.suffix == ".csv" and any(path.with_suffix(s).is_file() for s in FIGURES):
        return "plot"
    return None


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        command = command_of(p)
        if command is None or not p.is_file():
            print(f"{p}: not a table or a figure's CSV; left as it is", file=sys.stderr)
            continue
        if is_marked(p, command):
            print(f"{p}: already marked")
            continue
        old = p.read_text(encoding="utf-8")
        new = add_mark(old, command, infer_format(p))
        assert strip_mark(new) == old and new.endswith(old)  # one line prepended, nothing else changed
        write_text_atomic(p, new)
        print(f"{p}: marked as made by zeropur-bench {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
