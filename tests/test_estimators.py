"""Estimators: one-shot / logit average / majority vote on a synthetic stochastic classifier with analytic
answers, the deterministic collapse on the real ResNet-20, and ZeroPur's per-index randomness streams."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom

from zeropur_bench.errors import UserError
from zeropur_bench.estimators import (STREAM, aggregate, correct, per_call_correct, predict, probe_deterministic,
                                      repeated_calls)


class CoinClassifier(torch.nn.Module):
    """Two classes, label 0 is right. Each call, independently per image, it is right with probability p:
    logits (a, 0) when right, (0, b) when wrong. Over N calls with k right ones: majority is right iff k > N/2;
    the logit average is right iff a k > b (N - k)."""

    def __init__(self, p: float, a: float, b: float, seed: int = 0) -> None:
        super().__init__()
        self.p, self.a, self.b = p, a, b
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = torch.rand(x.shape[0], generator=self.gen) < self.p
        out = torch.zeros(x.shape[0], 2)
        out[right, 0] = self.a
        out[~right, 1] = self.b
        return out


@pytest.mark.parametrize("n_calls", [1, 5, 9, 25])
def test_estimators_match_binomial_analytics(n_calls: int) -> None:
    p, a, b, m = 0.6, 1.0, 2.5, 4000  # b N / (a + b) = 5N/7 is never an integer here: no ties
    model = CoinClassifier(p, a, b, seed=n_calls)
    x = torch.zeros(m, 1, 1, 1)
    y = torch.zeros(m, dtype=torch.long)
    # analytic accuracies: P(Bin(N, p) > N/2), P(Bin(N, p) > b N / (a + b))
    maj_true = binom.sf(math.floor(n_calls / 2), n_calls, p)
    avg_true = binom.sf(math.floor(b * n_calls / (a + b) + 1e-9), n_calls, p)
    results = {}
    for est, truth in [("one-shot", p), ("majority", maj_true), ("logit-avg", avg_true)]:
        pred, info = predict(model, x, est, n=n_calls, batch_size=1024, return_info=True)
        acc = correct(pred, y).float().mean().item()
        results[est] = (acc, truth)
        se = math.sqrt(truth * (1 - truth) / m) + 1e-3
        assert abs(acc - truth) < 4 * se, (est, n_calls, acc, truth)
        assert info["deterministic"] is (False if est != "one-shot" and n_calls > 1 else None)
        assert info["n"] == (1 if est == "one-shot" else n_calls)
    print(f"N={n_calls}: " + ", ".join(f"{k} {v[0]:.3f} (analytic {v[1]:.3f})" for k, v in results.items()))


def test_majority_converges_to_one() -> None:
    # p = 0.6 > 1/2: the majority vote's accuracy grows with N towards 1 (analytic 0.97 at N = 101)
    model = CoinClassifier(0.6, 1.0, 1.0, seed=3)
    x = torch.zeros(2000, 1, 1, 1)
    acc = (predict(model, x, "majority", n=101, batch_size=8192) == 0).float().mean().item()
    assert acc == pytest.approx(binom.sf(50, 101, 0.6), abs=0.02)
    assert acc > 0.95


def test_deterministic_model_collapses(cifar10_test, resnet20) -> None:
    x = cifar10_test[0][:16]
    one = predict(resnet20, x)
    for est in ("logit-avg", "majority"):
        pred, info = predict(resnet20, x, est, n=7, return_info=True)
        assert info["deterministic"] is True and info["n"] == 1 and info["n_requested"] == 7
        assert torch.equal(pred, one)
    assert probe_deterministic(resnet20, x)
    assert not probe_deterministic(CoinClassifier(0.5, 1, 1), torch.zeros(64, 1, 1, 1))


class IndexRecorder(torch.nn.Module):
    """Deterministic in x, random in its indices like ZeroPur's random start: logits depend on the index."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            indices = torch.arange(x.shape[0])
        self.seen.append(indices.clone())
        return torch.stack([torch.sin(indices.double()), torch.cos(indices.double())], 1).float()


def test_repeated_calls_draw_fresh_streams() -> None:
    model = IndexRecorder()
    idx = torch.tensor([5, 17, 99])
    repeated_calls(model, torch.zeros(3, 1, 2, 2), n=4, batch_size=5, indices=idx)
    seen = torch.cat(model.seen)
    assert seen.numel() == 12 and seen.unique().numel() == 12  # every call of every image: its own randomness
    assert set(seen.tolist()) == {int(i) + k * STREAM for i in idx for k in range(4)}
    # call 0 is the canonical one: one-shot with indices is exactly the model at the dataset indices
    assert torch.equal(predict(model, torch.zeros(3, 1, 2, 2), indices=idx),
                       model(torch.zeros(3, 1, 2, 2), indices=idx).argmax(1))
    # the probe sees an indexed model as stochastic
    assert not probe_deterministic(model, torch.zeros(4, 1, 2, 2))


def test_zeropur_random_start_is_stochastic(cifar10_test, resnet20) -> None:
    from zeropur_bench.defense.zeropur import ZeroPur

    x = cifar10_test[0][:4]
    assert probe_deterministic(ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=1), x, k=4)
    stochastic = ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=1, random_start=True)
    assert not probe_deterministic(stochastic, x, k=4)
    _, info = predict(stochastic, x, "logit-avg", n=2, return_info=True)
    assert info["n"] == 2 and info["deterministic"] is False


def test_aggregate_helpers() -> None:
    # 3 calls, 2 images, 3 classes
    logits = torch.tensor([[[5.0, 0, 0], [0, 1, 0]],
                           [[0, 4, 0], [0, 1, 0]],
                           [[0, 3, 0], [0, 0, 9]]])
    y = torch.tensor([0, 1])
    assert aggregate(logits, "one-shot").tolist() == [0, 1]
    assert aggregate(logits, "majority").tolist() == [1, 1]
    assert aggregate(logits, "logit-avg").tolist() == [1, 2]
    assert per_call_correct(logits, y).tolist() == [[True, True], [False, True], [False, False]]


def test_bad_estimator_inputs() -> None:
    x = torch.zeros(2, 1, 1, 1)
    with pytest.raises(UserError, match="unknown estimator"):
        predict(CoinClassifier(0.5, 1, 1), x, "median")
    with pytest.raises(UserError):
        predict(CoinClassifier(0.5, 1, 1), x, "majority", n=0)
