"""``zeropur-bench sweep``: the records behind ``plot steps`` / ``plot grid`` (:mod:`zeropur_bench.sweep`), with
``run``'s options (less ``--out``, ``--shard``, ``--merge-only`` and ``--defense``: a sweep writes its records into
``--out-dir`` and its variants are ZeroPur's)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import UserError, friendly
from .options import Resolved, RunOptions, build_configs, run_options

if TYPE_CHECKING:
    from ..config import EvalConfig

NOT_TAKEN = ("out", "shard", "merge_only", "defenses", "force")


@click.command("sweep")
@run_options(exclude=NOT_TAKEN, changes={"stages": {
    "help": "Coarse only (c) and/or coarse + fine (cf); repeat for several variants per value. Default: cf."}})
@click.option("--param", required=True, help="ZeroPur setting to sweep, e.g. fine_steps or coarse_steps.")
@click.option("--values", required=True, help="Its values, comma-separated, e.g. 0,10,20,50.")
@click.option("--param2", default=None, help="A second setting for a grid (e.g. fine_steps with --param "
              "coarse_steps): every combination is run.")
@click.option("--values2", default=None, help="The second setting's values, e.g. 0,25,50.")
@click.option("--out-dir", default="results/", show_default=True,
              help="Folder for the record(s), each under the engine's default name (reruns resume or skip).")
@friendly
def sweep_cmd(param: str, values: str, param2: str | None, values2: str | None, out_dir: str, **options: Any) -> None:
    """Sweep a ZeroPur setting: the records behind `plot steps` (and, with --param2, `plot grid`). Takes
    `run`'s options (see `zeropur-bench run --help`).

    \b
    transfer (default): ONE record, the adversarial set crafted once and purified by one variant per value
    (zeropur-cf[fine_steps=10], ...); adaptive: one record per value (each value needs its own attack).
    Rerunning the command skips finished records and resumes unfinished ones.

    \b
    Examples:
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param fine_steps --values 0,10,25,50 --out-dir results/sweeps/
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param coarse_steps --values 0,5,10 --param2 fine_steps --values2 0,25,50 --out-dir results/grid/
      zeropur-bench plot steps --results results/sweeps/ --out results/figures/steps.png
    """
    from ..runspec import summary_text
    from ..sweep import run_sweep, sweep_table

    opts = RunOptions.take(options)

    def layout(r: Resolved) -> list[EvalConfig]:
        return _sweep_layout(r, param, values, param2, values2)

    configs = build_configs(opts, layout)
    done = run_sweep(configs, out_dir, data_dir=opts.data_dir, progress=not opts.no_progress,
                     echo=lambda s: click.echo(s, err=True))
    if len(done) == 1:
        click.echo(summary_text(done[0]["record"]))
    else:
        click.echo(sweep_table(done))
    computed = sum(d["status"] == "computed" for d in done)
    click.echo(f"sweep: {len(done)} record(s) in {out_dir} ({computed} computed, {len(done) - computed} skipped); "
               f"plot with `zeropur-bench plot {'grid' if param2 else 'steps'} --results {out_dir} --out FIG.png`")


def _sweep_layout(r: Resolved, param: str, values: str, param2: str | None, values2: str | None) -> list[EvalConfig]:
    """The sweep's configurations (:func:`zeropur_bench.sweep.sweep_configs`): one profile, ZeroPur variants."""
    from ..defense.blur import make_blur
    from ..defense.calibration import load_calibration
    from ..sweep import parse_values, sweep_configs

    if len(r.profiles) > 1:
        raise UserError("a sweep takes one --profile (its variants differ by the swept setting)")
    for b in r.blurs:
        make_blur(b)
    return sweep_configs(r.base, param=param, values=parse_values(values, "--values"), param2=param2,
                         values2=parse_values(values2, "--values2") if values2 else None,
                         stages=r.stages or ["cf"], blurs=r.blurs, profile=r.profiles[0], overrides=r.overrides,
                         calibration=load_calibration(r.calibration_file).to_dict() if r.calibration_file else None)
