"""The settings of one training call (:class:`TrainConfig`), their checks, and the recipe they define.

The recipe (the ``config`` dict of ``checkpoint.pt``: the settings that define the run, plus ``out`` and, for a
shortened run, ``replanned``) is what a resume must match and what :func:`cli_command` turns back into a command.
"""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..archs import ARCHS
from ..augment import check_aug
from ..data import check_dataset
from ..errors import UserError
from ..parsing import check_seed
from .adversarial import check_adversarial

FORMAT = "zeropur-bench/classifier/v1"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
BEST = "best.pt"
# Per-channel statistics of each training set (the usual published values), used as the model's normalisation.
NORMALIZATION: dict[str, dict[str, list[float]]] = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    "cifar100": {"mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762]},
}
# Which settings define the run (resuming with a different value would not continue the same run). Not the device,
# nor the precision (bf16 autocast) or memory format: like the device they are a per-call setting, chosen for the
# machine at hand (bf16 is ~15x slower than fp32 on an AVX2-only CPU), and each epoch's log entry records them.
RECIPE_KEYS = ("dataset", "arch", "aug", "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs",
               "seed", "n_train", "adversarial", "schedule")
# What a checkpoint written before a recipe key existed ran under (read where that key is missing).
RECIPE_DEFAULTS = {"adversarial": "none", "schedule": "cosine"}
# 'cosine': linear warm-up, then cosine decay to 0; 'cyclic': linear warm-up, then linear decay to 0 (the one-cycle
# schedule of Wong et al. 2020, whose peak is at 2/5 of the run: the default warm-up of this schedule).
SCHEDULES = ("cosine", "cyclic")


def default_warmup(epochs: int, schedule: str = "cosine") -> int:
    """App. A.1's 10 warm-up epochs of 120, scaled to ``epochs`` (at least 1); for the cyclic schedule, Wong et
    al.'s 2/5 of the run."""
    if schedule == "cyclic":
        return max(1, epochs * 2 // 5)
    return max(1, round(epochs * 10 / 120))


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of :func:`zeropur_bench.train.train` (the keyword arguments it takes), written once.

    Resumes from ``out/checkpoint.pt`` when ``resume`` and it exists (the recipe must match). ``stop_after``
    returns after that many epochs of this call (for tests: an interruption at an epoch boundary), ``stop_at_epoch``
    once that many epochs are trained in all; ``shorten`` resumes a run planned for more epochs with the cosine
    re-planned to end at ``epochs`` (recorded in the recipe as ``schedule.replanned``, and in the reproduce
    command as a chain); the warm-up stays the checkpoint's;
    ``max_steps`` only runs that many steps of the first epoch, writes nothing and returns the step losses
    (to replay a recipe's first logged losses). ``n_train`` trains on the first n images (a class-balanced
    random sample); ``eval_test=False`` skips the per-epoch test evaluation (tests); ``n_test`` evaluates on the
    first n test images only (tests and smoke runs). ``precision`` ('fp32', 'bf16' or 'auto': bf16 where the
    device runs it natively) overrides ``bf16`` when given; neither it nor ``channels_last`` is part of the recipe, so
    a resumed run may change them. ``device`` is ``'cpu'`` or ``'cuda'`` (``'cuda:N'``); an
    unavailable one is a :class:`UserError` raised before anything is written. ``warmup_epochs=None``: the
    :func:`default_warmup` of ``epochs`` (a resumed run keeps its checkpoint's). ``num_threads`` applies to the
    call only; ``command`` is what the metadata records as the command (default: :func:`cli_command`); ``log``
    receives the progress lines (default: stderr).
    """

    dataset: str
    arch: str
    aug: str
    epochs: int
    out: str | os.PathLike
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int | None = None
    bf16: bool = False
    channels_last: bool = False
    seed: int = 0
    data_dir: str | os.PathLike | None = None
    num_threads: int | None = None
    resume: bool = True
    progress: bool = True
    n_train: int | None = None
    stop_after: int | None = None
    max_steps: int | None = None
    eval_test: bool = True
    command: str | None = None
    log: Callable[[str], None] | None = None
    device: str = "cpu"
    n_test: int | None = None
    stop_at_epoch: int | None = None
    shorten: bool = False
    precision: str | None = None
    adversarial: str = "none"
    schedule: str = "cosine"

    def use_bf16(self, dev: Any) -> bool:
        """Whether this call trains under bf16 autocast on torch device ``dev`` (``precision``, else ``bf16``)."""
        from ..device import resolve_precision
        return bool(self.bf16) if self.precision is None else resolve_precision(self.precision, dev)

    @property
    def warmup(self) -> int:
        """The warm-up epochs this call asks for: ``warmup_epochs``, else :func:`default_warmup` of ``epochs``."""
        return default_warmup(self.epochs, self.schedule) if self.warmup_epochs is None else int(self.warmup_epochs)

    def check(self) -> None:
        """A :class:`UserError` for the first setting that cannot train (before anything is loaded or written)."""
        epochs, warmup = self.epochs, self.warmup
        check_dataset(self.dataset, "train")
        if self.arch not in ARCHS:
            raise UserError(f"unknown architecture '{self.arch}'; built-in: {', '.join(ARCHS)}")
        check_aug(self.aug)
        check_adversarial(self.adversarial)
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= warmup <= epochs:
            raise UserError(f"--warmup-epochs must be in [0, epochs={epochs}], got {warmup}")
        if self.n_train is not None and self.n_train < 1:
            raise UserError(f"--n-train must be a positive number of training images, got {self.n_train}")
        if self.precision is not None:
            from ..device import PRECISIONS
            if self.precision not in PRECISIONS:
                raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        check_seed(self.seed, "--seed")
        if self.n_test is not None and self.n_test < 1:
            raise UserError(f"--n-test must be a positive number of test images, got {self.n_test}")

    def recipe(self, bf16: bool | None = None) -> dict[str, Any]:
        """The recipe dict a checkpoint stores as ``config`` (``out`` as a string); ``bf16`` and ``channels_last``
        are this call's settings (``bf16``: as resolved for the device; default the ``bf16`` field), not compared
        on resume."""
        return {"dataset": self.dataset, "arch": self.arch, "aug": self.aug, "epochs": int(self.epochs),
                "batch_size": int(self.batch_size), "lr": float(self.lr), "momentum": float(self.momentum),
                "weight_decay": float(self.weight_decay), "warmup_epochs": self.warmup, "bf16": bool(self.bf16 if bf16 is None else bf16),
                "channels_last": bool(self.channels_last), "seed": int(self.seed), "n_train": self.n_train,
                "adversarial": self.adversarial, "schedule": self.schedule, "out": str(Path(self.out))}


def cli_command(cfg: dict) -> str:
    """The ``zeropur-bench train`` command equivalent to ``cfg``; for a run whose schedule was shortened
    (``--shorten``), the chain of commands that reproduces it: each plan run up to the epoch where it was cut."""
    plans = cfg.get("replanned") or []
    seq = [p["epochs_before"] for p in plans] + [cfg["epochs"]]
    parts = []
    for i, epochs in enumerate(seq):
        args = shlex.split(_one_command(cfg, epochs))
        if i:
            args.append("--shorten")
        if i < len(plans):
            args += ["--stop-at-epoch", str(plans[i]["at_epoch"])]
        parts.append(shlex.join(args))
    return " && ".join(parts)


def _one_command(cfg: dict, epochs: int) -> str:
    args = ["zeropur-bench", "train", "--dataset", cfg["dataset"], "--arch", cfg["arch"], "--aug", cfg["aug"],
            "--epochs", str(epochs), "--out", str(cfg["out"]), "--batch-size", str(cfg["batch_size"]),
            "--lr", repr(cfg["lr"]), "--momentum", repr(cfg["momentum"]), "--weight-decay", repr(cfg["weight_decay"]),
            "--warmup-epochs", str(cfg["warmup_epochs"]), "--seed", str(cfg["seed"])]
    if cfg["bf16"]:
        args.append("--bf16")
    if cfg["channels_last"]:
        args.append("--channels-last")
    if cfg["n_train"] is not None:
        args += ["--n-train", str(cfg["n_train"])]
    for key in ("adversarial", "schedule"):
        if cfg.get(key, RECIPE_DEFAULTS[key]) != RECIPE_DEFAULTS[key]:
            args += [f"--{key}", cfg[key]]
    return shlex.join(args)
