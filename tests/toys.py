"""Toy defenses with known behaviour, to test what the engine counts (not how strong anything is).

* :class:`WrongWhenClean`: wrong on the exact clean images it was given, right on anything else. Under attack it
  is "right" on every example, so the paper's protocol counts them all while robust accuracy (clean ∧ adversarial)
  must count none of them.
* :class:`Oscillating`: a deterministic defense whose prediction flips with a hash of the input: an iterative
  attack breaks most images at *some* step, while its last iterate is right about half the time, so any-step and
  final-only must differ.
"""
from __future__ import annotations

import torch
from torch import nn

from zeropur_bench.purifier import Purifier


class _ToyClassifier(nn.Module):
    """Logits = a small frozen linear map (gives BPDA a gradient) + a large bonus on the class ``decide`` picks:
    the true label (found by the nearest clean image: inputs stay within eps of it) when ``decide`` says right,
    else the next class."""

    def __init__(self, x_clean: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(x_clean[0].numel(), num_classes)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.fc.weight.copy_(torch.randn(num_classes, x_clean[0].numel(), generator=g))
            self.fc.bias.zero_()
        self.register_buffer("x_clean", x_clean.clone())
        self.register_buffer("y", y.clone())
        self.num_classes = num_classes
        self.requires_grad_(False)

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = (x.detach().flatten(1)[:, None, :] - self.x_clean.flatten(1)[None]).abs().amax(2)
        return self.y[d.argmin(1)], d.amin(1)

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.nearest(x)
        pred = torch.where(self.decide(x), y, (y + 1) % self.num_classes)
        base = self.fc(x.flatten(1)) * 1e-3
        return base + 100.0 * nn.functional.one_hot(pred, self.num_classes).to(base.dtype)


class _WrongWhenCleanClassifier(_ToyClassifier):
    def decide(self, x: torch.Tensor) -> torch.Tensor:
        return self.nearest(x)[1] > 0  # exactly the clean image: wrong; anything perturbed: right


class _OscillatingClassifier(_ToyClassifier):
    def decide(self, x: torch.Tensor) -> torch.Tensor:
        # a deterministic pseudo-random bit of the input: flips between the iterates of an attack
        q = (x.detach().double().flatten(1) * 255 * 7919).round().sum(1)
        return torch.remainder(q, 2) == 0


class _ToyDefense(Purifier):
    """Identity purifier in front of a toy classifier (a :class:`~zeropur_bench.purifier.Purifier`)."""

    kind: type[_ToyClassifier] = _ToyClassifier

    def __init__(self, x_clean: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(self.kind(x_clean, y))

    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return x.detach().clone()

    def config(self) -> dict:
        return {"name": type(self).__name__}


class WrongWhenClean(_ToyDefense):
    kind = _WrongWhenCleanClassifier


class Oscillating(_ToyDefense):
    kind = _OscillatingClassifier
