"""The training loop: :func:`train` / :func:`run` (lock, state, epochs, final record), one epoch of SGD steps,
and the end of an epoch (log entry, test accuracy, ``best.pt``, ``checkpoint.pt``)."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..augment import augment
from .adversarial import N_WATCH, craft, watch_accuracy
from .common import ProgressBar, epoch_generator, evaluate, locked, lr_at, resolve_device
from .config import TrainConfig
from .final import finish
from .state import Run, check_out_folder, prepare, save_best, save_checkpoint

# Read at call time (tests patch them here, in zeropur_bench.train.loop).
N_FIRST_LOSSES = 20
# On an accelerator the loss is read back (and checked to be finite) once every SYNC_EVERY steps, not every step:
# each read waits for the queued kernels. On the CPU every step is read, as always.
SYNC_EVERY = 50
CPU_SYNC_EVERY = 1  # tests set it > 1 to run the accelerator's lazy-sync path on the CPU


def train(dataset: str, arch: str, aug: str, epochs: int, out: str | os.PathLike, **options: Any) -> dict:
    """Train ``arch`` on ``dataset``'s training split with augmentation ``aug`` (App. A.1, Table 8) into ``out``.

    ``options``: the other fields of :class:`TrainConfig`, by keyword (``batch_size``, ``lr``, ..., ``device``,
    ``resume``, ``stop_after``, ``max_steps``, ``shorten``; see there). Returns what :func:`run` returns.
    """
    return run(TrainConfig(dataset, arch, aug, epochs, out, **options))


def run(config: TrainConfig) -> dict:
    """Train as ``config`` says. Its settings are checked (:class:`UserError`) before anything is written; the
    run folder is locked for the call (not with ``max_steps``, which writes nothing).

    Returns the metadata of the final checkpoint when the run finished (``finished: True``), else the state
    so far (``finished: False``, ``epoch``, ``log``; with ``max_steps``: ``step_losses``).
    """
    config.check()
    resolve_device(config.device)
    if config.max_steps is None:  # max_steps writes nothing
        check_out_folder(Path(config.out))
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        if config.max_steps is not None:
            return _run(config)
        with locked(Path(config.out)):
            return _run(config)
    finally:
        torch.set_num_threads(threads)  # num_threads applies to this call only
        torch.backends.cudnn.benchmark = benchmark


def _run(config: TrainConfig) -> dict:
    r = prepare(config)
    bar = ProgressBar(config.progress and config.max_steps is None)
    step_losses: list[float] = []
    done_this_call = 0
    r.net.train()
    try:
        for epoch in range(r.start_epoch, config.epochs):
            if (config.stop_after is not None and done_this_call >= config.stop_after) or (
                    config.stop_at_epoch is not None and epoch >= config.stop_at_epoch):
                break
            t0, c0 = time.time(), time.process_time()
            sums = train_epoch(r, epoch, bar, step_losses)
            if config.max_steps is not None:
                return {"finished": False, "step_losses": step_losses, "config": r.recipe}
            end_epoch(r, epoch, sums, t0, c0)
            done_this_call += 1
    finally:
        bar.close()
    if len(r.epoch_log) < config.epochs:
        return {"finished": False, "epoch": len(r.epoch_log), "epochs": config.epochs, "log": r.epoch_log,
                "config": r.recipe, "first_step_losses": r.first_losses}
    return finish(r)


def train_epoch(r: Run, epoch: int, bar: ProgressBar, step_losses: list[float]) -> tuple[float, int, int]:
    """The SGD steps of epoch ``epoch`` (only the first ``max_steps`` when set); every loss read back is appended
    to ``step_losses`` (and the first :data:`N_FIRST_LOSSES` of the run to ``r.first_losses``). Returns the
    epoch's sums: loss (per image), correct, images."""
    c, dev, steps = r.config, r.dev, r.steps_per_epoch
    sync_every = CPU_SYNC_EVERY if r.on_cpu else SYNC_EVERY
    g = epoch_generator(c.seed, epoch)
    perm = torch.randperm(len(r.x_tr), generator=g).to(dev)
    # sums kept as tensors on the device (float64: the same arithmetic as Python floats on the CPU)
    loss_acc = torch.zeros((), dtype=torch.float64, device=dev)
    correct_acc = torch.zeros((), dtype=torch.int64, device=dev)
    loss_sum, correct, seen, synced = 0.0, 0, 0, 0
    bar.new(f"epoch {epoch + 1}/{c.epochs}", steps)
    for i in range(steps):
        step = epoch * steps + i
        if c.max_steps is not None and i >= c.max_steps:
            break
        idx = perm[i * c.batch_size:(i + 1) * c.batch_size]
        loss, logits, yb = sgd_step(r, idx, g, step)
        if sync_every == 1 or step < N_FIRST_LOSSES or c.max_steps is not None:
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise RuntimeError(f"training diverged: loss {lv} at epoch {epoch + 1}, step {i + 1}")
            step_losses.append(lv)
            if step < N_FIRST_LOSSES and c.max_steps is None and len(r.first_losses) == step:
                r.first_losses.append(lv)
        loss_acc += loss.detach().double() * len(idx)
        correct_acc += (logits.detach().argmax(1) == yb).sum()
        seen += len(idx)
        if (i + 1) % sync_every and i + 1 < steps:
            bar.update()
            continue
        loss_sum, correct = float(loss_acc), int(correct_acc)
        if not math.isfinite(loss_sum):
            raise RuntimeError(f"training diverged: non-finite loss within steps {synced + 1}..{i + 1} "
                               f"of epoch {epoch + 1}")
        synced = i + 1
        bar.update(f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} lr {r.opt.param_groups[0]['lr']:.4f}")
    return loss_sum, correct, seen


def sgd_step(r: Run, idx: torch.Tensor, g: torch.Generator, step: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SGD step (global step ``step``) on training images ``idx``, augmented with ``g``'s parameters;
    returns (loss, logits, labels)."""
    c, opt = r.config, r.opt
    xb = augment(r.x_tr[idx].float() / 255, c.aug, g)
    yb = r.y_tr[idx]
    for group in opt.param_groups:
        group["lr"] = lr_at(step, r.total_steps, r.warmup_steps, c.lr, c.schedule)
    if r.attacked is not None:
        xb = craft(r.attacked, c.adversarial, xb, yb, r.bf16)
    xb = (xb - r.mean) / r.std
    if c.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.autocast(r.dev.type, dtype=torch.bfloat16, enabled=r.bf16):
        logits = r.net(xb)
    loss = F.cross_entropy(logits.float(), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, logits, yb


def end_epoch(r: Run, epoch: int, sums: tuple[float, int, int], t0: float, c0: float) -> None:
    """After epoch ``epoch``'s steps (started at wall time ``t0``, CPU time ``c0``): its log entry with the test
    accuracy, ``best.pt`` when that is the best so far, ``checkpoint.pt``, and the epoch line."""
    c, out = r.config, r.out
    loss_sum, correct, seen = sums
    train_s = time.time() - t0
    # cpu_seconds: CPU time of this process (all threads); on a shared machine it measures the work
    # better than the wall time does
    entry = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
             "lr_end": r.opt.param_groups[0]["lr"], "train_seconds": round(train_s, 2),
             "train_cpu_seconds": round(time.process_time() - c0, 2), "precision": r.precision,
             "channels_last": bool(c.channels_last)}
    if r.x_te is not None:
        t1 = time.time()
        ok = evaluate(r.net, r.x_te, r.y_te, r.mean, r.std, r.bf16, c.channels_last)
        entry["test_acc"] = int(ok.sum()) / len(ok)
        entry["eval_seconds"] = round(time.time() - t1, 2)
    if r.attacked is not None:  # catastrophic overfitting shows here first (Wong et al. 2020)
        t1 = time.time()
        n = min(N_WATCH, len(r.x_tr))
        entry["train_pgd10_acc"] = watch_accuracy(r.attacked, r.x_tr[:n].float() / 255, r.y_tr[:n], r.bf16,
                                                  seed=c.seed)
        entry["watch_seconds"] = round(time.time() - t1, 2)
    entry.update(r.dev_info)
    r.epoch_log.append(entry)
    if entry.get("test_acc", -1.0) > r.best_acc:
        r.best_acc = entry["test_acc"]
        save_best(r, epoch + 1)  # before the checkpoint: a kill in between reruns this epoch and rewrites it
    save_checkpoint(r, epoch + 1)
    r.say(f"[{out.name}] epoch {epoch + 1}/{c.epochs} loss {entry['loss']:.4f} train_acc {entry['train_acc']:.4f}"
          + (f" test_acc {entry['test_acc']:.4f}" if "test_acc" in entry else "")
          + (f" train_pgd10_acc {entry['train_pgd10_acc']:.4f}" if "train_pgd10_acc" in entry else "")
          + f" ({train_s:.0f} s"
          + ("" if r.on_cpu else f", {seen / train_s:.0f} img/s on {r.dev_info.get('device_name', r.dev)}") + ")")
