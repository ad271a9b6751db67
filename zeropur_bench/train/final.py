"""The metadata every saved model carries, and a finished run's final record: ``model.pt`` (test accuracy measured
as :func:`zeropur_bench.classifiers.load_classifier` will run it) and ``train_log.json``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..augment import aug_params
from ..data import DATASETS, load_data
from ..fsio import write_json_atomic
from .common import device_info, no_tf32, to_cpu, write_atomic
from .config import FORMAT, MODEL, cli_command

if TYPE_CHECKING:
    from .state import Run


def model_meta(run: Run, dev_info: dict[str, str] | None = None) -> dict[str, Any]:
    """The metadata every saved model carries (``model.pt``, ``best.pt``): recipe, command, log, data, environment
    (``dev_info``: default the run's)."""
    cfg, epoch_log = run.recipe, run.epoch_log
    dataset = cfg["dataset"]
    used = sorted({e["device"] for e in epoch_log if "device" in e})
    return {
        "format": FORMAT, "arch": cfg["arch"], "num_classes": DATASETS[dataset]["num_classes"], "dataset": dataset,
        "normalization": run.norm,
        "recipe": {"aug": aug_params(cfg["aug"]),
                   "optimizer": {"name": "SGD", "lr": cfg["lr"], "momentum": cfg["momentum"],
                                 "weight_decay": cfg["weight_decay"], "weight_decay_on": "all parameters",
                                 "nesterov": False},
                   "schedule": {"name": "cosine with linear warm-up, per step", "warmup_epochs": cfg["warmup_epochs"],
                                "steps_per_epoch": run.steps_per_epoch, "final_lr": 0.0,
                                # a run ended early: from the step after at_epoch, the cosine of epochs_after
                                "replanned": cfg.get("replanned", [])},
                   "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "loss": "cross_entropy",
                   "bf16_autocast": cfg["bf16"], "channels_last": cfg["channels_last"], "seed": cfg["seed"],
                   "n_train": run.tr_info.n,
                   "data_order": "randperm per epoch, generator seed = seed*1000003+epoch+1"},
        "command": run.command, "reproduce": cli_command(cfg), "log": epoch_log, "first_step_losses": run.first_losses,
        "data": {"train": run.tr_info.to_dict()},
        "environment": {"torch": str(torch.__version__), "num_threads": torch.get_num_threads(),
                        **(run.dev_info if dev_info is None else dev_info), "devices_used": used},
    }


def finalize(run: Run) -> dict[str, Any]:
    """The final checkpoint's metadata; test accuracy measured exactly as ``load_classifier`` will run it
    (fp32, contiguous, batches of 500, so the first batch is the first 500 images). On a GPU the whole test set
    runs there in plain fp32 (TF32 off) and the first 500 again on the CPU, where ``correct_first500`` (what
    :func:`zeropur_bench.train.ship` and the tests recheck) is counted; the run's model ends on the CPU."""
    from ..classifiers import Normalized, freeze

    c, net, dev, norm = run.config, run.net, run.dev, run.norm
    meta = model_meta(run, device_info(dev))
    if c.eval_test:
        x_te, y_te, te_info = load_data(c.dataset, "test", n=c.n_test, data_dir=c.data_dir, return_info=True)
        model = freeze(Normalized(net.to(memory_format=torch.contiguous_format), norm["mean"], norm["std"]).to(dev))
        with torch.no_grad(), no_tf32(dev):
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


def finish(run: Run) -> dict[str, Any]:
    """Write a finished run's ``model.pt`` and ``train_log.json``; returns ``{'finished': True, **metadata}``."""
    meta = finalize(run)
    net, out = run.net, run.out
    write_atomic({"state_dict": net.state_dict() if run.on_cpu else to_cpu(net.state_dict()), **meta}, out / MODEL)
    write_json_atomic(out / "train_log.json", meta)
    run.say(f"[{out.name}] finished: test_acc {meta.get('test_acc')} correct_first500 {meta.get('correct_first500')} "
            f"→ {out / MODEL}")
    return {"finished": True, **meta}
