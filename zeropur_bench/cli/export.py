"""``zeropur-bench export --model-info DIR``: the records' RobustBench ``model_info`` files, in RobustBench's layout."""
from __future__ import annotations

import click

from ..errors import friendly


@click.command("export")
@click.option("--model-info", "model_info_dir", required=True, metavar="DIR",
              help="Folder to write DIR/<dataset>/<threat>/<id>.json into (RobustBench's layout; name it model_info "
                   "to run RobustBench's get_leaderboard_latex / get_leaderboard_bibtex from its parent). "
                   "Transfer-only entries go to DIR/transfer-only/.")
@click.option("--results", "results_dir", default="results", show_default=True, help="Folder of run records.")
@friendly
def export_cmd(model_info_dir: str, results_dir: str) -> None:
    """Export one RobustBench model_info entry per defended model found in the records.

    A defended model with adaptive evaluations is ranked by its best known robust accuracy (``external``: the
    lowest per-example worst case over its adaptive records); one evaluated only in the transfer setting gets no
    ranked number, ``unreliable: true`` and a footnote, and goes under DIR/transfer-only/.

    \b
    Example:
      zeropur-bench export --model-info model_info
      python -c "from zeropur_bench.robustbench import generate_leaderboard; generate_leaderboard('cifar10', 'Linf', 'model_info')"
    """
    from ..reports.leaderboard import export_model_info, leaderboard_entries
    from .leaderboard import read_records

    entries = leaderboard_entries(read_records(results_dir))
    paths = export_model_info(entries, model_info_dir)
    ranked = sum(e.ranked for e in entries)
    click.echo(f"{len(paths)} model_info file(s) written under {model_info_dir}: {ranked} ranked "
               f"({model_info_dir}/<dataset>/<threat>/), {len(paths) - ranked} transfer only "
               f"({model_info_dir}/transfer-only/)", err=True)
