"""Adversarial training recipes (``--adversarial``): each SGD step trains on torchattacks' adversarial examples of
its (augmented) batch instead of the batch itself.

* ``fgsm-rs``: "fast" adversarial training, Wong, Rice & Kolter 2020 ("Fast is better than free"), CIFAR-10:
  FGSM from a uniform random start, eps 8/255, step 10/255 (torchattacks ``FFGSM``, which is their update:
  random start, one signed step, projection onto the eps-ball and [0, 1]). With ``--schedule cyclic`` and 15+
  epochs, lr 0.2, this is their recipe (their one-cycle: linear up to 2/5 of the run, linear down to 0).
* ``pgd-7``: PGD adversarial training, Madry et al. 2018: 7 steps of 2/255 from a random start, eps 8/255
  (torchattacks ``PGD``).

As in both papers, the model stays in training mode while its examples are crafted (BatchNorm on batch
statistics). The examples are differentiated with respect to the images only; the step then trains on them as on
clean images. Each epoch logs ``train_pgd10_acc``: accuracy under PGD-10 (eps 8/255, step 2/255, eval mode) on a
fixed slice of :data:`N_WATCH` *training* images, the signal Wong et al. watch for catastrophic overfitting
(never test images).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..classifiers import Normalized
from ..errors import UserError

__all__ = ["ADVERSARIAL", "N_WATCH", "adversarial_params", "check_adversarial", "craft",
           "watch_accuracy"]

EPS = 8 / 255
# name -> (torchattacks class, its keyword arguments). 'none' trains on clean images.
ADVERSARIAL: dict[str, dict[str, Any] | None] = {
    "none": None,
    "fgsm-rs": {"attack": "FFGSM", "eps": EPS, "alpha": 10 / 255, "steps": 1, "random_start": True,
                "paper": "Wong, Rice & Kolter 2020 (fast adversarial training)"},
    "pgd-7": {"attack": "PGD", "eps": EPS, "alpha": 2 / 255, "steps": 7, "random_start": True,
              "paper": "Madry et al. 2018 (PGD adversarial training)"},
}
N_WATCH = 256  # training images of the per-epoch PGD-10 check


def check_adversarial(name: str) -> None:
    if name not in ADVERSARIAL:
        raise UserError(f"unknown --adversarial '{name}'; known: {', '.join(ADVERSARIAL)}")


def adversarial_params(name: str) -> dict[str, Any]:
    """The exact settings of recipe ``name`` (JSON-able; stored in the model's metadata)."""
    check_adversarial(name)
    spec = ADVERSARIAL[name]
    return {"name": name, **({} if spec is None else {"threat": "Linf", "library": "torchattacks", **spec,
                                                     "model_mode_while_crafting": "train"})}


def _attack(model: nn.Module, name: str, train_mode: bool) -> Any:
    import torchattacks

    spec = ADVERSARIAL[name]
    if spec["attack"] == "FFGSM":
        atk = torchattacks.FFGSM(model, eps=spec["eps"], alpha=spec["alpha"])
    else:
        atk = torchattacks.PGD(model, eps=spec["eps"], alpha=spec["alpha"], steps=spec["steps"],
                               random_start=spec["random_start"])
    if train_mode:  # the papers craft in training mode (torchattacks' default switches to eval)
        atk.set_model_training_mode(model_training=True, batchnorm_training=True)
    return atk


def craft(model: Normalized, name: str, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Recipe ``name``'s adversarial examples of the [0, 1] batch ``x`` (labels ``y``), crafted in training mode;
    ``x`` itself for ``'none'``."""
    if ADVERSARIAL[name] is None:
        return x
    was = model.training
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            return _attack(model, name, train_mode=True)(x, y).detach()
    finally:  # torchattacks 3.5 leaves a model it switched to training mode there
        model.train(was)


def watch_accuracy(model: Normalized, x: torch.Tensor, y: torch.Tensor, bf16: bool, seed: int) -> float:
    """Accuracy under PGD-10 (eps 8/255, step 2/255, random start drawn from ``seed``, eval mode) on ``x``."""
    import torchattacks

    was = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):  # the run's RNG stream is the same with or without this check
            torch.manual_seed(seed)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                adv = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=True)(x, y)
                with torch.no_grad():
                    return float((model(adv).argmax(1) == y).float().mean())
    finally:
        model.train(was)
