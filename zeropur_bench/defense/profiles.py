"""ZeroPur's settings: the profiles table (``PROFILES``) and what checks and resolves one defense's options.

``authors`` reproduces the authors' public code, ``paper`` follows the paper's text (Sec. 3.2–3.3, Alg. 1–2,
Table 11), ``calibrated`` is ``authors`` with the ILA weight fitted to the classifier (defense/calibration.py).
Every error message here is the one :class:`~zeropur_bench.defense.zeropur.ZeroPur` raises, in the same order.
"""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from ..errors import UserError
from ..profile_names import PROFILE_NAMES
from .calibration import Calibration, resolve_calibration

__all__ = ["GRAD_MODES", "ILA_NORMS", "OPTIONS", "PROFILES", "SURROGATES", "apply_calibration", "check_option_types",
           "check_request", "check_stage_options", "profile_options", "runtime_options", "step_size"]

GRAD_MODES = ("bpda", "full", "none")
SURROGATES = ("sign", "normalized")

# None for a step size means eps / steps (Alg. 2 line 2; the authors' code also for coarse shifting).
PROFILES: dict[str, dict[str, Any]] = {
    "authors": {  # erhul/ZeroPur zeropur.py (see docs/method.md)
        "coarse_steps": 10, "coarse_eps": 10 / 255, "coarse_step": None,
        "momentum": 1.0, "random_start": False, "blur_target_detached": True,
        "fine_steps": 50, "fine_eps": 10 / 255, "fine_step": None,
        "fine_layers": 2, "ila_weight": 1e-4, "ila_reduce": "sum",
        "lpips_weight": 1.0, "lpips_layers": "all",
    },
    "paper": {  # Sec. 3.2–3.3, Alg. 1–2, Table 11
        "coarse_steps": 10, "coarse_eps": 10 / 255, "coarse_step": 2 / 255,
        # Detached blur target as in the authors' code: the literal ∇d through both branches (False) lets the
        # step make g(x) agree with x instead of moving x (PGD-20 transfer, ResNet-20, median:3, 200 images:
        # C 0.5% vs 51.5% detached).
        "momentum": None, "random_start": True, "blur_target_detached": True,
        "fine_steps": 10, "fine_eps": 10 / 255, "fine_step": None,
        "fine_layers": 3, "ila_weight": 1.0, "ila_reduce": "mean",
        "lpips_weight": 0.0, "lpips_layers": "all",
    },
}
# The authors' profile with the ILA weight fitted to the classifier's feature scale on clean training images
# (defense/calibration.py): None here means "from the calibration", never a silent 1e-4.
PROFILES["calibrated"] = {**PROFILES["authors"], "ila_weight": None}
assert tuple(sorted(PROFILES)) == tuple(sorted(PROFILE_NAMES))  # the torch-free names agree with this table
ILA_NORMS = ("none", "feature")
OPTIONS = sorted(set(PROFILES["authors"]) | {"embedding", "surrogate", "dtype", "channels_last", "ila_norm"})

_NUMBER = ("coarse_eps", "fine_eps", "ila_weight", "lpips_weight")
_NUMBER_OR_NONE = ("coarse_step", "fine_step", "momentum")
_BOOL = ("random_start", "blur_target_detached", "channels_last")


def check_request(profile: str, stages: str, overrides: dict[str, Any]) -> None:
    """Known profile, stages 'c' | 'cf', known option names, and each option's type."""
    if profile not in PROFILES:
        raise UserError(f"unknown ZeroPur profile {profile!r}; choose one of {sorted(PROFILES)}")
    if stages not in ("c", "cf"):
        raise UserError(f"stages must be 'c' (coarse shifting) or 'cf' (coarse + fine), got {stages!r}")
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown ZeroPur option(s) {unknown}; valid options: {', '.join(OPTIONS)}")
    check_option_types(overrides)


def check_option_types(opts: dict[str, Any]) -> None:
    """One clear error per wrongly typed option (``--zp coarse_eps=abc``), before any arithmetic on it."""
    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

    for k, v in opts.items():
        if k in _NUMBER and not is_num(v):
            raise UserError(f"ZeroPur option {k} must be a number (e.g. {k}=8/255), got {v!r}")
        if k in _NUMBER_OR_NONE and v is not None and not is_num(v):
            raise UserError(f"ZeroPur option {k} must be a number or none, got {v!r}")
        if k in _BOOL and not isinstance(v, bool):
            raise UserError(f"ZeroPur option {k} must be true or false, got {v!r}")
        if k in ("fine_layers", "lpips_layers") and not (
                (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)
                or (isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v))):
            raise UserError(f"ZeroPur option {k} must be a number of last stages, 'all', or module names, got {v!r}")
        if k == "embedding" and v is not None and not isinstance(v, str):
            raise UserError(f"ZeroPur option embedding must be a module name, got {v!r}")


def profile_options(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``PROFILES[profile]`` with the overrides of its own keys applied (a new dict)."""
    opts = dict(PROFILES[profile])
    opts.update({k: v for k, v in overrides.items() if k in PROFILES[profile]})
    return opts


def apply_calibration(opts: dict[str, Any], profile: str, overrides: dict[str, Any], calibration: Any,
                      classifier: nn.Module, blur_spec: str, stages: str = "cf") -> Calibration | None:
    """For ``profile='calibrated'``: resolve the calibration and set ``opts['ila_weight']`` from it (in place);
    refuse ``calibration=`` with any other profile and a hand-set ila_weight with this one. C alone (``stages='c'``)
    runs no fine stage, the weight's only user: without a given or shipped calibration it needs none (the weight
    stays None), so the default profile serves any classifier's C."""
    if profile == "calibrated":
        if "ila_weight" in overrides:
            raise UserError("profile 'calibrated' fits ila_weight itself; to set it by hand use "
                            f"profile='authors', ila_weight={overrides['ila_weight']!r}")
        if stages == "c" and calibration is None:
            try:
                resolved = resolve_calibration(None, classifier, blur_spec)
            except UserError:  # no shipped calibration: C does not need one
                return None
        else:
            resolved = resolve_calibration(calibration, classifier, blur_spec)
        opts["ila_weight"] = resolved.ila_weight
        return resolved
    if calibration is not None:
        raise UserError(f"calibration= is for profile='calibrated' (this defense uses profile={profile!r})")
    return None


def runtime_options(overrides: dict[str, Any]) -> tuple[str, str, str, bool]:
    """(ila_norm, surrogate, dtype, channels_last): the options outside the profiles table, checked."""
    ila_norm = str(overrides.get("ila_norm", "none"))
    if ila_norm not in ILA_NORMS:
        raise UserError(f"ila_norm must be one of {ILA_NORMS}, got {ila_norm!r}")
    surrogate = overrides.get("surrogate", "sign")
    if surrogate not in SURROGATES:
        raise UserError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    dtype = str(overrides.get("dtype", "fp32")).lower()
    if dtype not in ("fp32", "bf16"):
        raise UserError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    return ila_norm, surrogate, dtype, bool(overrides.get("channels_last", False))


def check_stage_options(opts: dict[str, Any]) -> None:
    """Step counts integers >= 0, radii and step sizes finite >= 0, ila_reduce 'sum' | 'mean'."""
    for key in ("coarse_steps", "fine_steps"):
        if not isinstance(opts[key], int) or opts[key] < 0:
            raise UserError(f"{key} must be an integer >= 0, got {opts[key]!r}")
    for key in ("coarse_eps", "fine_eps", "coarse_step", "fine_step"):
        if opts[key] is not None and not (float(opts[key]) >= 0 and math.isfinite(float(opts[key]))):
            raise UserError(f"{key} must be a finite number >= 0, got {opts[key]!r}")
    if opts["ila_reduce"] not in ("sum", "mean"):
        raise UserError(f"ila_reduce must be 'sum' or 'mean', got {opts['ila_reduce']!r}")


def step_size(step: Any, eps: float, steps: int) -> float:
    """The step α: as given, or eps / steps when None (Alg. 2 line 2), 0.0 for zero steps."""
    return float(step) if step is not None else (eps / steps if steps else 0.0)
