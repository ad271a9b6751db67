"""``zeropur-bench run``: evaluate a (defended) classifier under attack and write a record (one process, a
torchrun job, or one shard of a job array)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import UserError, friendly
from .options import RunOptions, build_configs, run_options

if TYPE_CHECKING:
    from ..config import EvalConfig


@click.command("run")
@run_options()
@friendly
def run_cmd(out: str | None, shard: str | None, merge_only: bool, force: bool, **options: Any) -> None:
    """Evaluate a (defended) classifier under attack and write a record under results/.

    \b
    Examples:
      zeropur-bench run --dataset cifar10 --threat linf --model resnet20-cifar10-public --n-ex 200
      zeropur-bench run --model resnet20 --checkpoint ../shared/weights/cifar10/resnet20.th \\
          --setting adaptive --attack bpda-eot:steps=10 --stages c --n-ex 50
      torchrun --nproc_per_node=4 -m zeropur_bench run --model resnet20-cifar10-public --n-ex 1000
    """
    from .. import distributed

    opts = RunOptions.take(options)
    (config,) = build_configs(opts)
    shard_kn = distributed.parse_shard(shard)
    if distributed.launched_by_torchrun() and (shard_kn or merge_only):
        raise UserError("--shard and --merge-only are for independent jobs; under torchrun the ranks share the "
                        "batches themselves")
    if shard_kn and merge_only:
        raise UserError("give either --shard K/N (compute a share) or --merge-only (assemble), not both")
    _evaluate(config, opts, out=out, shard=shard, shard_kn=shard_kn, merge_only=merge_only, force=force)


def _evaluate(config: EvalConfig, opts: RunOptions, *, out: str | None,
              shard: str | None, shard_kn: tuple[int, int] | None, merge_only: bool, force: bool = False) -> None:
    """Run ``config`` (all batches, this rank's under torchrun, or one shard) and say what was written."""
    from .. import distributed
    from ..evaluate import Evaluator
    from ..runspec import summary_text

    ctx = distributed.init(config.device)
    try:
        ev = Evaluator(config, data_dir=opts.data_dir, echo=lambda m: click.echo(m, err=True))
        if ctx.active:
            record = ev.run(out=out, progress=not opts.no_progress and ctx.is_main, shard=(ctx.rank, ctx.world_size),
                            barrier=distributed.barrier(ctx), assemble=ctx.is_main,
                            worker=f"rank {ctx.rank}/{ctx.world_size}", force=force)
        else:
            record = ev.run(out=out, progress=not opts.no_progress, shard=shard_kn, merge_only=merge_only,
                            assemble=shard_kn is None, force=force)
    finally:
        distributed.finish(ctx)
    if "status" in record:  # a share of the batches, not the record
        if not ctx.active:
            click.echo(f"{shard}: computed {record['computed']} and found {record['resumed']} finished batches in "
                       f"{record['partial']}; once every shard is done, assemble with the same command and "
                       f"--merge-only instead of --shard")
        return
    click.echo(summary_text(record))
    if ev.reused:
        click.echo(f"finished earlier: {record['_path']} holds this run's record (same configuration, code and "
                   "batch size); nothing recomputed (--force recomputes)")
        return
    resumed = f" (resumed {ev.batches_resumed} finished batches)" if ev.batches_resumed else ""
    workers = f" by {ctx.world_size} ranks" if ctx.active else ""
    click.echo(f"record written to {record['_path']}{workers}{resumed}")
