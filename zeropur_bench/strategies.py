"""How one batch is attacked and judged: the clean judgement of every variant, then each attack by the run's
strategy, into a typed :class:`~zeropur_bench.records.batch.BatchResult`.

* :class:`Transfer` (paper Tables 2–5): each attack is crafted once on the bare classifier; every defense variant
  purifies the same adversarial set ("craft once, purify many").
* :class:`Adaptive` (Table 6, Figure 5): each attack is crafted against each defended model. Iterative attacks
  report "any step" (an image broken at any iterate stays broken, Hill et al.) and "final only" (the attack's last
  iterate, re-judged), with the count of both per step. In a cascade, an attack sees only the examples every
  earlier attack left unbroken.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from .config import AttackSpec
from .inputs import RunInputs, autocast
from .records.assemble import attack_notes
from .records.batch import BatchResult, VariantBatch

Inputs = dict[str, torch.Tensor]


def judge(run: RunInputs, key: str, x_in: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Defense ``key`` right on ``x_in``, per example (the run's estimator; one call if deterministic)."""
    from .estimators import predict

    c = run.config
    n_calls = 1 if run.deterministic[key] else c.estimator_n  # the run-level probe already decided
    with autocast(c.device, c.dtype):
        pred = predict(run.defenses[key], x_in, c.estimator, n_calls, batch_size=c.batch_size, probe=False,
                       indices=idx.to(x_in.device))
    return pred.to(yb.device) == yb


def _attack(run: RunInputs, spec: AttackSpec, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
            idx: torch.Tensor, cost: dict) -> tuple[dict, torch.Tensor]:
    """One attack on one target; its classifier passes are added to ``cost``."""
    from .attacks import make_attack

    c = run.config
    atk = make_attack(spec.name, target, eps=c.eps, norm=c.norm, seed=c.seed, **spec.resolved(c.eps, c.threat))
    with autocast(c.device, c.dtype):
        x_adv = atk(x, y, idx)
    cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
    cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
    return atk.last_info, x_adv


class Transfer:
    """Craft once on the bare classifier; every variant purifies the same input."""

    def __init__(self, run: RunInputs) -> None:
        self.run = run

    def attack(self, spec: AttackSpec, key: str, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
               res: BatchResult, cost: dict) -> Inputs:
        run, clf = self.run, self.run.classifier
        info, x_adv = _attack(run, spec, clf, xb, yb, idx, cost)
        with torch.no_grad(), autocast(run.config.device, run.config.dtype):
            res.bare_adv_correct[key] = (clf(x_adv).argmax(1) == yb).tolist()
        for k, v in res.variants.items():
            v.adv_correct[key] = judge(run, k, x_adv, yb, idx).tolist()
        res.notes[key] = {"bare_classifier_deterministic": run.bare_deterministic, **attack_notes(info)}
        return {"bare": x_adv}


class Adaptive:
    """Craft against each defended model (a cascade: on the survivors of the earlier attacks only)."""

    def __init__(self, run: RunInputs) -> None:
        self.run = run

    def attack(self, spec: AttackSpec, key: str, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
               res: BatchResult, cost: dict) -> Inputs:
        res.notes[key] = {}
        return {k: self._one(spec, key, k, xb, yb, idx, res, cost) for k in self.run.defenses}

    def _one(self, spec: AttackSpec, key: str, k: str, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
             res: BatchResult, cost: dict) -> torch.Tensor:
        run, v = self.run, res.variants[k]
        c = run.config
        alive = torch.ones(len(xb), dtype=torch.bool)
        if c.cascade:
            for prev in v.adv_correct.values():  # the earlier attacks, in order
                alive &= torch.tensor(prev, dtype=torch.bool)
            v.attacked = {**(v.attacked or {}), key: alive.tolist()}
        sel = alive.nonzero().flatten()
        x_adv = xb.clone()
        ok = torch.zeros(len(xb), dtype=torch.bool)
        final = torch.zeros(len(xb), dtype=torch.bool)
        per_step = None
        if len(sel):
            sub = sel.to(xb.device)
            info, x_sub = _attack(run, spec, run.defenses[k], xb[sub], yb[sub], idx[sel], cost)
            x_adv[sub] = x_sub
            ok[sel] = judge(run, k, x_sub, yb[sub], idx[sel]).cpu()
            broken = info.get("broken_any_step")
            if broken is not None:
                ok[sel] &= ~torch.as_tensor(broken, dtype=torch.bool).cpu()
            if info.get("x_final") is not None:  # iterative: judge the attack's own last iterate
                final[sel] = judge(run, k, info["x_final"], yb[sub], idx[sel]).cpu()
            if info.get("broken_per_step") is not None and len(info["broken_per_step"]):
                steps = info["broken_per_step"].to(torch.bool).cpu()
                per_step = torch.ones(steps.shape[0], len(xb), dtype=torch.bool)  # not attacked: broken
                per_step[:, sel] = steps
            res.notes[key][k] = {**attack_notes(info), "target_deterministic": run.deterministic[k]}
        else:  # every example is broken already: nothing left to attack
            res.notes[key][k] = {"attacked": 0, "target_deterministic": run.deterministic[k]}
            if spec.cls.iterates:
                per_step = torch.ones(int(spec.resolved(c.eps, c.threat)["steps"]) + 1, len(xb), dtype=torch.bool)
        v.adv_correct[key] = ok.tolist()
        if spec.cls.iterates:
            v.adv_final_correct[key] = final.tolist()
        if per_step is not None:
            dclean = torch.tensor(v.defended_clean_correct, dtype=torch.bool)
            first = torch.where(per_step.any(0), per_step.to(torch.int64).argmax(0), -1)
            v.first_broken_step[key] = [None if f < 0 else int(f) for f in first.tolist()]
            v.final_counts[key] = {"robust": (~per_step & dclean).sum(1).tolist(), "adv": (~per_step).sum(1).tolist()}
        return x_adv


def run_batch(run: RunInputs, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
              on_attack_done: Callable[[str, int], None] | None = None, keep_inputs: bool = False) -> BatchResult:
    """Attack and judge one batch (``idx``: its dataset indices, which seed it). ``keep_inputs``: also return the
    attacks' inputs under ``inputs[attack key][variant | "bare"]`` (tensors, not saved), for reports that show or
    recompute a few examples exactly as the run made them."""
    from .attacks.base import PassCounter

    c, clf = run.config, run.classifier
    with torch.no_grad(), autocast(c.device, c.dtype):
        res = BatchResult(index=idx.tolist(), clean_correct=(clf(xb).argmax(1) == yb).tolist())
    for k, d in run.defenses.items():
        counter = PassCounter()
        # every variant's own passes are counted: none reuses another's work here
        with counter.attach(clf), d.counting_passes():
            dclean = judge(run, k, xb, yb, idx)
        res.variants[k] = VariantBatch(defended_clean_correct=dclean.tolist(),
                                       forward_passes_per_prediction=counter.forward / max(1, len(xb)))
    strategy = Transfer(run) if c.setting == "transfer" else Adaptive(run)
    inputs: dict[str, Inputs] = {}
    for i, spec in enumerate(c.attacks):
        key = run.attack_keys[i]
        t0 = time.perf_counter()
        cost = {"forward_passes": 0, "backward_passes": 0}
        inputs[key] = strategy.attack(spec, key, xb, yb, idx, res, cost)
        cost["seconds"] = time.perf_counter() - t0
        res.cost[key] = cost
        if on_attack_done is not None:
            on_attack_done(key, len(idx))
    if keep_inputs:
        res.inputs = inputs
    return res

