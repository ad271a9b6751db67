"""PGD (Madry et al.) through torchattacks: ``PGD`` for Linf, ``PGDL2`` for L2 (paper App. A.2: PGD-20,
Linf 8/255 step 2/255, L2 0.5 step 0.05), with restarts."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torchattacks

from ..errors import UserError
from ..fmt import fmt_value
from .base import Attack, register
from ..params import AT_LEAST_ONE, FLAG, STEP, STEPS


@torch.no_grad()
def _loss_and_fooled(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y


def run_with_restarts(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, restarts: int,
                      run_once: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run ``run_once(x, y)`` up to ``restarts`` times. torchattacks has no restarts; this follows foolbox: per
    example keep the first restart that fools ``model``, else the restart with the highest loss. Later restarts
    only run on examples not yet fooled."""
    x_best = run_once(x, y)
    loss_best, fooled = _loss_and_fooled(model, x_best, y)
    used = 1
    for _ in range(1, restarts):
        todo = (~fooled).nonzero().flatten()
        if todo.numel() == 0:
            break
        used += 1
        x_new = run_once(x[todo], y[todo])
        loss_new, fooled_new = _loss_and_fooled(model, x_new, y[todo])
        better = fooled_new | (loss_new > loss_best[todo])
        idx = todo[better]
        x_best[idx] = x_new[better]
        loss_best[idx] = loss_new[better]
        fooled[idx] = fooled_new[better]
    return x_best, {"restarts_run": used, "fooled_by_attack_model": int(fooled.sum())}


@register("pgd")
class PGD(Attack):
    """PGD-k with a uniform random start; ``steps=1, step=eps, random_start=False`` is FGSM (one-step PGD)."""

    defaults = {"steps": 20, "step": None, "random_start": True, "restarts": 1}
    param_specs = {"steps": STEPS, "step": STEP, "random_start": FLAG, "restarts": AT_LEAST_ONE}

    # App. A.2: PGD-20 is 20 steps with a random start, step 2/255 at Linf 8/255 or 0.05 at L2 0.5.
    PAPER = {"Linf": (8 / 255, 2 / 255), "L2": (0.5, 0.05)}

    @classmethod
    def label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        """``PGD-20`` only with App. A.2's settings; otherwise ``pgd[...]`` with what differs."""
        p_eps, p_step = cls.PAPER[norm]
        paper_eps = math.isclose(eps, p_eps, rel_tol=1e-6)
        if (paper_eps and int(params["steps"]) == 20 and math.isclose(float(params["step"]), p_step, rel_tol=1e-6)
                and params["random_start"] is True and int(params["restarts"]) == 1):
            return "PGD-20"
        base = super().label(params, eps, norm)
        if not paper_eps and with_eps:  # the default step follows eps, so say which eps the column was made at
            base = (base[:-1] + "," if base.endswith("]") else base + "[") + f"eps={fmt_value(float(eps))}]"
        return base

    def _check_params(self) -> None:
        super()._check_params()
        if self.params["restarts"] < 1:
            raise UserError("parameter restarts of attack 'pgd' must be >= 1")

    def _torchattack(self) -> torchattacks.attack.Attack:
        p = self.params
        cls = torchattacks.PGD if self.norm == "Linf" else torchattacks.PGDL2
        atk = cls(self.target, eps=self.eps, alpha=p["step"], steps=p["steps"], random_start=p["random_start"])
        atk.set_device(self.device)
        return atk

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        atk = self._torchattack()
        x_adv, info = run_with_restarts(atk.model, x, y, self.params["restarts"], atk)
        self.last_info.update(info)
        return x_adv
