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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UserError

__all__ = ["Calibration", "calibrate", "feature_scale", "weights_sha256", "REFERENCE", "RULES", "DEFAULT_RULE",
           "DEFAULT_N", "DEFAULT_SEED", "DEFAULT_DELTA", "GUARD_GRID", "calibration_slice", "load_calibration"]

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


@torch.no_grad()
def feature_scale(defense: Any, x: torch.Tensor, batch_size: int = 256) -> tuple[float, list[float]]:
    """(S, per-layer means): mean over ``x`` of Σ_l ‖f_l(x)‖² over ``defense.fine_layers`` (clean images)."""
    per_layer = torch.zeros(len(defense.fine_layers), dtype=torch.float64)
    for s in range(0, len(x), batch_size):
        feats = defense.stage_features(x[s: s + batch_size])
        per_layer += torch.stack([feats[l].double().flatten(1).pow(2).sum(1).sum() for l in defense.fine_layers]).cpu()
    per_layer /= len(x)
    return float(per_layer.sum()), [float(v) for v in per_layer]


def _accuracy(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(model(x[s: s + batch_size]).argmax(1) == y[s: s + batch_size])
    return torch.cat(out)


def _guard_search(defense: Any, x: torch.Tensor, y: torch.Tensor, bare_acc: float, delta: float,
                  batch_size: int, indices: torch.Tensor, grid: tuple[float, ...],
                  echo: Callable[[str], None]) -> tuple[float, list[dict[str, float]]]:
    """Bisection over ``grid`` for the largest weight whose defended clean accuracy ≥ bare − delta."""
    coarse = torch.cat([defense.purify_stages(x[s: s + batch_size], indices[s: s + batch_size])["coarse"]
                        for s in range(0, len(x), batch_size)])
    seen: dict[int, float] = {}

    def acc_at(i: int) -> float:
        if i not in seen:
            t0 = time.perf_counter()
            defense.ila_weight = grid[i]
            ok = []
            with torch.no_grad():
                for s in range(0, len(x), batch_size):
                    xp = defense.align(x[s: s + batch_size], coarse[s: s + batch_size])
                    ok.append(defense.classifier(xp).argmax(1) == y[s: s + batch_size])
            seen[i] = float(torch.cat(ok).float().mean())
            echo(f"  ila_weight {grid[i]:.3g}: defended clean {100 * seen[i]:.1f}% "
                 f"(bare {100 * bare_acc:.1f}%, {time.perf_counter() - t0:.0f} s)")
        return seen[i]

    passes = lambda i: acc_at(i) >= bare_acc - delta - 1e-12  # noqa: E731
    lo, hi = 0, len(grid) - 1
    if not passes(lo):
        chosen = 0  # even the smallest weight costs more than delta: take it, and say so in the details
    elif passes(hi):
        chosen = hi
    else:  # invariant: passes(lo), not passes(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if passes(mid) else (lo, mid)
        chosen = lo
    curve = [{"ila_weight": grid[i], "defended_clean_acc": seen[i]} for i in sorted(seen)]
    return grid[chosen], curve


def calibrate(classifier: nn.Module, dataset: str, blur: str = "median:3", rule: str = DEFAULT_RULE,
              n: int = DEFAULT_N, seed: int = DEFAULT_SEED, delta: float = DEFAULT_DELTA,
              data_dir: str | os.PathLike | None = None, batch_size: int = 128,
              data: tuple[torch.Tensor, torch.Tensor] | None = None, grid: tuple[float, ...] = GUARD_GRID,
              echo: Callable[[str], None] | None = None, **zeropur_options: Any) -> Calibration:
    """Fit the fine stage's ILA weight for ``classifier`` on clean images of the training split (rule ``scale``
    or ``clean-guard``, module docstring). Deterministic: the slice is fixed by (n, seed), the purification by
    the profile (authors' settings, no randomness). ``data`` replaces the slice (in-memory training images) for
    tests and studies; test images must never be passed."""
    from ..data import load_data
    from .zeropur import ZeroPur

    echo = echo or (lambda s: None)
    if rule not in RULES:
        raise UserError(f"unknown calibration rule {rule!r}; choose one of {', '.join(RULES)}")
    if not (isinstance(delta, (int, float)) and 0 <= delta < 1):
        raise UserError(f"delta must be a fraction in [0, 1) (0.05 = 5 points), got {delta!r}")
    t0 = time.perf_counter()
    if data is None:
        x_all, y_all = load_data(dataset, "train", data_dir=data_dir)
        idx = calibration_slice(len(x_all), n, seed)
        x, y = x_all[idx], y_all[idx]
        del x_all, y_all
    else:
        x, y = data
        idx = torch.arange(len(x))
        n = len(x)
    device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
    x, y = x.to(device), y.to(device)
    defense = ZeroPur(classifier, profile="authors", stages="cf", blur=blur, **zeropur_options)
    s_model, layers = feature_scale(defense, x, batch_size)
    details: dict[str, Any] = {"feature_scale": s_model, "feature_scale_layers": layers,
                               "fine_layers": list(defense.fine_layers), "reference": dict(REFERENCE)}
    if rule == "scale":
        weight = AUTHORS_WEIGHT * REFERENCE["scale"] / s_model
        echo(f"scale rule: S = {s_model:.1f} (reference {REFERENCE['scale']:.1f}) -> ila_weight {weight:.4g}")
        blur_spec = None
    else:
        bare = _accuracy(classifier, x, y, batch_size)
        bare_acc = float(bare.float().mean())
        details.update({"delta": delta, "bare_clean_acc": bare_acc, "grid": list(grid),
                        "search": "bisection (defended clean accuracy taken as non-increasing in the weight)"})
        echo(f"clean-guard rule on {n} clean {dataset} training images, blur {defense.blur.spec}, "
             f"delta {100 * delta:g} points:")
        weight, curve = _guard_search(defense, x, y, bare_acc, delta, batch_size, idx.to(device), grid, echo)
        details["curve"] = curve
        details["within_delta"] = any(c["ila_weight"] == weight and c["defended_clean_acc"] >= bare_acc - delta - 1e-12
                                      for c in curve)
        blur_spec = defense.blur.spec
    details["seconds"] = round(time.perf_counter() - t0, 1)
    details["note"] = ("the shipped classifiers were trained on all 50,000 training images: the slice is clean "
                       "training data, not held out from the classifier's training")
    return Calibration(rule=rule, ila_weight=float(weight), dataset=dataset, split="train", n=int(n),
                       seed=int(seed), weights_sha256=weights_sha256(classifier), blur=blur_spec,
                       profile="authors", source="computed", details=details)
