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
:data:`~zeropur_bench.train.loop.SYNC_EVERY` steps, plus the first
:data:`~zeropur_bench.train.loop.N_FIRST_LOSSES` steps whose losses are recorded). The device is
not part of the recipe: a run may be resumed on another device; each epoch's log entry records the one it ran on.
Only torch, torchvision and numpy are needed on this path (no robustbench, click or rich).

Library code written here because no installed package provides a resumable training loop with this recipe and
the metadata the checkpoints must carry.

Layout: :mod:`.config` (:class:`TrainConfig`, the recipe, :func:`cli_command`), :mod:`.common` (schedule, device,
atomic writes, lock, evaluation, progress bar), :mod:`.state` (setup, resume, ``checkpoint.pt`` / ``best.pt``),
:mod:`.loop` (:func:`train`, :func:`run`, one epoch), :mod:`.final` (metadata, ``model.pt``), :mod:`.shipping`
(:func:`ship`, :func:`replay_first_losses`) and :mod:`.cli` (:func:`main`, ``python -m zeropur_bench.train``).
"""
from __future__ import annotations

from .cli import main
from .common import (ProgressBar, device_info, epoch_generator, evaluate, locked, lr_at, resolve_device, to_cpu,
                     write_atomic)
from .config import (BEST, CHECKPOINT, FORMAT, MODEL, NORMALIZATION, RECIPE_KEYS, TrainConfig, cli_command,
                     default_warmup)
from .loop import run, train
from .shipping import replay_first_losses, ship

# The loop's tuning constants (N_FIRST_LOSSES, SYNC_EVERY, CPU_SYNC_EVERY) are not re-exported: they are read at
# call time from zeropur_bench.train.loop, so that is where a test changes them.
__all__ = ["BEST", "CHECKPOINT", "FORMAT", "MODEL", "NORMALIZATION", "RECIPE_KEYS", "ProgressBar", "TrainConfig",
           "cli_command", "default_warmup", "device_info", "epoch_generator", "evaluate", "locked", "lr_at", "main",
           "replay_first_losses", "resolve_device", "run", "ship", "to_cpu", "train", "write_atomic"]
