"""``zeropur-bench check``: the regression check on robust accuracy (:mod:`zeropur_bench.check`)."""
from __future__ import annotations

import sys

import click

from ..errors import UserError, friendly


@click.command("check")
@click.option("--baseline", "baselines", multiple=True, required=True,
              help="Baseline record(s), e.g. results/baselines/cifar10-resnet20.json. Repeatable.")
@click.option("--record", "record_path", default=None, help="Compare this run record instead of re-running.")
@click.option("--data-dir", default=None, help="Data folder (default: $ZEROPUR_BENCH_DATA, else ./data).")
@click.option("--zp", "zp_overrides", default="", help="Change ZeroPur knobs before re-running, e.g. "
              "'coarse_steps=3' (to see that the check catches a weaker defense).")
@click.option("--update", is_flag=True, help="Rewrite the baseline from the new run after a deliberate change "
              "(with --record: create it).")
@click.option("--plugin", "plugins", multiple=True, help="A Python file that registers the baseline's defense (a "
              "purifier of your own, as for `run --plugin`).")
@click.option("--no-progress", is_flag=True)
@friendly
def check_cmd(baselines: tuple[str, ...], record_path: str | None, data_dir: str | None, zp_overrides: str,
              update: bool, plugins: tuple[str, ...], no_progress: bool) -> None:
    """Regression check on robust accuracy: re-run each baseline's configuration and compare per example
    (one-sided exact McNemar, Holm across cells, plus an absolute floor).

    \b
    Exit status:
      0  every cell ok (or the baseline written, with --update)
      1  a regression: a significant drop or rise, or a cell below its floor
      2  bad input or a damaged baseline (one line on stderr naming the file and the field)

    \b
    Examples:
      zeropur-bench check --baseline results/baselines/cifar10-resnet20.json
      zeropur-bench check --baseline results/baselines/mine.json --record results/run.json --update
    """
    from ..check import load_baseline, report, run_check
    from ..defense import load_plugin
    from ..parsing import parse_kv

    for plugin in plugins:
        load_plugin(plugin)
    if record_path is not None and len(baselines) > 1:
        raise UserError("--record compares one run: give one --baseline with it")
    overrides = parse_kv(zp_overrides, "--zp")
    for b in baselines:  # every baseline checked before the first is re-run
        load_baseline(b, update=update, creating=update and record_path is not None)
    failed = False
    for b in baselines:
        rows, _ = run_check(b, record_path=record_path, data_dir=data_dir, overrides=overrides, update=update,
                            progress=not no_progress)
        if update:
            click.echo(f"{b}: baseline written")
            continue
        click.echo(f"{b}:\n{report(rows)}")
        failed |= any(r.failed for r in rows)
    if failed:
        click.echo("error: robust accuracy regressed (see the verdicts above)", err=True)
        sys.exit(1)
