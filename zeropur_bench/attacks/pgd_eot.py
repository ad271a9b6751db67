"""Full-gradient PGD with EOT (Lee & Kim, ICCV 2023, ``ml-postech/robust-evaluation-of-diffusion-based-
purification``): gradients through the whole purification (:class:`zeropur_bench.gradients.FullGradient`,
optionally through a surrogate the purifier offers: ZeroPur's smooth surrogate of its sign steps,
``surrogate="normalized"``), averaged over ``eot_iter`` purification
runs (loss-averaging EOT).

Preset ``"lee-kim"``: 200 steps x 0.007, EOT 20. The default is smaller for usability on a CPU (20 steps x 2/255,
EOT 20). A deterministic defense collapses EOT and the verification repeats to 1.

Written here rather than with torchattacks.EOTPGD because that class keeps no per-step record: like BPDA+EOT,
every iterate is judged (cheap check = the EOT copies' averaged logits; candidate breaks re-judged by
``verify_reps`` real purifications with ``verify_estimator``, majority vote as in Lee & Kim), and an image broken
at any step stays broken (``last_info["broken_any_step"]``; ``broken_final`` judges the last iterate only). When
a surrogate is used for the gradients, the cheap check uses one real purification instead of the surrogate's
logits (the real purification decides, as in Lee & Kim).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..estimators import ESTIMATORS, call_with_indices, predict, probe_deterministic
from .base import Attack, lp_step, project, random_init, register
from ..params import AT_LEAST_ONE, FLAG, STEP, STEPS, Param
from .bpda_eot import AnyStepTracker, defended_logits_fn

PRESETS: dict[str, dict[str, Any]] = {"lee-kim": {"steps": 200, "step": 0.007, "eot_iter": 20}}


@register("pgd-eot")
class PGDEOT(Attack):
    """PGD + EOT with real gradients through the purifier; any-step and final-only judgements."""

    defaults: dict[str, Any] = {"steps": 20, "step": None, "eot_iter": 20, "random_start": True,
                                "surrogate": None, "verify_reps": 20, "verify_estimator": "majority",
                                "probe": True, "max_batch": 256, "preset": None}
    param_specs = {"steps": STEPS, "step": STEP, "eot_iter": AT_LEAST_ONE, "random_start": FLAG,
                   # any surrogate the defense names (ZeroPur: sign, normalized; JPEG: diff-jpeg), checked against
                   # the defense in _check_params
                   "surrogate": Param("word", optional=True), "verify_reps": AT_LEAST_ONE,
                   "verify_estimator": Param("word", choices=tuple(ESTIMATORS)), "probe": FLAG,
                   "max_batch": AT_LEAST_ONE, "preset": Param("word", choices=(None, *PRESETS))}
    needs_defense = True
    adaptive_only = True
    iterates = True
    gradient = "full"

    def __init__(self, model: torch.nn.Module, **kwargs: Any) -> None:
        preset = kwargs.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise UserError(f"unknown preset {preset!r} for attack 'pgd-eot'; known: {', '.join(PRESETS)}")
            kwargs = {**PRESETS[preset], **kwargs}
        super().__init__(model, **kwargs)

    @classmethod
    def resolve_params(cls, params: dict[str, Any], eps: float, norm: str) -> dict[str, Any]:
        preset = params.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise UserError(f"unknown preset {preset!r} for attack 'pgd-eot'; known: {', '.join(PRESETS)}")
            params = {**PRESETS[preset], **params}
        return super().resolve_params(params, eps, norm)

    def _check_params(self) -> None:
        super()._check_params()
        p = self.params
        if p["eot_iter"] < 1 or p["verify_reps"] < 1 or p["max_batch"] < 1:
            raise UserError("eot_iter, verify_reps and max_batch of attack 'pgd-eot' must be >= 1")
        if p["verify_estimator"] not in ESTIMATORS:
            raise UserError(f"unknown verify_estimator {p['verify_estimator']!r}; known: {', '.join(ESTIMATORS)}")
        if "full" not in self.model.gradients:
            raise UserError(f"attack 'pgd-eot' needs the full gradient, and defense {self.model.name!r} offers only "
                            f"{', '.join(self.model.gradients) or 'none'}")
        if p["surrogate"] is not None and p["surrogate"] not in self.model.surrogates:
            raise UserError(f"defense {self.model.name!r} offers no surrogate {p['surrogate']!r} (it offers: "
                            f"{', '.join(self.model.surrogates) or 'none'}); use surrogate=none")

    def eot_grad(self, x: torch.Tensor, y: torch.Tensor, reps: int, need_grad: bool = True
                 ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(sum over ``reps`` runs of ∇ CE(defense(x), y) w.r.t. x, logits averaged over the runs); each run
        draws fresh randomness."""
        b = x.shape[0]
        mb = max(1, int(self.params["max_batch"]))
        total = reps * b
        idx_all = self.fresh_indices(reps)  # row r = copy r // b of image r % b
        model = self.differentiable(self.params["surrogate"])
        grad = torch.zeros_like(x) if need_grad else None
        logit_sum: torch.Tensor | None = None
        for start in range(0, total, mb):
            rows = torch.arange(start, min(start + mb, total), device=x.device)
            img = rows % b
            xc = x[img].detach().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                logits = call_with_indices(model, xc, idx_all[rows])
                if need_grad:
                    (g,) = torch.autograd.grad(F.cross_entropy(logits, y[img], reduction="sum"), xc)
                    grad.index_add_(0, img, g)
            logits = logits.detach().float()
            if logit_sum is None:
                logit_sum = torch.zeros(b, logits.shape[1], device=x.device)
            logit_sum.index_add_(0, img, logits)
        return grad, logit_sum / reps

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        eot, ver = int(p["eot_iter"]), int(p["verify_reps"])
        fn = defended_logits_fn(self.model)
        det = None
        if p["probe"] and max(eot, ver) > 1:
            det = probe_deterministic(fn, x)
            if det:
                eot, ver = 1, 1
        self.last_info.update(deterministic=det, eot_iter=eot, verify_reps=ver,
                              surrogate=p["surrogate"], grad_mode="full")
        mb = int(p["max_batch"])

        def verify(xc: torch.Tensor, yc: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return predict(fn, xc, p["verify_estimator"], n=ver, batch_size=mb, probe=False,
                           indices=self._indices[rows], stream=self._next_streams(ver)) == yc

        x_adv = random_init(x, self.eps, self.norm) if p["random_start"] else x.clone()
        tracker = AnyStepTracker(x_adv)
        steps = int(p["steps"])
        for t in range(steps + 1):
            grad, logits = self.eot_grad(x_adv, y, eot, need_grad=t < steps)
            if p["surrogate"] is not None:  # the surrogate's logits are not the defense's decision
                logits = fn(x_adv, indices=self.fresh_indices(1))
            tracker.update(x_adv, y, logits.argmax(1) == y, verify if ver > 1 else None)
            if grad is not None:
                x_adv = project(x_adv + lp_step(grad, p["step"], self.norm), x, self.eps, self.norm)
        self.last_info.update(tracker.info())
        return tracker.x_best
