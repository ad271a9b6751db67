"""``zeropur-bench train``: a base classifier with the paper's recipe (:mod:`zeropur_bench.train`)."""
from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import friendly


@click.command("train")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), required=True)
@click.option("--arch", required=True, help="Built-in architecture: resnet20/32/44/56, resnet18, preact-resnet18, "
              "wrn-28-10.")
@click.option("--aug", type=click.Choice(["vanilla", "standard", "strong"]), required=True,
              help="Training recipe of the paper's Table 1 / App. A.1.")
@click.option("--epochs", type=int, required=True)
@click.option("--out", required=True, help="Run folder (checkpoint each epoch; rerun the command to resume).")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Paper: 4×512 on 4 GPUs.")
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--warmup-epochs", type=int, default=None, help="Default: scaled from the paper's 10 of 120.")
@click.option("--bf16", is_flag=True, help="bf16 autocast (same as --precision bf16).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "auto"]), default=None,
              help="fp32 (default), bf16 autocast, or auto: bf16 where the device runs it natively (a CPU with "
              "avx512_bf16 or AMX, a bf16 GPU), else fp32. Not part of the recipe: a resumed run may change it, "
              "like the device; each epoch's log records it.")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (not part of the recipe).")
@click.option("--adversarial", type=click.Choice(["none", "fgsm-rs", "pgd-7"]), default="none", show_default=True,
              help="Adversarial training, L-inf 8/255: fgsm-rs (Wong et al. 2020, fast) or pgd-7 (Madry et al.).")
@click.option("--schedule", type=click.Choice(["cosine", "cyclic"]), default="cosine", show_default=True,
              help="Decay after the linear warm-up: cosine, or cyclic (linear to 0, warm-up 2/5 of the run).")
@click.option("--device", default=None, help="cpu (default) or cuda / cuda:N (not part of the recipe).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", default=None)
@click.option("--num-threads", type=int, default=None)
@click.option("--no-progress", is_flag=True)
@click.option("--stop-at-epoch", type=int, default=None, help="Stop (resumable) once this many epochs are trained.")
@click.option("--shorten", is_flag=True, help="End a run planned for more epochs at --epochs (cosine re-planned "
              "from the next epoch; recorded in the recipe and the reproduce command).")
@friendly
def train_cmd(**kw: Any) -> None:
    """Train a base classifier with the paper's recipe (SGD, cosine schedule with linear warm-up).

    \b
    Example:
      zeropur-bench train --dataset cifar100 --arch resnet20 --aug standard --epochs 80 \\
          --out runs/c100_r20_standard --bf16 --channels-last
    """
    from ..train import main as train_main

    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv += [flag] if v else []
        elif v is not None:
            argv += [flag, str(v)]
    rc = train_main(argv, prog="zeropur-bench train")
    if rc:
        sys.exit(rc)
