"""Statistics for robust-accuracy reports (Carlini et al. 2019 checklist): Wilson 95% intervals on a binomial
proportion, an exact one-sided McNemar test for paired per-example correctness, and Holm's step-down correction
over several such tests."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.stats import binomtest

from .errors import UserError


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (z = 1.96: 95%). n = 0 gives the vacuous (0, 1)."""
    if n < 0 or k < 0 or k > n:
        raise UserError(f"wilson needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_bool(v: Sequence[bool] | np.ndarray | torch.Tensor) -> np.ndarray:
    if torch.is_tensor(v):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=bool).ravel()


def mcnemar_one_sided(base_correct: Sequence[bool] | np.ndarray | torch.Tensor,
                      new_correct: Sequence[bool] | np.ndarray | torch.Tensor) -> float:
    """Exact McNemar p-value for H1 "new is worse than base" on paired per-example correctness.

    Discordant pairs: b = base right & new wrong, c = base wrong & new right. Under H0, b ~ Binomial(b + c, 1/2);
    p = P(B >= b). No discordant pairs gives p = 1.
    """
    b, c = _discordant(base_correct, new_correct)
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="greater").pvalue)


def _discordant(first: Sequence[bool] | np.ndarray | torch.Tensor,
                second: Sequence[bool] | np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(first right & second wrong, first wrong & second right) over paired per-example vectors."""
    a, bb = _as_bool(first), _as_bool(second)
    if a.shape != bb.shape:
        raise UserError(f"paired vectors differ in length: {a.size} vs {bb.size}")
    return int(np.sum(a & ~bb)), int(np.sum(~a & bb))


def mcnemar_two_sided(a_correct: Sequence[bool] | np.ndarray | torch.Tensor,
                      b_correct: Sequence[bool] | np.ndarray | torch.Tensor) -> tuple[float, int, int]:
    """Exact two-sided McNemar test on paired per-example correctness: (p, b, c) with b = a right & b wrong,
    c = a wrong & b right; p = two-sided binomial test of b out of b + c at 1/2 (1 with no discordant pair)."""
    b, c = _discordant(a_correct, b_correct)
    if b + c == 0:
        return 1.0, 0, 0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue), b, c


def holm(pvals: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm–Bonferroni step-down: which hypotheses are rejected at family-wise level ``alpha`` (input order)."""
    p = np.asarray(list(pvals), dtype=float)
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise UserError("p-values must lie in [0, 1]")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must lie in (0, 1), got {alpha}")
    m = p.size
    reject = [False] * m
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] <= alpha / (m - rank):
            reject[int(i)] = True
        else:
            break
    return reject
