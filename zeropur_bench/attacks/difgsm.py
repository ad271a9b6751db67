"""DI²-FGSM (Xie et al. 2019) through torchattacks.DIFGSM: the transfer attack of the paper's Table 7.

Paper setting: Linf eps 8/255, step 2/255; the paper does not state the number of iterations, we use 20 like its
PGD-20. ``decay=0`` is DI²-FGSM; ``decay=1.0`` gives the momentum variant M-DI²-FGSM.
"""
from __future__ import annotations

import torch
import torchattacks

from .base import Attack, register
from ..params import FLAG, STEP, STEPS, Param


@register("difgsm")
class DIFGSM(Attack):
    """DI²-FGSM: random resize-and-pad input diversity (p = 0.5, resize rate 0.9) at every step."""

    defaults = {"steps": 20, "step": None, "decay": 0.0, "resize_rate": 0.9, "diversity_prob": 0.5,
                "random_start": False}
    param_specs = {"steps": STEPS, "step": STEP, "decay": Param("number", low=0), "random_start": FLAG,
                   "resize_rate": Param("number", low=0, open_low=True), "diversity_prob": Param("number", 0, 1)}
    norms = ("Linf",)

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        atk = torchattacks.DIFGSM(self.target, eps=self.eps, alpha=p["step"], steps=p["steps"], decay=p["decay"],
                                  resize_rate=p["resize_rate"], diversity_prob=p["diversity_prob"],
                                  random_start=p["random_start"])
        atk.set_device(self.device)
        return atk(x, y)
