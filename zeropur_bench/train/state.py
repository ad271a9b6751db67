"""The state of one training call (:class:`Run`): built from a :class:`TrainConfig` (data, model, optimizer),
resumed from ``checkpoint.pt`` or started clean, and written back as ``checkpoint.pt`` / ``best.pt``."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..archs import build_arch
from ..augment import aug_params
from ..data import DATASETS, load_data
from ..errors import UserError
from ..classifiers import Normalized
from .adversarial import adversarial_params
from .common import device_info, resolve_device, to_cpu, to_u8, write_atomic
from .config import (BEST, CHECKPOINT, FORMAT, MODEL, NORMALIZATION, RECIPE_DEFAULTS, RECIPE_KEYS, TrainConfig,
                     cli_command)


@dataclass
class Run:
    """Everything one training call works with. ``recipe`` is the checkpoint's ``config`` dict
    (:meth:`TrainConfig.recipe`, plus ``replanned`` once resumed); ``command`` the command the metadata records."""

    config: TrainConfig
    dev: torch.device
    dev_info: dict[str, str]
    say: Callable[[str], None]
    out: Path
    recipe: dict[str, Any]
    command: str
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    tr_info: Any
    norm: dict[str, list[float]]
    mean: torch.Tensor
    std: torch.Tensor
    steps_per_epoch: int
    total_steps: int
    net: nn.Module
    opt: torch.optim.Optimizer
    start_epoch: int = 0
    epoch_log: list[dict[str, Any]] = field(default_factory=list)
    first_losses: list[float] = field(default_factory=list)
    warmup_steps: int = 0
    x_te: torch.Tensor | None = None
    y_te: torch.Tensor | None = None
    best_acc: float = -1.0
    bf16: bool = False  # this call's precision (TrainConfig.use_bf16), not the recipe's
    attacked: nn.Module | None = None  # the net behind its normalisation, for adversarial training (else None)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    @property
    def on_cpu(self) -> bool:
        return self.dev.type == "cpu"

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT


SCHEDULE_NAMES = {"cosine": "cosine with linear warm-up, per step",
                  "cyclic": "cyclic: linear warm-up, then linear decay to 0, per step (Wong et al. 2020)"}

RUN_FILES = (CHECKPOINT, BEST, MODEL, "train_log.json")


def _is_run_file(path: Path) -> bool:
    """A file a training run writes: ``checkpoint.pt`` (recipe + data hash), ``model.pt`` / ``best.pt`` /
    ``train_log.json`` (metadata of :data:`FORMAT`)."""
    if path.suffix == ".json":
        import json

        obj = json.loads(path.read_text(encoding="utf-8"))
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001  (not a torch file, or one holding more than tensors: not ours)
            return False
    if not isinstance(obj, dict):
        return False
    return ("config" in obj and "data_sha256" in obj) if path.name == CHECKPOINT else obj.get("format") == FORMAT


def check_out_folder(out: Path) -> None:
    """``out`` as a run folder, checked before anything is loaded or written: missing, or a folder whose run
    files (:data:`RUN_FILES`, the lock) are regular files a training run wrote. A file, a device or a FIFO as
    ``out``, or a user's ``model.pt`` in it, is a :class:`UserError`: a run never replaces (nor, on a fresh start,
    deletes) a file it did not make."""
    from ..fsio import check_regular, claim, file_kind

    kind = file_kind(out)
    if kind not in (None, "a folder"):
        raise UserError(f"--out '{out}' is {kind}, not a run folder; give a folder (created if missing)")
    if kind is None:
        return
    check_regular(out / ".lock", "--out's lock file")
    for name in RUN_FILES:
        claim(out / name, _is_run_file, "a file of a `zeropur-bench train` run", option="the run folder's",
              fix="move it away or choose another --out")


def prepare(config: TrainConfig) -> Run:
    """The state before the first epoch of this call: built, resumed (or started clean, unless ``max_steps``:
    that writes nothing), with the warm-up steps, the test set and the best test accuracy so far."""
    run = build(config)
    if config.max_steps is None:
        resume_or_start(run)
    # after resume: a shortened run keeps its warm-up
    run.warmup_steps = run.steps_per_epoch * run.recipe["warmup_epochs"]
    if config.eval_test and config.max_steps is None:
        x_te, y_te = load_data(config.dataset, "test", n=config.n_test, data_dir=config.data_dir)
        run.x_te, run.y_te = to_u8(x_te).to(run.dev), y_te.to(run.dev)
    run.best_acc = max((e["test_acc"] for e in run.epoch_log if "test_acc" in e), default=-1.0)
    return run


def build(config: TrainConfig) -> Run:
    """Device, threads, training data (on the device, uint8), normalisation, and the freshly seeded model and
    optimizer."""
    c = config
    dev = resolve_device(c.device)
    dev_info = device_info(dev)
    if c.num_threads is not None:
        torch.set_num_threads(int(c.num_threads))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    say = c.log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(c.out)
    bf16 = c.use_bf16(dev)
    recipe = c.recipe(bf16)
    command = c.command or cli_command(recipe)

    x_tr, y_tr, tr_info = load_data(c.dataset, "train", n=c.n_train, data_dir=c.data_dir, return_info=True)
    x_tr, y_tr = to_u8(x_tr).to(dev), y_tr.to(dev)  # held on the device once, as uint8
    steps_per_epoch = math.ceil(len(x_tr) / c.batch_size)
    norm = NORMALIZATION.get(c.dataset)
    if norm is None:
        raise UserError(f"no normalisation statistics for '{c.dataset}'; training supports {', '.join(NORMALIZATION)}")
    mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1).to(dev)
    std = torch.tensor(norm["std"]).view(1, 3, 1, 1).to(dev)

    torch.manual_seed(c.seed)
    np.random.seed(c.seed % 2**32)
    net = build_arch(c.arch, DATASETS[c.dataset]["num_classes"]).to(dev)  # initialised on the CPU, as always
    if c.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    attacked = Normalized(net, norm["mean"], norm["std"], c.channels_last).to(dev) if c.adversarial != "none" else None
    return Run(attacked=attacked, config=c, dev=dev, dev_info=dev_info, say=say, out=out, recipe=recipe, command=command, x_tr=x_tr,
               y_tr=y_tr, tr_info=tr_info, norm=norm, mean=mean, std=std, steps_per_epoch=steps_per_epoch,
               total_steps=steps_per_epoch * c.epochs, net=net, opt=opt, bf16=bf16)


def resume_or_start(run: Run) -> None:
    """Resume from ``checkpoint.pt`` when asked and it exists (same recipe, same data), else start clean."""
    c, out, ckpt_path = run.config, run.out, run.ckpt_path
    out.mkdir(parents=True, exist_ok=True)
    if c.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        adopt_recipe(run, ck)
        if ck["data_sha256"] != run.tr_info.sha256:
            raise UserError(f"'{ckpt_path}' was trained on different data (sha256 {ck['data_sha256'][:12]}… "
                            f"vs {run.tr_info.sha256[:12]}…); point --data-dir at the original data or use another "
                            f"--out")
        run.net.load_state_dict(ck["state_dict"])
        run.opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(("MT19937", np.array(ck["rng"]["numpy"][0], dtype=np.uint32),
                             *ck["rng"]["numpy"][1:]))
        run.start_epoch, run.epoch_log, run.first_losses = ck["epoch"], list(ck["log"]), list(ck["first_step_losses"])
        epochs = c.epochs
        run.say(f"resuming {out} at epoch {run.start_epoch + 1}/{epochs}" if run.start_epoch < epochs
                else f"{out}: all {epochs} epochs already trained; finalising")
    else:  # a fresh start: never leave a previous run's final files next to the new run's checkpoints
        if c.shorten:
            raise UserError(f"--shorten needs a run to shorten, and '{ckpt_path}' does not exist")
        for stale in (out / MODEL, out / BEST, out / "train_log.json"):
            stale.unlink(missing_ok=True)


def adopt_recipe(run: Run, ck: dict[str, Any]) -> None:
    """Check that this call continues checkpoint ``ck``'s recipe (a :class:`UserError` naming the differences);
    take over its warm-up and re-plans, and add this call's re-plan when ``shorten``."""
    c, cfg, ckpt_path, epochs = run.config, run.recipe, run.ckpt_path, run.config.epochs
    old_cfg = ck["config"]
    if c.warmup_epochs is None:  # a re-planned run keeps its warm-up, whatever the default for its new length
        cfg["warmup_epochs"] = old_cfg["warmup_epochs"]
    replan = c.shorten and epochs != old_cfg["epochs"]  # rerunning the --shorten command just resumes
    keys = [k for k in RECIPE_KEYS if not (replan and k == "epochs")]
    old = {k: old_cfg.get(k, RECIPE_DEFAULTS.get(k)) for k in keys}
    new = {k: cfg[k] for k in keys}
    if old != new:
        diff = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in keys if old[k] != new[k])
        raise UserError(f"'{ckpt_path}' belongs to a different recipe ({diff}); use another --out, "
                        f"the original settings, or --no-resume to start over"
                        + ("" if c.shorten or "epochs" not in diff else
                           "; to end a longer run early, pass --shorten with the new --epochs"))
    cfg["replanned"] = list(old_cfg.get("replanned", []))
    if replan:
        if not ck["epoch"] < epochs < old_cfg["epochs"]:
            raise UserError(f"--shorten: --epochs must lie between the epochs already trained "
                            f"({ck['epoch']}) and the planned {old_cfg['epochs']}, exclusive; got {epochs}")
        cfg["replanned"].append({"at_epoch": ck["epoch"], "epochs_before": old_cfg["epochs"],
                                 "epochs_after": epochs})
        run.say(f"{run.out}: cosine schedule re-planned from {old_cfg['epochs']} to {epochs} epochs after epoch "
                f"{ck['epoch']}")
    if cfg["replanned"]:
        run.command = cli_command(cfg)


def save_checkpoint(run: Run, epoch: int) -> None:
    """``checkpoint.pt`` after ``epoch`` epochs: model, optimizer, RNG states, log (tensors on the CPU)."""
    net, opt = run.net, run.opt
    np_state = np.random.get_state()
    state = (net.state_dict(), opt.state_dict()) if run.on_cpu else (to_cpu(net.state_dict()),
                                                                      to_cpu(opt.state_dict()))
    write_atomic({"format": FORMAT + "/resume", "config": run.recipe, "command": run.command, "epoch": epoch,
                  "state_dict": state[0], "optimizer": state[1],
                  "rng": {"torch": torch.get_rng_state(),
                          "numpy": [np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]},
                  "log": run.epoch_log, "first_step_losses": run.first_losses, "data_sha256": run.tr_info.sha256},
                 run.ckpt_path)


def save_best(run: Run, epoch: int) -> None:
    """``best.pt``: the state after ``epoch`` (the best test accuracy so far), in ``model.pt``'s format with
    ``finished: False``."""
    c = run.config
    precision = run.precision
    sd = {k: v.detach().cpu().contiguous() for k, v in run.net.state_dict().items()}
    meta = model_meta(run)
    write_atomic({"state_dict": sd, **meta, "finished": False, "best_epoch": epoch,
                  f"best_test_acc_{precision}": run.best_acc,
                  "best_eval": {"precision": precision, "device": str(run.dev), "test_n": len(run.y_te),
                                "channels_last": bool(c.channels_last)}}, run.out / BEST)


def model_meta(run: Run, dev_info: dict[str, str] | None = None) -> dict[str, Any]:
    """The metadata every saved model carries (``model.pt``, ``best.pt``): recipe, command, log, data, environment
    (``dev_info``: default the run's)."""
    cfg, epoch_log = run.recipe, run.epoch_log
    dataset = cfg["dataset"]
    used = sorted({e["device"] for e in epoch_log if "device" in e})
    # the precision each epoch ran under (logged since precision became a per-call setting; older entries: the
    # recipe's, which could not change then)
    precisions = [e.get("precision", "bf16" if cfg["bf16"] else "fp32") for e in epoch_log]
    return {
        "format": FORMAT, "arch": cfg["arch"], "num_classes": DATASETS[dataset]["num_classes"], "dataset": dataset,
        "normalization": run.norm,
        "recipe": {"aug": aug_params(cfg["aug"]),
                   "optimizer": {"name": "SGD", "lr": cfg["lr"], "momentum": cfg["momentum"],
                                 "weight_decay": cfg["weight_decay"], "weight_decay_on": "all parameters",
                                 "nesterov": False},
                   "schedule": {"name": SCHEDULE_NAMES[cfg.get("schedule", "cosine")],
                                "warmup_epochs": cfg["warmup_epochs"],
                                "steps_per_epoch": run.steps_per_epoch, "final_lr": 0.0,
                                # a run ended early: from the step after at_epoch, the cosine of epochs_after
                                "replanned": cfg.get("replanned", [])},
                   "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "loss": "cross_entropy",
                   "adversarial": adversarial_params(cfg.get("adversarial", "none")),
                   # the first epoch's precision (the one its logged first losses ran under); every epoch's is in
                   # precision_by_epoch
                   "bf16_autocast": (precisions[0] == "bf16") if precisions else cfg["bf16"],
                   "precision_by_epoch": precisions,
                   "channels_last": cfg["channels_last"], "seed": cfg["seed"],
                   "n_train": run.tr_info.n,
                   "data_order": "randperm per epoch, generator seed = seed*1000003+epoch+1"},
        "command": run.command, "reproduce": cli_command(cfg), "log": epoch_log, "first_step_losses": run.first_losses,
        "data": {"train": run.tr_info.to_dict()},
        "environment": {"torch": str(torch.__version__), "num_threads": torch.get_num_threads(),
                        **(run.dev_info if dev_info is None else dev_info), "devices_used": used},
    }
