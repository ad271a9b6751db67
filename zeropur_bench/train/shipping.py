"""What is done with a finished run: replay its first logged losses, and ship its model into the registry."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..data import load_data
from ..errors import UserError
from ..fsio import write_json_atomic
from .loop import train


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
                adversarial=r.get("adversarial", {}).get("name", "none"),
                schedule="cyclic" if r["schedule"]["name"].startswith("cyclic") else "cosine",
                max_steps=steps, progress=False, device=device)
    return res["step_losses"]


def training_facts(ck: dict) -> dict:
    """What a registry entry says of how its model was trained (issue 30): the epochs actually trained, the wall
    time (training, per-epoch evaluation and watch), the precision per epoch, the adversarial recipe and the
    schedule. ``cpu`` is the shipping machine's model name (``device.cpuinfo_field``), which is the training
    machine's when a run is shipped where it trained, as ours are; the log records the device of every epoch."""
    from ..device import cpuinfo_field

    log = ck.get("log") or []
    seconds = sum(float(e.get(k, 0.0)) for e in log for k in ("train_seconds", "eval_seconds", "watch_seconds"))
    r = ck.get("recipe") or {}
    return {"epochs_trained": len(log), "train_wall_seconds": round(seconds),
            "devices_used": sorted({e["device"] for e in log if "device" in e}),
            "precision_by_epoch": r.get("precision_by_epoch"), "cpu": cpuinfo_field("model name"),
            "adversarial": (r.get("adversarial") or {"name": "none"}).get("name"),
            "schedule": (r.get("schedule") or {}).get("name")}


def ship(model_path: str | os.PathLike, name: str, data_dir: str | os.PathLike | None = None,
         min_acc: float | None = None, trained_on: str | None = None, notes: str | None = None,
         weights_dir: str | os.PathLike | None = None) -> dict:
    """Ship a finished run's ``model.pt`` as ``<weights_dir>/<name>.safetensors`` (default: the package's
    ``weights/``) and register it under ``name`` in that folder's ``registry.json``, after checking that the
    run reached ``min_acc`` and that the written file, loaded through ``load_classifier``, reproduces the run's
    recorded ``correct_first500`` (fp32, first 500 test images). The entry's ``reproduce`` is the run's
    normalised ``zeropur-bench train`` command (``cli_command``), not the command line as typed."""
    from .. import registry
    from ..classifiers import load_classifier

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
                           correct_first500=c, trained_on=trained_on,
                           # the normalised `zeropur-bench train` form (no machine's --data-dir); the raw command
                           # stays in the weights' metadata
                           reproduce=ck.get("reproduce") or ck.get("command"),
                           notes=notes, extra=training_facts(ck))
    reg_file = wdir / registry.REGISTRY_FILE.name
    data = json.loads(reg_file.read_text()) if reg_file.is_file() else {"format": "zeropur-bench/registry/v1",
                                                                         "classifiers": []}
    data["classifiers"] = [e for e in data["classifiers"] if e["name"] != name] + [entry.to_dict()]
    write_json_atomic(reg_file, data)
    registry.reload()
    return {**written, "name": name, "correct_first500": c, "test_acc": ck["test_acc"]}
