"""Defense-aware attack (Mao et al. 2021, ``cvlab-columbia/SelfSupDefense``), adapted to ZeroPur.

PGD (Linf 8/255, step 2/255, 10 iterations, random start) maximising

    CE(f(x+δ), y) + λ · cos(emb(x+δ), emb(g(x+δ)))    [+ μ · fine term]

where f is the bare classifier (the CE term is on its logits at x+δ, not through the purifier) and the cosine is
the purifier's own objective ``defense.objective`` (ZeroPur: the coarse-shifting cosine, per sample, gradient
through the blur g real).
Mao et al. add λ·(−L_purifier); ZeroPur's purifier *maximises* the cosine, so −L_purifier is the cosine: the
attacker makes x+δ already blur-consistent so coarse shifting has nothing to undo. Mao et al. use λ = 10; a large
λ can starve the CE term, so λ is swept (default 0.1, 1, 10) and, per example, the worst case is kept: each λ's
x_adv is judged through the defense and an x_adv that breaks it is kept if any λ does (else the one with the
highest defended cross-entropy).

Optional fine term (``fine_term=True``, for a :class:`~zeropur_bench.purifier.Staged` purifier):
−Σ_l mean((f_l(coarse(x+δ)) − f_l(x+δ))²) over the defense's stage features, with coarse(·) through
straight-through BPDA (x + (coarse(x) − x).detach(), the first stage of one purification run), so fine alignment
has no direction to follow; weighted by ``fine_weight`` (μ). The mean over elements keeps the term's scale
comparable across layers.

Written here because no library implements it. The judgement is the defense's prediction (one-shot, or the
logit average over ``judge_reps`` purifications; a deterministic defense collapses to 1). ``last_info`` holds the
per-λ break counts, the λ kept per example and ``broken_any_step``/``broken_final`` (identical here: each λ's
final iterate is what is judged).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..estimators import repeated_calls, probe_deterministic
from .base import Attack, lp_step, project, random_init, register
from ..params import AT_LEAST_ONE, FLAG, STEP, STEPS, Param
from ..purifier import Staged
from .bpda_eot import defended_logits_fn


@register("defense-aware")
class DefenseAware(Attack):
    """Mao et al.'s defense-aware PGD on CE + λ·(ZeroPur coarse cosine), λ swept, per-example worst case."""

    defaults: dict[str, Any] = {"steps": 10, "step": None, "random_start": True, "lambdas": (0.1, 1.0, 10.0),
                                "fine_term": False, "fine_weight": 1.0, "judge_reps": 1, "probe": True,
                                "max_batch": 512}
    param_specs = {"steps": STEPS, "step": STEP, "random_start": FLAG, "lambdas": Param("numbers", low=0),
                   "fine_term": FLAG, "fine_weight": Param("number", low=0), "judge_reps": AT_LEAST_ONE,
                   "probe": FLAG, "max_batch": AT_LEAST_ONE}
    needs_defense = True
    adaptive_only = True

    def _check_params(self) -> None:
        super()._check_params()
        p = self.params
        lams = p["lambdas"]
        if isinstance(lams, (int, float)):
            lams = (lams,)
        try:
            lams = tuple(float(v) for v in lams)
        except (TypeError, ValueError):
            raise UserError(f"lambdas of attack 'defense-aware' must be numbers, got {p['lambdas']!r}") from None
        if not lams or any(v < 0 for v in lams):
            raise UserError(f"lambdas of attack 'defense-aware' must be a non-empty list of numbers >= 0, got {lams}")
        p["lambdas"] = lams
        if not self.model.has_objective:
            raise UserError(f"attack 'defense-aware' needs a defense that states its purification objective; "
                            f"{self.model.name!r} does not (Purifier.has_objective)")
        if p["fine_term"] and not isinstance(self.model, Staged):
            raise UserError(f"fine_term=True needs a purifier that names its stages (purify_stages, stage_features, "
                            f"fine_layers: zeropur_bench.purifier.Staged); {self.model.name!r} does not")
        if int(p["judge_reps"]) < 1:
            raise UserError("judge_reps of attack 'defense-aware' must be >= 1")

    def objective(self, xa: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
        """The summed per-example objective (maximised)."""
        d = self.model
        loss = F.cross_entropy(self.classifier(xa), y, reduction="sum")
        if lam:
            loss = loss + lam * d.objective(xa).sum()
        if self.params["fine_term"]:
            with torch.no_grad():  # the first stage's result of one purification run
                c = d.purify_stages(xa.detach(), indices=self._indices)["coarse"]
            coarse = xa + (c - xa).detach()
            fc, fx = d.stage_features(coarse), d.stage_features(xa)
            layers = d.fine_layers or [k for k in fx if k != "embedding"]
            fine = sum(((fc[k] - fx[k]) ** 2).flatten(1).mean(1) for k in layers)
            loss = loss - float(self.params["fine_weight"]) * fine.sum()
        return loss

    def _pgd(self, x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
        p = self.params
        xa = random_init(x, self.eps, self.norm) if p["random_start"] else x.clone()
        for _ in range(int(p["steps"])):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.objective(xa, y, lam), xa)
            xa = project(xa.detach() + lp_step(g, p["step"], self.norm), x, self.eps, self.norm)
        return xa.detach()

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        fn = defended_logits_fn(self.model)
        reps = int(p["judge_reps"])
        det = None
        if p["probe"] and reps > 1:
            det = probe_deterministic(fn, x)
            if det:
                reps = 1
        best_x = x.clone()
        best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        best_lam = torch.zeros(x.shape[0], device=x.device)
        per_lam: dict[str, int] = {}
        for lam in p["lambdas"]:
            xa = self._pgd(x, y, lam)
            logit_sum, _ = repeated_calls(fn, xa, reps, int(p["max_batch"]), indices=self._indices,
                                          stream=self._next_streams(reps))
            logits = logit_sum / reps
            broken = logits.argmax(1) != y
            per_lam[str(lam)] = int(broken.sum())
            # Broken beats unbroken; among equals the higher defended CE (closer to breaking) wins.
            score = F.cross_entropy(logits, y, reduction="none") + broken.float() * 1e6
            upd = score > best_score
            best_x[upd], best_score[upd], best_lam[upd] = xa[upd], score[upd], lam
        broken = (best_score >= 1e6).cpu()
        self.last_info.update(deterministic=det, judge_reps=reps, broken_per_lambda=per_lam,
                              lambda_kept=best_lam.cpu(), broken_any_step=broken, broken_final=broken.clone())
        return best_x
