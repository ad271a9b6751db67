"""BPDA+EOT (Hill et al. 2021, ``point0bar1/ebm-defense``; DiffPure ports it), written here because no library
implements BPDA with EOT and per-step verification.

Per step t = 0..steps (t = 0 is the random start):
1. purify ``eot_reps`` copies of x_t (no gradient through the purifier), classify them, average the logits over
   copies, cross-entropy;
2. BPDA: the gradient w.r.t. each purified copy, averaged over copies, is applied to the raw input (identity
   backward through the purifier); x_{t+1} = Π(x_t + step·sign(grad));
3. the averaged logits flag candidate breaks; candidates are verified with ``verify_reps`` fresh purifications
   (argmax of the averaged logits); an image broken at any step stays broken.

A deterministic defense (two purifications of the same images bit-identical) collapses ``eot_reps`` and
``verify_reps`` to 1 (the cheap check is then the verification). ``last_info`` holds ``broken_any_step`` (the
headline, Hill et al.'s count), ``broken_final`` (judging only the final iterate), ``broken_per_step``,
``x_final`` (the last iterate, which the engine re-judges for its "final only" column), the probe result and
the repeats used. The returned x_adv is, per example, the first verified breaking iterate, else the final
iterate.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..purifier import Purifier
from ..estimators import ESTIMATORS, predict, probe_deterministic
from .base import Attack, lp_step, project, random_init, register
from ..params import AT_LEAST_ONE, FLAG, STEP, STEPS, Param


class AnyStepTracker:
    """Per-example "broken at any step" bookkeeping shared by the iterative adaptive attacks: keeps the first
    breaking iterate, the last iterate, and the judgement of every iterate (on the device: no host sync per step,
    except to re-judge candidate breaks when a verification is used)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.broken_any = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        self.x_best = x.clone()
        self.x_last = x.clone()
        self.per_step: list[torch.Tensor] = []
        self.verified = 0

    def update(self, x_t: torch.Tensor, y: torch.Tensor, cheap_defended: torch.Tensor,
               verify: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None) -> None:
        """``cheap_defended``: the cheap per-example judgement of x_t; ``verify(x, y, rows)`` re-judges the
        candidate breaks (``rows``: their positions in the batch) (None: the cheap judgement is final)."""
        broken = ~cheap_defended
        if verify is not None:
            cand = broken.nonzero().flatten()
            if cand.numel():
                self.verified += int(cand.numel())
                broken[cand] = ~verify(x_t[cand], y[cand], cand)
        new = broken & ~self.broken_any
        self.x_best[new] = x_t[new]
        self.broken_any |= broken
        # Not-yet-broken examples follow the iterate; broken ones keep their first breaking iterate.
        keep = ~self.broken_any
        self.x_best[keep] = x_t[keep]
        self.x_last = x_t.detach().clone()
        self.per_step.append(broken.clone())

    def info(self) -> dict[str, Any]:
        """``broken_any_step`` (Hill et al.'s count), ``broken_final`` (the last iterate alone), ``broken_per_step``
        ([steps + 1, n]: the judgement of every iterate, t = 0 the start), ``x_final`` (the last iterate)."""
        per_step = torch.stack(self.per_step).cpu() if self.per_step else torch.zeros(0, self.broken_any.shape[0],
                                                                                      dtype=torch.bool)
        last = per_step[-1] if len(per_step) else self.broken_any.cpu()
        return {"broken_any_step": self.broken_any.cpu(), "broken_final": last, "broken_per_step": per_step,
                "x_final": self.x_last, "verified_candidates": self.verified}


def defended_logits_fn(defense: Purifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """The defended model's logits without gradients: the real decision of the defense (its ``predict``)."""

    @torch.no_grad()
    def fn(z: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return defense.predict(z, indices)

    return fn


@register("bpda-eot")
class BPDAEOT(Attack):
    """Hill et al.'s BPDA+EOT: Linf 8/255, 50 steps x 2/255, random start, EOT 15 (logits averaged), identity
    backward, candidate breaks verified with 150 purifications, any-step counting."""

    defaults: dict[str, Any] = {"steps": 50, "step": None, "random_start": True, "eot_reps": 15,
                                "verify_reps": 150, "verify_estimator": "logit-avg", "probe": True,
                                "max_batch": 512}
    param_specs = {"steps": STEPS, "step": STEP, "random_start": FLAG, "eot_reps": AT_LEAST_ONE,
                   "verify_reps": AT_LEAST_ONE, "verify_estimator": Param("word", choices=tuple(ESTIMATORS)),
                   "probe": FLAG, "max_batch": AT_LEAST_ONE}
    needs_defense = True
    adaptive_only = True
    iterates = True
    gradient = "bpda"

    def _check_params(self) -> None:
        super()._check_params()
        p = self.params
        if "bpda" not in self.model.gradients:
            raise UserError(f"attack 'bpda-eot' needs BPDA access, and defense {self.model.name!r} offers only "
                            f"{', '.join(self.model.gradients)}; use pgd-eot (the full gradient)")
        if p["eot_reps"] < 1 or p["verify_reps"] < 1 or p["max_batch"] < 1:
            raise UserError(f"eot_reps, verify_reps and max_batch of attack {self.name!r} must be >= 1")
        if p["verify_estimator"] not in ESTIMATORS:
            raise UserError(f"unknown verify_estimator {p['verify_estimator']!r}; known: {', '.join(ESTIMATORS)}")

    def _purify(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Purify in chunks of ``max_batch`` images, without gradients through the purifier (BPDA)."""
        mb = int(self.params["max_batch"])
        with torch.no_grad():
            return torch.cat([self.model.purify_at(x[i:i + mb], indices[i:i + mb])
                              for i in range(0, x.shape[0], mb)]).detach()

    def _repeats(self, x: torch.Tensor) -> tuple[int, int]:
        p = self.params
        eot, ver = int(p["eot_reps"]), int(p["verify_reps"])
        det = None
        if p["probe"] and max(eot, ver) > 1:
            det = probe_deterministic(defended_logits_fn(self.model), x)
            if det:
                eot, ver = 1, 1
        self.last_info.update(deterministic=det, eot_reps=eot, verify_reps=ver)
        return eot, ver

    def bpda_grad(self, x: torch.Tensor, y: torch.Tensor, reps: int, indices: torch.Tensor | None = None,
                  need_grad: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(BPDA gradient w.r.t. the raw input, logits averaged over ``reps`` purified copies).

        The gradient of CE(mean over copies of classifier(p_k), y) w.r.t. each purified copy p_k, averaged over
        copies, is the gradient w.r.t. x (identity backward). ``indices`` (for ``x.repeat(reps)``) default to
        fresh randomness streams.
        """
        b = x.shape[0]
        if indices is None:
            indices = self.fresh_indices(reps)
        pur = self._purify(x.repeat(reps, 1, 1, 1), indices.to(x.device)).requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            logits = self.classifier(pur).view(reps, b, -1).mean(0)
            if not need_grad:
                return None, logits.detach()
            loss = F.cross_entropy(logits, y, reduction="sum")
            (g,) = torch.autograd.grad(loss, pur)
        return g.view(reps, *x.shape).mean(0), logits.detach()

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        eot, ver = self._repeats(x)
        fn = defended_logits_fn(self.model)
        mb = int(p["max_batch"])

        def verify(xc: torch.Tensor, yc: torch.Tensor, ic: torch.Tensor) -> torch.Tensor:
            return predict(fn, xc, p["verify_estimator"], n=ver, batch_size=mb, probe=False, indices=self._indices[ic],
                           stream=self._next_streams(ver)) == yc

        x_adv = random_init(x, self.eps, self.norm) if p["random_start"] else x.clone()
        tracker = AnyStepTracker(x_adv)
        for t in range(int(p["steps"]) + 1):
            grad, logits = self.bpda_grad(x_adv, y, eot, need_grad=t < int(p["steps"]))
            tracker.update(x_adv, y, logits.argmax(1) == y, verify if ver > 1 else None)
            if grad is not None:
                x_adv = project(x_adv + lp_step(grad, p["step"], self.norm), x, self.eps, self.norm)
        self.last_info.update(tracker.info())
        return tracker.x_best
