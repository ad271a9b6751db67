"""``python -m zeropur_bench.train``: the command line of :func:`zeropur_bench.train.train` (``zeropur-bench
train`` passes its options here)."""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import NoReturn, Sequence

from ..archs import ARCHS
from ..augment import AUGS
from ..data import DATASETS
from ..errors import UserError, one_line
from .adversarial import ADVERSARIAL
from .config import SCHEDULES
from .loop import train


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are a :class:`UserError` (one line, exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def main(argv: Sequence[str] | None = None, prog: str = "python -m zeropur_bench.train") -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and train; 0 on success, 2 after a one-line ``error: ...``
    (``prog``: the command named in it)."""
    try:
        return _main(argv, prog)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None, prog: str) -> int:
    description = sys.modules[__package__].__doc__.splitlines()[0]  # the package docstring's first line
    p = _Parser(prog=prog, description=description)
    p.add_argument("--dataset", required=True, choices=[d for d in DATASETS if "train" in DATASETS[d]["splits"]])
    p.add_argument("--arch", required=True, choices=list(ARCHS))
    p.add_argument("--aug", required=True, choices=list(AUGS))
    p.add_argument("--epochs", required=True, type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (same as --precision bf16)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default=None,
                   help="fp32 (default), bf16 autocast, or auto: bf16 where the device runs it natively (a CPU with "
                        "avx512_bf16 or AMX, a bf16 GPU), else fp32. Not part of the recipe: a resumed run may "
                        "change it; each epoch's log records it")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (not part of the "
                   "recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation (per epoch and final)")
    p.add_argument("--n-test", type=int, default=None, help="evaluate on the first n test images only (smoke runs)")
    p.add_argument("--stop-at-epoch", type=int, default=None, help="stop (resumable) once this many epochs are "
                   "trained in all")
    p.add_argument("--shorten", action="store_true", help="end a run planned for more epochs at --epochs: the "
                   "cosine is re-planned from the next epoch (recorded in the recipe and the reproduce command)")
    p.add_argument("--adversarial", choices=list(ADVERSARIAL), default="none", help="adversarial training: "
                   "fgsm-rs (Wong et al. 2020) or pgd-7 (Madry et al. 2018), L-inf 8/255; default none")
    p.add_argument("--schedule", choices=list(SCHEDULES), default="cosine", help="learning-rate decay after the "
                   "linear warm-up: cosine (default) or cyclic (linear to 0; warm-up 2/5 of the run by default)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N; not part of the recipe: a run "
                   "may be resumed on another device")
    a = p.parse_args(argv)
    train(a.dataset, a.arch, a.aug, a.epochs, a.out, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
          weight_decay=a.weight_decay, warmup_epochs=a.warmup_epochs, bf16=a.bf16, channels_last=a.channels_last,
          seed=a.seed, data_dir=a.data_dir, num_threads=a.num_threads, resume=not a.no_resume,
          progress=not a.no_progress, n_train=a.n_train, eval_test=not a.no_eval, device=a.device,
          n_test=a.n_test, precision=a.precision, stop_at_epoch=a.stop_at_epoch, shorten=a.shorten,
          adversarial=a.adversarial, schedule=a.schedule,
          command=shlex.join(["python", "-m", "zeropur_bench.train", *(sys.argv[1:] if argv is None else argv)]))
    return 0
