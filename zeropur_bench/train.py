"""Train a base classifier with App. A.1's recipe: 'vanilla' / 'standard' / 'strong' augmentation (Table 8).

SGD (lr 0.1, momentum 0.9, weight decay 5e-4), cosine decay with linear warm-up, per step. The paper trains
120 epochs with 10 warm-up epochs at batch 4×512 on 4 GPUs; on one CPU we use batch 128 and the epochs the
accuracy floors need, with warm-up scaled to 1/12 of the epochs (10/120) unless given. Weight decay applies to
every parameter, BatchNorm included: the paper does not say otherwise and this is what plain ``torch.optim.SGD``
over ``model.parameters()`` (the usual CIFAR reference code) does.

A run lives in a folder ``out``: ``checkpoint.pt`` (model + optimizer + RNG state + log, written atomically after
every epoch), ``best.pt`` (the state after the epoch with the best test accuracy so far, in ``model.pt``'s format
with ``finished: False``: a run cut short still leaves a usable model) and, when finished, ``model.pt``
(``{'state_dict': ..., <metadata>}``, what :func:`zeropur_bench.classifiers.load_classifier` reads) and
``train_log.json``. Rerunning the same call resumes from the last finished epoch and reproduces the uninterrupted
run exactly (on the same device): the data order and every augmentation parameter of epoch ``e`` are drawn from a
CPU generator seeded by ``(seed, e)``, and the learning rate is a function of the global step.

``device='cuda'`` trains on a GPU: the training set is held there as uint8 once, the augmentations run there on
whole batches (their random parameters still come from the CPU generator, in the CPU run's order), bf16 autocast
and channels_last apply as on the CPU, and the loss / accuracy sums stay on the device (one host sync every
:data:`SYNC_EVERY` steps, plus the first :data:`N_FIRST_LOSSES` steps whose losses are recorded). The device is
not part of the recipe: a run may be resumed on another device; each epoch's log entry records the one it ran on.
Only torch, torchvision and numpy are needed on this path (no robustbench, click or rich).

Library code written here because no installed package provides a resumable training loop with this recipe and
the metadata the checkpoints must carry.
"""
from __future__ import annotations

import argparse
import json
import contextlib
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .archs import ARCHS, build_arch
from .augment import AUGS, aug_params, augment, check_aug
from .data import DATASETS, check_dataset, load_data
from .errors import UserError
from .records import write_json_atomic

FORMAT = "zeropur-bench/classifier/v1"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
BEST = "best.pt"
N_FIRST_LOSSES = 20
# On an accelerator the loss is read back (and checked to be finite) once every SYNC_EVERY steps, not every step:
# each read waits for the queued kernels. On the CPU every step is read, as always.
SYNC_EVERY = 50
CPU_SYNC_EVERY = 1  # tests set it > 1 to run the accelerator's lazy-sync path on the CPU
# Per-channel statistics of each training set (the usual published values), used as the model's normalisation.
NORMALIZATION: dict[str, dict[str, list[float]]] = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    "cifar100": {"mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762]},
}
# Which settings define the run (resuming with a different value would not continue the same run). Not the device:
# a run may be resumed on another one.
RECIPE_KEYS = ("dataset", "arch", "aug", "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs",
               "bf16", "channels_last", "seed", "n_train")


def default_warmup(epochs: int) -> int:
    """App. A.1's 10 warm-up epochs of 120, scaled to ``epochs`` (at least 1)."""
    return max(1, round(epochs * 10 / 120))


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up from ``base_lr / warmup_steps`` to ``base_lr``, then cosine decay to 0 (per step)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * t))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``: data order and augmentation depend on ``(seed, epoch)`` only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that is usable here; a :class:`UserError` (before anything is written)
    when it is not."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device '{device}'; use --device cpu or --device cuda (or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise UserError(f"training supports --device cpu and --device cuda, not '{device}'")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a build without CUDA"
        raise UserError(f"--device {device}: no CUDA GPU is visible here (torch {torch.__version__}, {build}); "
                        f"run on a machine with a GPU or use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; "
                        f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


def device_info(dev: torch.device) -> dict[str, str]:
    """What a log entry / metadata records about the device: its name, and the GPU's model on CUDA."""
    info = {"device": str(dev)}
    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
    return info


def _to_cpu(obj: Any) -> Any:
    """A (nested) state_dict with every tensor on the CPU (``_metadata`` kept), so checkpoints load anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, _to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@contextlib.contextmanager
def _no_tf32(dev: torch.device) -> Iterator[None]:
    """Plain fp32 convolutions / matmuls on CUDA (cuDNN uses TF32 for fp32 convolutions by default)."""
    if dev.type != "cuda":
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch prefers the fp32_precision API; the flags still work
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def write_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out``: two processes training into one folder would overwrite each other."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another process is training into '{out}'; wait for it to finish (or stop it), "
                            f"or use another --out") from None
        yield


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
    return shlex.join(args)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             bf16: bool = False, channels_last: bool = False, batch_size: int = 500) -> torch.Tensor:
    """Per-example correctness of ``net`` (eval mode) on uint8 images ``x``, on ``x``'s device (bf16 autocast or
    plain fp32: TF32 off on CUDA). The result stays on that device."""
    was = net.training
    net.eval()
    out = []
    with _no_tf32(x.device) if not bf16 else contextlib.nullcontext():
        for i in range(0, len(x), batch_size):
            xb = (x[i:i + batch_size].float() / 255 - mean) / std
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(net(xb).argmax(1) == y[i:i + batch_size])
    net.train(was)
    return torch.cat(out)


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    # load_data returns exact k/255 floats of the npz's uint8: keep uint8 in memory (4× less), convert per batch
    return (x * 255).round().to(torch.uint8)


def _check_args(dataset: str, arch: str, aug: str, epochs: int, batch_size: int, lr: float, momentum: float,
                weight_decay: float, warmup_epochs: int, n_train: int | None, n_test: int | None = None) -> None:
    check_dataset(dataset, "train")
    if arch not in ARCHS:
        raise UserError(f"unknown architecture '{arch}'; built-in: {', '.join(ARCHS)}")
    check_aug(aug)
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"--lr must be a positive number, got {lr}")
    if not 0 <= momentum < 1:
        raise UserError(f"--momentum must be in [0, 1), got {momentum}")
    if not weight_decay >= 0:
        raise UserError(f"--weight-decay must be >= 0, got {weight_decay}")
    if not 0 <= warmup_epochs <= epochs:
        raise UserError(f"--warmup-epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
    if n_train is not None and n_train < 1:
        raise UserError(f"--n-train must be a positive number of training images, got {n_train}")
    if n_test is not None and n_test < 1:
        raise UserError(f"--n-test must be a positive number of test images, got {n_test}")


class _Bar:
    """A rich progress bar with loss / accuracy when writing to a terminal, else nothing (epoch lines only)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        self.task = None
        self.stats = ""
        if enabled and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            except ImportError:  # a bare machine (e.g. a GPU box with torch only): epoch lines only
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                     console=Console(stderr=True), transient=False)
            self.progress.start()

    def new(self, desc: str, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(desc, total=total, stats="")

    def update(self, stats: str | None = None) -> None:
        """One step done; ``stats`` replaces the shown loss / accuracy (``None``: keep the last ones)."""
        if self.progress is not None and self.task is not None:
            self.stats = self.stats if stats is None else stats
            self.progress.update(self.task, advance=1, stats=self.stats)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def train(dataset: str, arch: str, aug: str, epochs: int, out: str | os.PathLike, batch_size: int = 128,
          lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int | None = None,
          bf16: bool = False, channels_last: bool = False, seed: int = 0, data_dir: str | os.PathLike | None = None,
          num_threads: int | None = None, resume: bool = True, progress: bool = True, n_train: int | None = None,
          stop_after: int | None = None, max_steps: int | None = None, eval_test: bool = True,
          command: str | None = None, log: Callable[[str], None] | None = None, device: str = "cpu",
          n_test: int | None = None, stop_at_epoch: int | None = None, shorten: bool = False) -> dict:
    """Train ``arch`` on ``dataset``'s training split with augmentation ``aug`` (App. A.1, Table 8).

    Resumes from ``out/checkpoint.pt`` when ``resume`` and it exists (the recipe must match). ``stop_after``
    returns after that many epochs of this call (for tests: an interruption at an epoch boundary), ``stop_at_epoch``
    once that many epochs are trained in all; ``shorten`` resumes a run planned for more epochs with the cosine
    re-planned to end at ``epochs`` (recorded in the recipe as ``schedule.replanned``, and in the reproduce
    command as a chain); the warm-up stays the checkpoint's;
    ``max_steps`` only runs that many steps of the first epoch, writes nothing and returns the step losses
    (to replay a recipe's first logged losses). ``n_train`` trains on the first n images (a class-balanced
    random sample); ``eval_test=False`` skips the per-epoch test evaluation (tests); ``n_test`` evaluates on the
    first n test images only (tests and smoke runs). ``device`` is ``'cpu'`` or ``'cuda'`` (``'cuda:N'``); an
    unavailable one is a :class:`UserError` raised before anything is written.

    Returns the metadata of the final checkpoint when the run finished (``finished: True``), else the state
    so far (``finished: False``, ``epoch``, ``log``).
    """
    kwargs = dict(locals())
    _check_args(dataset, arch, aug, epochs, batch_size, lr, momentum, weight_decay,
                default_warmup(epochs) if warmup_epochs is None else int(warmup_epochs), n_train, n_test)
    resolve_device(device)
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        if max_steps is not None:
            return _train(**kwargs)
        with _locked(Path(out)):
            return _train(**kwargs)
    finally:
        torch.set_num_threads(threads)  # num_threads applies to this call only
        torch.backends.cudnn.benchmark = benchmark


def _train(dataset: str, arch: str, aug: str, epochs: int, out: str | os.PathLike, batch_size: int = 128,
           lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int | None = None,
           bf16: bool = False, channels_last: bool = False, seed: int = 0, data_dir: str | os.PathLike | None = None,
           num_threads: int | None = None, resume: bool = True, progress: bool = True, n_train: int | None = None,
           stop_after: int | None = None, max_steps: int | None = None, eval_test: bool = True,
           command: str | None = None, log: Callable[[str], None] | None = None, device: str = "cpu",
           n_test: int | None = None, stop_at_epoch: int | None = None, shorten: bool = False) -> dict:
    warmup_given = warmup_epochs is not None
    warmup_epochs = default_warmup(epochs) if warmup_epochs is None else int(warmup_epochs)
    _check_args(dataset, arch, aug, epochs, batch_size, lr, momentum, weight_decay, warmup_epochs, n_train, n_test)
    dev = resolve_device(device)
    dev_info = device_info(dev)
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    cfg = {"dataset": dataset, "arch": arch, "aug": aug, "epochs": int(epochs), "batch_size": int(batch_size),
           "lr": float(lr), "momentum": float(momentum), "weight_decay": float(weight_decay),
           "warmup_epochs": warmup_epochs, "bf16": bool(bf16), "channels_last": bool(channels_last),
           "seed": int(seed), "n_train": n_train, "out": str(out)}
    command = command or cli_command(cfg)

    x_tr, y_tr, tr_info = load_data(dataset, "train", n=n_train, data_dir=data_dir, return_info=True)
    x_tr, y_tr = _to_u8(x_tr).to(dev), y_tr.to(dev)  # held on the device once, as uint8
    n = len(x_tr)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = steps_per_epoch * epochs
    norm = NORMALIZATION.get(dataset)
    if norm is None:
        raise UserError(f"no normalisation statistics for '{dataset}'; training supports {', '.join(NORMALIZATION)}")
    mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1).to(dev)
    std = torch.tensor(norm["std"]).view(1, 3, 1, 1).to(dev)

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    net = build_arch(arch, DATASETS[dataset]["num_classes"]).to(dev)  # initialised on the CPU, as always
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    ckpt_path = out / CHECKPOINT
    start_epoch, epoch_log, first_losses = 0, [], []
    if max_steps is None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and ckpt_path.is_file():
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            old_cfg = ck["config"]
            if not warmup_given:  # a re-planned run keeps its warm-up, whatever the default for its new length
                cfg["warmup_epochs"] = old_cfg["warmup_epochs"]
            replan = shorten and epochs != old_cfg["epochs"]  # rerunning the --shorten command just resumes
            keys = [k for k in RECIPE_KEYS if not (replan and k == "epochs")]
            old = {k: old_cfg.get(k) for k in keys}
            new = {k: cfg[k] for k in keys}
            if old != new:
                diff = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in keys if old[k] != new[k])
                raise UserError(f"'{ckpt_path}' belongs to a different recipe ({diff}); use another --out, "
                                f"the original settings, or --no-resume to start over"
                                + ("" if shorten or "epochs" not in diff else
                                   "; to end a longer run early, pass --shorten with the new --epochs"))
            cfg["replanned"] = list(old_cfg.get("replanned", []))
            if replan:
                if not ck["epoch"] < epochs < old_cfg["epochs"]:
                    raise UserError(f"--shorten: --epochs must lie between the epochs already trained "
                                    f"({ck['epoch']}) and the planned {old_cfg['epochs']}, exclusive; got {epochs}")
                cfg["replanned"].append({"at_epoch": ck["epoch"], "epochs_before": old_cfg["epochs"],
                                         "epochs_after": epochs})
                say(f"{out}: cosine schedule re-planned from {old_cfg['epochs']} to {epochs} epochs after epoch "
                    f"{ck['epoch']}")
            if cfg["replanned"]:
                command = cli_command(cfg)
            if ck["data_sha256"] != tr_info.sha256:
                raise UserError(f"'{ckpt_path}' was trained on different data (sha256 {ck['data_sha256'][:12]}… "
                                f"vs {tr_info.sha256[:12]}…); point --data-dir at the original data or use another --out")
            net.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng"]["torch"])
            np.random.set_state(("MT19937", np.array(ck["rng"]["numpy"][0], dtype=np.uint32),
                                 *ck["rng"]["numpy"][1:]))
            start_epoch, epoch_log, first_losses = ck["epoch"], list(ck["log"]), list(ck["first_step_losses"])
            say(f"resuming {out} at epoch {start_epoch + 1}/{epochs}" if start_epoch < epochs
                else f"{out}: all {epochs} epochs already trained; finalising")
        else:  # a fresh start: never leave a previous run's final files next to the new run's checkpoints
            if shorten:
                raise UserError(f"--shorten needs a run to shorten, and '{ckpt_path}' does not exist")
            for stale in (out / MODEL, out / BEST, out / "train_log.json"):
                stale.unlink(missing_ok=True)
    warmup_steps = steps_per_epoch * cfg["warmup_epochs"]  # after resume: a shortened run keeps its warm-up

    x_te = y_te = None
    if eval_test and max_steps is None:
        x_te, y_te = load_data(dataset, "test", n=n_test, data_dir=data_dir)
        x_te, y_te = _to_u8(x_te).to(dev), y_te.to(dev)
    on_cpu = dev.type == "cpu"
    sync_every = CPU_SYNC_EVERY if on_cpu else SYNC_EVERY
    precision = "bf16" if bf16 else "fp32"
    best_acc = max((e["test_acc"] for e in epoch_log if "test_acc" in e), default=-1.0)

    def save(epoch: int) -> None:
        np_state = np.random.get_state()
        state = (net.state_dict(), opt.state_dict()) if on_cpu else (_to_cpu(net.state_dict()),
                                                                      _to_cpu(opt.state_dict()))
        write_atomic({"format": FORMAT + "/resume", "config": cfg, "command": command, "epoch": epoch,
                      "state_dict": state[0], "optimizer": state[1],
                      "rng": {"torch": torch.get_rng_state(),
                              "numpy": [np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]},
                      "log": epoch_log, "first_step_losses": first_losses, "data_sha256": tr_info.sha256},
                     ckpt_path)

    def save_best(epoch: int) -> None:
        sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        meta = _meta(cfg, command, epoch_log, first_losses, tr_info, norm, steps_per_epoch, dev_info)
        write_atomic({"state_dict": sd, **meta, "finished": False, "best_epoch": epoch,
                      f"best_test_acc_{precision}": best_acc,
                      "best_eval": {"precision": precision, "device": str(dev), "test_n": len(y_te),
                                    "channels_last": bool(channels_last)}}, out / BEST)

    bar = _Bar(progress and max_steps is None)
    step_losses: list[float] = []
    done_this_call = 0
    net.train()
    try:
        for epoch in range(start_epoch, epochs):
            if (stop_after is not None and done_this_call >= stop_after) or (stop_at_epoch is not None
                                                                             and epoch >= stop_at_epoch):
                break
            t0, c0 = time.time(), time.process_time()
            g = epoch_generator(seed, epoch)
            perm = torch.randperm(n, generator=g).to(dev)
            # sums kept as tensors on the device (float64: the same arithmetic as Python floats on the CPU)
            loss_acc = torch.zeros((), dtype=torch.float64, device=dev)
            correct_acc = torch.zeros((), dtype=torch.int64, device=dev)
            loss_sum, correct, seen, synced = 0.0, 0, 0, 0
            bar.new(f"epoch {epoch + 1}/{epochs}", steps_per_epoch)
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                if max_steps is not None and i >= max_steps:
                    break
                idx = perm[i * batch_size:(i + 1) * batch_size]
                xb = augment(x_tr[idx].float() / 255, aug, g)
                yb = y_tr[idx]
                xb = (xb - mean) / std
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total_steps, warmup_steps, lr)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(xb)
                loss = F.cross_entropy(logits.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sync_every == 1 or step < N_FIRST_LOSSES or max_steps is not None:
                    lv = float(loss.detach())
                    if not math.isfinite(lv):
                        raise RuntimeError(f"training diverged: loss {lv} at epoch {epoch + 1}, step {i + 1}")
                    step_losses.append(lv)
                    if step < N_FIRST_LOSSES and max_steps is None and len(first_losses) == step:
                        first_losses.append(lv)
                loss_acc += loss.detach().double() * len(idx)
                correct_acc += (logits.detach().argmax(1) == yb).sum()
                seen += len(idx)
                if (i + 1) % sync_every and i + 1 < steps_per_epoch:
                    bar.update()
                    continue
                loss_sum, correct = float(loss_acc), int(correct_acc)
                if not math.isfinite(loss_sum):
                    raise RuntimeError(f"training diverged: non-finite loss within steps {synced + 1}..{i + 1} "
                                       f"of epoch {epoch + 1}")
                synced = i + 1
                bar.update(f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} lr {opt.param_groups[0]['lr']:.4f}")
            if max_steps is not None:
                return {"finished": False, "step_losses": step_losses, "config": cfg}
            train_s = time.time() - t0
            # cpu_seconds: CPU time of this process (all threads); on a shared machine it measures the work
            # better than the wall time does
            entry = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                     "lr_end": opt.param_groups[0]["lr"], "train_seconds": round(train_s, 2),
                     "train_cpu_seconds": round(time.process_time() - c0, 2)}
            if x_te is not None:
                t1 = time.time()
                ok = evaluate(net, x_te, y_te, mean, std, bf16, channels_last)
                entry["test_acc"] = int(ok.sum()) / len(ok)
                entry["eval_seconds"] = round(time.time() - t1, 2)
            entry.update(dev_info)
            epoch_log.append(entry)
            if entry.get("test_acc", -1.0) > best_acc:
                best_acc = entry["test_acc"]
                save_best(epoch + 1)  # before the checkpoint: a kill in between reruns this epoch and rewrites it
            save(epoch + 1)
            done_this_call += 1
            say(f"[{out.name}] epoch {epoch + 1}/{epochs} loss {entry['loss']:.4f} train_acc {entry['train_acc']:.4f}"
                + (f" test_acc {entry['test_acc']:.4f}" if "test_acc" in entry else "") + f" ({train_s:.0f} s"
                + ("" if on_cpu else f", {seen / train_s:.0f} img/s on {dev_info.get('device_name', dev)}") + ")")
    finally:
        bar.close()

    if len(epoch_log) < epochs:
        return {"finished": False, "epoch": len(epoch_log), "epochs": epochs, "log": epoch_log, "config": cfg,
                "first_step_losses": first_losses}
    meta = _finalize(net, cfg, command, epoch_log, first_losses, tr_info, norm, steps_per_epoch, data_dir, eval_test,
                     dev, n_test)
    write_atomic({"state_dict": net.state_dict() if on_cpu else _to_cpu(net.state_dict()), **meta}, out / MODEL)
    write_json_atomic(out / "train_log.json", meta)
    say(f"[{out.name}] finished: test_acc {meta.get('test_acc')} correct_first500 {meta.get('correct_first500')} "
        f"→ {out / MODEL}")
    return {"finished": True, **meta}


def _meta(cfg: dict, command: str, epoch_log: list, first_losses: list, tr_info: Any, norm: dict,
          steps_per_epoch: int, dev_info: dict) -> dict:
    """The metadata every saved model carries (``model.pt``, ``best.pt``): recipe, command, log, data, environment."""
    dataset = cfg["dataset"]
    used = sorted({e["device"] for e in epoch_log if "device" in e})
    return {
        "format": FORMAT, "arch": cfg["arch"], "num_classes": DATASETS[dataset]["num_classes"], "dataset": dataset,
        "normalization": norm,
        "recipe": {"aug": aug_params(cfg["aug"]),
                   "optimizer": {"name": "SGD", "lr": cfg["lr"], "momentum": cfg["momentum"],
                                 "weight_decay": cfg["weight_decay"], "weight_decay_on": "all parameters",
                                 "nesterov": False},
                   "schedule": {"name": "cosine with linear warm-up, per step", "warmup_epochs": cfg["warmup_epochs"],
                                "steps_per_epoch": steps_per_epoch, "final_lr": 0.0,
                                # a run ended early: from the step after at_epoch, the cosine of epochs_after
                                "replanned": cfg.get("replanned", [])},
                   "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "loss": "cross_entropy",
                   "bf16_autocast": cfg["bf16"], "channels_last": cfg["channels_last"], "seed": cfg["seed"],
                   "n_train": tr_info.n, "data_order": "randperm per epoch, generator seed = seed*1000003+epoch+1"},
        "command": command, "reproduce": cli_command(cfg), "log": epoch_log, "first_step_losses": first_losses,
        "data": {"train": tr_info.to_dict()},
        "environment": {"torch": str(torch.__version__), "num_threads": torch.get_num_threads(), **dev_info,
                        "devices_used": used},
    }


def _finalize(net: nn.Module, cfg: dict, command: str, epoch_log: list, first_losses: list, tr_info: Any,
              norm: dict, steps_per_epoch: int, data_dir: Any, eval_test: bool, dev: torch.device | None = None,
              n_test: int | None = None) -> dict:
    """The final checkpoint's metadata; test accuracy measured exactly as ``load_classifier`` will run it
    (fp32, contiguous, batches of 500, so the first batch is the first 500 images). On a GPU the whole test set
    runs there in plain fp32 (TF32 off) and the first 500 again on the CPU, where ``correct_first500`` (what
    :func:`ship` and the tests recheck) is counted; ``net`` ends on the CPU."""
    from .classifiers import Normalized, freeze

    dev = dev or torch.device("cpu")
    dataset = cfg["dataset"]
    meta = _meta(cfg, command, epoch_log, first_losses, tr_info, norm, steps_per_epoch, device_info(dev))
    if eval_test:
        x_te, y_te, te_info = load_data(dataset, "test", n=n_test, data_dir=data_dir, return_info=True)
        model = freeze(Normalized(net.to(memory_format=torch.contiguous_format), norm["mean"], norm["std"]).to(dev))
        with torch.no_grad(), _no_tf32(dev):
            pred = torch.cat([model(x_te[i:i + 500].to(dev)).argmax(1).cpu() for i in range(0, len(x_te), 500)])
        ok = pred == y_te
        meta["data"]["test"] = te_info.to_dict()
        meta.update(test_acc=int(ok.sum()) / len(ok), test_correct=int(ok.sum()), test_n=len(ok),
                    correct_first500=int(ok[:500].sum()))
        meta["test_eval"] = {"device": str(dev), "precision": "fp32" if dev.type == "cpu" else "fp32 (TF32 off)",
                             "batch_size": 500}
        if dev.type != "cpu":
            model = model.cpu()
            meta["correct_first500_device"] = meta["correct_first500"]
            with torch.no_grad():
                meta["correct_first500"] = int((model(x_te[:500]).argmax(1) == y_te[:500]).sum())
        # the count must be reproducible by whoever loads the file: check it does not depend on the thread count
        threads = torch.get_num_threads()
        by_threads = {}
        for t in sorted({1, 2, threads}):
            torch.set_num_threads(t)
            with torch.no_grad():
                by_threads[str(t)] = int((model(x_te[:500]).argmax(1) == y_te[:500]).sum())
        torch.set_num_threads(threads)
        meta["correct_first500_by_threads"] = by_threads
        net.train()
    elif dev.type != "cpu":
        net.cpu()
    return meta


def replay_first_losses(meta: dict, steps: int, data_dir: str | os.PathLike | None = None,
                        num_threads: int | None = None, device: str = "cpu") -> list[float]:
    """Rerun the first ``steps`` training steps of a finished checkpoint's recipe (its ``meta``) and return
    the per-step losses, to compare with ``meta['first_step_losses']``."""
    r = meta["recipe"]
    plans = r["schedule"].get("replanned") or []
    epochs = plans[0]["epochs_before"] if plans else r["epochs"]  # the first steps ran under the first plan
    res = train(meta["dataset"], meta["arch"], r["aug"]["name"], epochs, out="unused", batch_size=r["batch_size"],
                lr=r["optimizer"]["lr"], momentum=r["optimizer"]["momentum"],
                weight_decay=r["optimizer"]["weight_decay"], warmup_epochs=r["schedule"]["warmup_epochs"],
                bf16=r["bf16_autocast"], channels_last=r["channels_last"], seed=r["seed"], data_dir=data_dir,
                num_threads=num_threads, n_train=r["n_train"],
                max_steps=steps, progress=False, device=device)
    return res["step_losses"]


def ship(model_path: str | os.PathLike, name: str, data_dir: str | os.PathLike | None = None,
         min_acc: float | None = None, trained_on: str | None = None, notes: str | None = None,
         weights_dir: str | os.PathLike | None = None) -> dict:
    """Ship a finished run's ``model.pt`` as ``<weights_dir>/<name>.safetensors`` (default: the package's
    ``weights/``) and register it under ``name`` in that folder's ``registry.json``, after checking that the
    run reached ``min_acc`` and that the written file, loaded through ``load_classifier``, reproduces the run's
    recorded ``correct_first500`` (fp32, first 500 test images)."""
    from . import registry
    from .classifiers import load_classifier

    ck = torch.load(model_path, map_location="cpu", weights_only=True)
    if "test_acc" not in ck or ck.get("finished") is False:
        raise UserError(f"{model_path}: not a finished, evaluated run (train it to the end with the test set)")
    if min_acc is not None and ck["test_acc"] < min_acc:
        raise UserError(f"{model_path}: test accuracy {ck['test_acc']:.4f} is below the floor {min_acc}")
    wdir = Path(weights_dir) if weights_dir is not None else registry.WEIGHTS
    dest = wdir / f"{name}.safetensors"
    meta = {k: v for k, v in ck.items() if k not in ("state_dict", "finished")}
    meta = {**meta, "name": name, "trained_on": trained_on}
    written = registry.write_classifier(ck["state_dict"], meta, dest)
    model = load_classifier(ck["arch"], ck["dataset"], checkpoint=str(dest))
    x, y = load_data(ck["dataset"], "test", n=500, data_dir=data_dir)
    with torch.no_grad():
        c = int((model(x).argmax(1) == y).sum())
    if c != ck["correct_first500"]:
        dest.unlink()
        raise RuntimeError(f"{dest}: correct_first500 {c} != recorded {ck['correct_first500']}")
    entry = registry.Entry(name=name, arch=ck["arch"], dataset=ck["dataset"], recipe=ck["recipe"]["aug"]["name"],
                           file=dest.name, sha256=written["sha256"], test_acc=ck["test_acc"], test_n=ck["test_n"],
                           correct_first500=c, trained_on=trained_on, reproduce=ck.get("command"),
                           notes=notes)
    reg_file = wdir / registry.REGISTRY_FILE.name
    data = json.loads(reg_file.read_text()) if reg_file.is_file() else {"format": "zeropur-bench/registry/v1",
                                                                         "classifiers": []}
    data["classifiers"] = [e for e in data["classifiers"] if e["name"] != name] + [entry.to_dict()]
    tmp = reg_file.with_name(reg_file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, reg_file)
    registry._load.cache_clear()
    return {**written, "name": name, "correct_first500": c, "test_acc": ck["test_acc"]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zeropur_bench.train", description=__doc__.splitlines()[0])
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
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
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
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N; not part of the recipe: a run "
                   "may be resumed on another device")
    a = p.parse_args(argv)
    try:
        train(a.dataset, a.arch, a.aug, a.epochs, a.out, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
              weight_decay=a.weight_decay, warmup_epochs=a.warmup_epochs, bf16=a.bf16, channels_last=a.channels_last,
              seed=a.seed, data_dir=a.data_dir, num_threads=a.num_threads, resume=not a.no_resume,
              progress=not a.no_progress, n_train=a.n_train, eval_test=not a.no_eval, device=a.device,
              n_test=a.n_test, stop_at_epoch=a.stop_at_epoch, shorten=a.shorten,
              command=shlex.join(["python", "-m", "zeropur_bench.train", *(sys.argv[1:] if argv is None else argv)]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
