"""Calibrating the fine stage's hidden scale: the ILA weight of ZeroPur's ``calibrated`` profile.

The authors' fine-stage loss is ``1e-4 · ILA − 1 · self-LPIPS`` (docs/method.md). ILA is bilinear in the stage
features f_l, so its gradient grows with the square of the classifier's feature scale, while self-LPIPS normalises
the features and does not. The fixed 1e-4 only suits classifiers whose features are as large as the public
CIFAR-10 ResNet-20's. Two rules fit the weight for one classifier, on **clean images of a fixed slice of the
training split only** (never test images, never an attack):

* ``scale`` (rule a): ``w = 1e-4 · S_ref / S``, where S is the mean over the slice of Σ_l ‖f_l(x)‖² over the fine
  layers, and S_ref the same quantity for the public ResNet-20 (``REFERENCE``), for which the rule gives 1e-4.
  It needs forward passes only and does not depend on the blur.
* ``clean-guard`` (rule b): the largest weight on a log grid (``GUARD_GRID``) whose defended clean accuracy on the
  slice stays within ``delta`` points of the bare classifier's on the same slice. Defended clean accuracy falls
  as w grows (ILA pushes a clean image along the coarse stage's direction, paper A.4), so the grid is searched
  by bisection; every weight it evaluated is recorded (``details.curve``). It depends on the blur.

A third candidate needs no fitting: each layer's ILA term divided per image by ‖f_l(x_adv)‖² (times the
reference layer scale), which cancels any feature scale by construction (ZeroPur option ``ila_norm='feature'``,
kept so that benchmarks/calibration_study.py can be rerun). Measured beside the two rules it lost to both:
adversarial inputs have larger features than clean ones, so it shrinks the ILA weight below the authors' and C-F
collapses (results/calibration/). No profile uses it.

A :class:`Calibration` records the rule, the ILA weight, the split, the slice (n, seed), the grid and the curve,
and where it came from (``source``); ZeroPur's ``config()`` carries the short form, so the resolved weight and
its source are part of every record's comparison and resume keys.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError

__all__ = ["Calibration", "weights_sha256", "REFERENCE", "RULES", "DEFAULT_RULE", "DEFAULT_N", "DEFAULT_SEED",
           "DEFAULT_DELTA", "GUARD_GRID", "calibration_slice", "load_calibration", "resolve_calibration"]

FORMAT = "zeropur-bench/calibration/v1"
RULES = ("scale", "clean-guard")
DEFAULT_RULE = "clean-guard"
DEFAULT_N = 256
DEFAULT_SEED = 0
DEFAULT_DELTA = 0.05  # points of clean accuracy (as a fraction) the guard may lose against the bare classifier
AUTHORS_WEIGHT = 1e-4
# 1e-4 · 2^(k/2), k = -8..8: the authors' value is on the grid, neighbours a factor √2 apart (6.25e-6 .. 1.6e-3).
GUARD_GRID = tuple(AUTHORS_WEIGHT * 2 ** (k / 2) for k in range(-8, 9))

# S_ref: the public CIFAR-10 ResNet-20 (resnet20-cifar10-public), mean over the default calibration slice
# (cifar10 train, n=256, seed 0) of Σ_l ‖f_l(x)‖² over the authors' fine layers (outputs of layer2 and layer3),
# fp32, with the per-layer means (what ila_norm='feature' uses). Re-measured by
# tests/test_calibration.py::test_reference_scale_is_the_public_models.
REFERENCE: dict[str, Any] = {
    "classifier": "resnet20-cifar10-public",
    "sha256": "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
    "dataset": "cifar10", "split": "train", "n": DEFAULT_N, "seed": DEFAULT_SEED,
    "scale": 16832.96,
    "layers": [6166.19, 10666.78],
}


def weights_sha256(module: nn.Module) -> str:
    """sha256 of a module's state (every parameter and buffer: name, dtype, shape, values): how ZeroPur finds a
    shipped calibration for a classifier that arrives as a bare ``nn.Module``."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class Calibration:
    """A fitted ILA weight for one classifier (and, for the clean guard, one blur)."""

    rule: str
    ila_weight: float
    dataset: str
    split: str
    n: int
    seed: int
    weights_sha256: str
    blur: str | None = None  # None: the rule does not depend on the blur (scale)
    profile: str = "authors"  # the profile whose other settings the weight was fitted under
    source: str = "computed"
    details: dict[str, Any] = field(default_factory=dict)

    def short(self) -> dict[str, Any]:
        """``{rule, ila_weight, split, n, seed, source}``: what records and keys carry."""
        return {"rule": self.rule, "ila_weight": self.ila_weight, "split": self.split, "n": self.n,
                "seed": self.seed, "source": self.source}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def with_source(self, source: str) -> "Calibration":
        return Calibration(**{**asdict(self), "source": source})

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None) -> "Calibration":
        if not isinstance(d, dict):
            raise UserError(f"a calibration must be a JSON object (made by `zeropur-bench calibrate`), got "
                            f"{type(d).__name__}")
        d = {k: v for k, v in d.items() if k != "format"}
        missing = [k for k in ("rule", "ila_weight", "dataset", "split", "n", "seed", "weights_sha256") if k not in d]
        unknown = sorted(set(d) - {f for f in cls.__dataclass_fields__})
        if missing or unknown:
            raise UserError(f"not a zeropur-bench calibration ({'missing ' + ', '.join(missing) if missing else ''}"
                            f"{'; ' if missing and unknown else ''}{'unknown ' + ', '.join(unknown) if unknown else ''})"
                            "; make one with `zeropur-bench calibrate`")
        w = d["ila_weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
            raise UserError(f"calibration ila_weight must be a finite number >= 0, got {w!r}")
        if d["rule"] not in RULES:
            raise UserError(f"unknown calibration rule {d['rule']!r}; known: {', '.join(RULES)}")
        cal = cls(**{**d, "ila_weight": float(w)})
        return cal.with_source(source) if source else cal


def load_calibration(path: str | os.PathLike) -> Calibration:
    """A calibration file written by ``zeropur-bench calibrate`` / :meth:`Calibration.to_dict`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"calibration file '{p}' does not exist; make one with `zeropur-bench calibrate`")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read calibration file '{p}': {str(exc).splitlines()[0][:120]}") from None
    return Calibration.from_dict(d, source=f"file:{p.name}")


def calibration_slice(n_split: int, n: int, seed: int) -> torch.Tensor:
    """Row indices of the slice: the first ``n`` of a seeded permutation of the split, sorted (the same rule as
    ``EvalConfig(split='train', data_seed=seed, n_ex=n)``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"calibration slice size must be a positive integer, got {n!r}")
    if n > n_split:
        raise UserError(f"calibration slice of {n} images is larger than the training split ({n_split}); "
                        f"use --n {n_split} or fewer")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_split, generator=g)[:n].sort().values


def resolve_calibration(calibration: Any, classifier: nn.Module, blur: str) -> Calibration:
    """The :class:`Calibration` of profile 'calibrated': the one given (object, dict or JSON file), checked against
    the classifier's weights and the blur; else the shipped one found by the weights' sha256."""
    from .. import registry

    sha = weights_sha256(classifier)
    if calibration is None:
        found = registry.calibration_for(sha, blur, DEFAULT_RULE)
        if found is not None:
            return Calibration.from_dict(found)
        shipped = registry.calibrations_by_weights(sha)
        hint = (f"; shipped calibrations of this classifier are for blur "
                f"{', '.join(sorted({str(c.get('blur')) for c in shipped}))}" if shipped else "")
        raise UserError("profile 'calibrated' (the default) needs a calibration for this classifier and blur "
                        f"{blur}{hint}: pass calibration=zeropur_bench.calibrate(classifier, dataset, blur=...) "
                        "(or a file from `zeropur-bench calibrate`), or choose profile='authors' for the authors' "
                        "fixed ILA weight")
    if isinstance(calibration, Calibration):
        cal = calibration
    elif isinstance(calibration, dict):
        cal = Calibration.from_dict(calibration, source=calibration.get("source") or "given")
    elif isinstance(calibration, (str, os.PathLike)):
        cal = load_calibration(calibration)
    else:
        raise UserError(f"calibration must be a Calibration, a dict or a calibration file path, got "
                        f"{type(calibration).__name__}")
    if cal.weights_sha256 != sha:
        raise UserError(f"this calibration was fitted for another classifier (weights sha256 "
                        f"{cal.weights_sha256[:12]}…, this one {sha[:12]}…); calibrate this classifier with "
                        "`zeropur-bench calibrate`")
    if cal.blur is not None and cal.blur != blur:
        raise UserError(f"this calibration was fitted with blur {cal.blur}, but the defense uses {blur}; "
                        f"calibrate with --blur {blur}")
    return cal
