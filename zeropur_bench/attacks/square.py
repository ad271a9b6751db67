"""Square Attack (Andriushchenko et al. 2020), pyautoattack's implementation: gradient-free, score-based.

Used for the gradient-masking sanity check (Carlini et al. 2019): if it beats the gradient attacks, gradients
are masked. AutoAttack's standard version uses 5000 queries; the default here is 1000 for speed (pass
``n_queries=5000`` for the paper-scale check).
"""
from __future__ import annotations

from typing import Any

import torch
from pyautoattack.square import SquareAttack

from .base import Attack, register
from ..params import AT_LEAST_ONE, Param


@register("square")
class Square(Attack):
    """Untargeted Square Attack on the margin loss, ``p_init`` 0.8, one restart (AutoAttack's settings)."""

    defaults: dict[str, Any] = {"n_queries": 1000, "p_init": 0.8, "restarts": 1}
    # p_init: the initial fraction of the image a square covers (Andriushchenko et al.), in (0, 1]
    param_specs = {"n_queries": AT_LEAST_ONE, "p_init": Param("number", 0, 1, open_low=True),
                   "restarts": AT_LEAST_ONE}
    gradient = "none"  # score-based: it only calls the defended model

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        sq = SquareAttack(self.target, norm=self.norm, n_queries=int(p["n_queries"]), eps=self.eps,
                          p_init=float(p["p_init"]), n_restarts=int(p["restarts"]),
                          seed=int(self.last_info["batch_seed"]), verbose=False, device=self.device,
                          resc_schedule=False)
        with torch.no_grad():
            return sq.perturb(x, y)
