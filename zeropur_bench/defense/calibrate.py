"""Fitting the calibrated profile's ILA weight (rules ``scale`` and ``clean-guard``; see
:mod:`zeropur_bench.defense.calibration` for what they are and what a :class:`Calibration` records)."""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UserError
from .calibration import (AUTHORS_WEIGHT, DEFAULT_DELTA, DEFAULT_N, DEFAULT_RULE, DEFAULT_SEED, GUARD_GRID, REFERENCE,
                          RULES, Calibration, calibration_slice, weights_sha256)
from .zeropur import ZeroPur

__all__ = ["calibrate", "feature_scale"]


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
                  echo: Callable[[str], None]) -> tuple[float, list[dict[str, float]], bool]:
    """Bisection over ``grid`` for the largest weight whose defended clean accuracy ≥ bare − delta: (weight, the
    evaluated points, whether the weight is within delta)."""
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
    return grid[chosen], curve, passes(chosen)


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
        weight, details["curve"], details["within_delta"] = _guard_search(defense, x, y, bare_acc, delta,
                                                                          batch_size, idx.to(device), grid, echo)
        blur_spec = defense.blur.spec
    details["seconds"] = round(time.perf_counter() - t0, 1)
    details["note"] = ("the shipped classifiers were trained on all 50,000 training images: the slice is clean "
                       "training data, not held out from the classifier's training")
    return Calibration(rule=rule, ila_weight=float(weight), dataset=dataset, split="train", n=int(n),
                       seed=int(seed), weights_sha256=weights_sha256(classifier), blur=blur_spec,
                       profile="authors", source="computed", details=details)
