"""Wilson intervals, exact one-sided McNemar and Holm against independent computations (scipy)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from zeropur_bench.errors import UserError
from zeropur_bench.stats import holm, mcnemar_one_sided, wilson


def test_wilson_matches_scipy() -> None:
    for k, n in [(0, 10), (3, 10), (10, 10), (120, 200), (457, 500)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson(k, n)
        # scipy uses the exact normal quantile 1.95996..., we use z = 1.96
        assert lo == pytest.approx(ci.low, abs=2e-4) and hi == pytest.approx(ci.high, abs=2e-4)
        assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_coverage() -> None:
    rng = np.random.default_rng(0)
    n, p = 200, 0.6
    ks = rng.binomial(n, p, size=1000)
    covered = sum(lo <= p <= hi for lo, hi in (wilson(int(k), n) for k in ks))
    print(f"Wilson 95% coverage over 1000 trials (n={n}, p={p}): {covered / 1000:.3f}")
    assert covered >= 930


def test_wilson_edge_cases() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 50)
    assert lo == 0.0 and 0.0 < hi < 0.1
    with pytest.raises(UserError):
        wilson(5, 3)


def test_mcnemar_against_binomtest() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(300) < 0.7
    flip_down = base & (rng.random(300) < 0.15)   # base right, new wrong
    flip_up = ~base & (rng.random(300) < 0.05)    # base wrong, new right
    new = (base & ~flip_down) | flip_up
    b, c = int(flip_down.sum()), int(flip_up.sum())
    expected = binomtest(b, b + c, 0.5, alternative="greater").pvalue
    p = mcnemar_one_sided(base, new)
    assert p == pytest.approx(expected, rel=1e-12)
    assert p < 0.01  # new is clearly worse here
    # the reverse direction (new better) is not significant, and tensors work too
    assert mcnemar_one_sided(torch.as_tensor(new), torch.as_tensor(base)) > 0.5
    assert mcnemar_one_sided(base, base) == 1.0
    # hand-computed: b = 3, c = 0 -> P(Bin(3, 1/2) >= 3) = 1/8
    assert mcnemar_one_sided([True, True, True, False], [False, False, False, False]) == pytest.approx(0.125)
    with pytest.raises(UserError):
        mcnemar_one_sided([True], [True, False])


def test_holm() -> None:
    # sorted: 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2 -> stop
    assert holm([0.01, 0.04, 0.03, 0.005], alpha=0.05) == [True, False, False, True]
    assert holm([0.001, 0.002], alpha=0.05) == [True, True]
    assert holm([0.2, 0.001], alpha=0.05) == [False, True]
    assert holm([], alpha=0.05) == []
    # Holm rejects at least what Bonferroni rejects
    rng = np.random.default_rng(2)
    p = rng.random(20) ** 4
    bonf = p <= 0.05 / len(p)
    rej = np.array(holm(p, 0.05))
    assert (rej | ~bonf).all()
    with pytest.raises(UserError):
        holm([1.5])
