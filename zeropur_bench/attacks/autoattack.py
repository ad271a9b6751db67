"""AutoAttack (Croce & Hein 2020) through ``pyautoattack`` (the PyPI AutoAttack; keyword-only API).

Never torchattacks' AutoAttack: it runs APGD/FAB with 10 iterations instead of 100.
'standard' = APGD-CE, APGD-T, FAB-T, Square (5000 queries); 'rand' = APGD-CE + APGD-DLR, 1 restart, EOT 20,
100 iterations each (what the paper reports for all its AutoAttack columns).

EOT repeats identical work on a deterministic target (the bare classifier in the transfer setting, ZeroPur
without random start): by default the attack probes the target (two passes on a few images, bit-identical =>
deterministic) and then runs 'rand' with EOT 1 — the same trajectory for 1/20 of the work — and records it in
``last_info``.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

import torch
from torch import nn
from pyautoattack import AutoAttack as _PyAutoAttack

from ..errors import UserError
from ..estimators import probe_deterministic
from .base import Attack, register
from ..params import AT_LEAST_ONE, FLAG, Param

VERSIONS = ("standard", "rand", "plus")


@contextlib.contextmanager
def _quiet_autoattack() -> Iterator[None]:
    """pyautoattack logs its per-attack progress at DEBUG/INFO; keep its warnings (randomised defense, ...)."""
    log = logging.getLogger("auto-attack")
    old = log.level
    log.setLevel(max(old, logging.WARNING) if old else logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(old)


def _set_iterations(aa: _PyAutoAttack, n: int) -> None:
    """Run every sub-attack with ``n`` iterations instead of AutoAttack's 100 (Square: 50·n queries instead of
    5000), for the convergence check (doubling the steps) and quick tests. APGD derives its checkpoint schedule
    from n_iter in its constructor, so those fields are recomputed the same way."""
    for apgd in (aa.apgd, aa.apgd_targeted):
        apgd.n_iter = apgd.n_iter_orig = n
        apgd.n_iter_2 = max(int(0.22 * n), 1)
        apgd.n_iter_min = max(int(0.06 * n), 1)
        apgd.size_decr = max(int(0.03 * n), 1)
    aa.fab.n_iter = n
    aa.square.n_queries = 50 * n


@register("autoattack")
class AutoAttack(Attack):
    """AutoAttack ``version`` standard | rand | plus. ``eot_iter`` applies to 'rand' only (default 20, collapsed to
    1 for a deterministic target when ``probe`` is true). ``n_iter`` (default 100, AutoAttack's) changes the
    iterations of every sub-attack: only for convergence checks and quick tests; report 100 as "AutoAttack"."""

    defaults: dict[str, Any] = {"version": "standard", "eot_iter": 20, "probe": True, "n_iter": 100}
    param_specs = {"version": Param("word", choices=VERSIONS), "eot_iter": AT_LEAST_ONE, "probe": FLAG,
                   "n_iter": AT_LEAST_ONE}

    suffix = ""

    @classmethod
    def label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        """``AutoAttack-<version>`` only with AutoAttack's own settings (100 iterations; EOT 20 for 'rand', whose
        collapse to 1 on a proved-deterministic target is recorded per batch); otherwise ``autoattack[...]``."""
        v = params.get("version")
        if int(params.get("n_iter", -1)) == 100 and v in VERSIONS and (v != "rand" or int(params["eot_iter"]) == 20):
            return f"AutoAttack-{v}{cls.suffix}"
        return super().label(params, eps, norm, with_eps=with_eps)

    def _check_params(self) -> None:
        super()._check_params()
        if self.params["version"] not in VERSIONS:
            raise UserError(f"unknown AutoAttack version {self.params['version']!r}; known: {', '.join(VERSIONS)}")
        if self.params["eot_iter"] < 1 or self.params["n_iter"] < 1:
            raise UserError(f"parameters eot_iter and n_iter of attack {self.name!r} must be >= 1")

    # AutoAttack's own advice for a deterministic model is 'standard': 'rand' against one would run only
    # APGD-CE and APGD-DLR (with EOT 1). Only the BPDA variant, which targets defenses, switches.
    switch_to_standard_if_deterministic = False

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        eot = int(p["eot_iter"])
        version = p["version"]
        if version == "rand":
            det = None
            if p["probe"] and (eot > 1 or self.switch_to_standard_if_deterministic):
                det = probe_deterministic(self.model, x)
                if det:
                    eot = 1
            self.last_info.update(deterministic=det, eot_iter_requested=int(p["eot_iter"]), eot_iter=eot)
            if det and self.switch_to_standard_if_deterministic:
                version = "standard"
                self.last_info["version_note"] = ("requested 'rand'; the defense is deterministic (probed), so "
                                                  "AutoAttack's advice applies: ran 'standard'")
        self.last_info["version_run"] = version
        aa = _PyAutoAttack(self.target, eps=self.eps, norm=self.norm, version=version,
                           seed=int(self.last_info["batch_seed"]), device=self.device)
        if version == "rand":
            aa.apgd.eot_iter = eot
        if int(p["n_iter"]) != 100:
            _set_iterations(aa, int(p["n_iter"]))
        with _quiet_autoattack():
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
        self.last_info["attacks_run"] = list(aa.attacks_to_run)
        return x_adv


@register("autoattack-bpda")
class AutoAttackBPDA(AutoAttack):
    """AutoAttack 'rand' against the defended model through straight-through BPDA
    ``clf(x + (purify(x) - x).detach())`` (Croce et al. 2022), through :class:`zeropur_bench.gradients.BPDA`.
    The defense opens ``torch.enable_grad()`` itself, so pyautoattack's ``no_grad`` loop works. Against a
    defense the probe proves deterministic it runs 'standard' instead (APGD-CE, APGD-T, FAB-T, Square) and says
    so in ``last_info`` and in its column name."""

    defaults: dict[str, Any] = {"version": "rand", "eot_iter": 20, "probe": True, "n_iter": 100}
    needs_defense = True
    adaptive_only = True
    suffix = "-BPDA"
    family = "autoattack"
    switch_to_standard_if_deterministic = True
    gradient = "bpda"

    @classmethod
    def target_label(cls, params: dict[str, Any], eps: float, norm: str, deterministic_target: bool | None,
                     with_eps: bool = True) -> str:
        # what it runs against a deterministic defense: 'standard' once the probe proved it (probe=false runs
        # 'rand' as asked, and the column says so)
        if params.get("version") == "rand" and deterministic_target and params.get("probe", True):
            params = {**params, "version": "standard"}
        return cls.label(params, eps, norm, with_eps=with_eps)

    @classmethod
    def mixed_label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        return cls.label(params, eps, norm, with_eps=with_eps).replace("-rand", "-rand/standard")


@register("autoattack-full")
class AutoAttackFull(AutoAttackBPDA):
    """AutoAttack against the defended model through the purifier's full gradient (``purify``'s own graph, or the
    ``surrogate`` it names, e.g. JPEG's ``diff-jpeg``) instead of BPDA (:class:`zeropur_bench.gradients.FullGradient`):
    the differently-built white-box AutoAttack for a purifier that offers both, to test a number BPDA leaves standing
    (a defense must hold against every gradient it offers). As ``autoattack-bpda``: 'rand' with EOT 20, 'standard'
    against a defense the probe proves deterministic."""

    defaults: dict[str, Any] = {**AutoAttackBPDA.defaults, "surrogate": None}
    param_specs = {**AutoAttack.param_specs, "surrogate": Param("word", optional=True)}
    suffix = "-full"
    gradient = "full"

    @classmethod
    def label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        """``AutoAttack-<version>-full`` with AutoAttack's settings, then the surrogate where one is named."""
        s = params.get("surrogate")
        name = super().label({**params, "surrogate": None}, eps, norm, with_eps=with_eps)
        if s is None or not name.startswith("AutoAttack-"):
            return name if s is None else super().label(params, eps, norm, with_eps=with_eps)
        return f"{name}[surrogate={s}]"

    def _check_params(self) -> None:
        super()._check_params()
        gradients = getattr(self.model, "gradients", ())
        if "full" not in gradients:
            raise UserError(f"attack {self.name!r} needs the full gradient, and defense "
                            f"{getattr(self.model, 'name', '?')!r} offers only {', '.join(gradients) or 'none'}; "
                            "use autoattack-bpda")
        s = self.params["surrogate"]
        if s is not None and s not in self.model.surrogates:
            raise UserError(f"defense {self.model.name!r} offers no surrogate {s!r} (it offers: "
                            f"{', '.join(self.model.surrogates) or 'none'}); use surrogate=none")

    def differentiable(self, surrogate: str | None = None) -> nn.Module:
        return super().differentiable(surrogate if surrogate is not None else self.params["surrogate"])
