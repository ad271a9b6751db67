"""The anti-adversary layer (Alfarra, Pérez, Thabet, Bibi, Torr & Ghanem 2022, "Combating Adversaries with
Anti-Adversaries", AAAI): before classifying, K signed-gradient steps of size α that make the classifier MORE
confident in its own prediction ŷ = argmax f(x): γ ← γ − α·sign ∇_γ CE(f(x + γ), ŷ) from γ = 0, then f(x + γ).
K = 2 and α = 0.15 on [0, 1] pixels are the authors' CIFAR-10 settings (their README's command for CIFAR-10, with
no normalisation in front of the wrapper).

The authors' wrapper feeds x + γ unclipped, and so does the default here (the name ``anti-adversary`` carries
their settings only): its output may leave [0, 1] by up to K·α. ``clip=true`` keeps x + γ in [0, 1] after every
step (projected sign descent), an image like every other purifier's; its variant is named
``anti-adversary[clip=true]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...defenses import register_defense
from ...params import Param
from ...purifier import Purifier


@register_defense("anti-adversary")
class AntiAdversary(Purifier):
    """The anti-adversary layer (Alfarra et al. 2022; K 2, α 0.15, unclipped as theirs; clip=true keeps [0, 1]).

    Deterministic. γ is piecewise constant in x (signs of gradients, the argmax ŷ), so the gradient of
    f(x + γ(x)) is f's gradient at x + γ wherever the clip does not hold a pixel at 0 or 1: the full gradient takes
    γ as constant, and BPDA (the default) gives the same."""

    option_specs = {"k": Param("int", low=0), "alpha": Param("number", low=0), "clip": Param("bool")}

    def __init__(self, classifier: nn.Module, k: int = 2, alpha: float = 0.15, clip: bool = False) -> None:
        super().__init__(classifier)
        self.k, self.alpha, self.clip = int(k), float(alpha), bool(clip)

    def anti_adversary(self, x: torch.Tensor) -> torch.Tensor:
        """γ for every image (no graph: the steps' signs carry no gradient)."""
        x = x.detach()
        gamma = torch.zeros_like(x)
        if self.k == 0 or self.alpha == 0:
            return gamma
        with torch.no_grad():
            pred = self.classifier(x).argmax(1)
        with torch.enable_grad():
            for _ in range(self.k):
                gamma.requires_grad_(True)
                # summed, not averaged: the sign of each image's gradient is the same, and no image's depends on
                # the batch size
                loss = F.cross_entropy(self.classifier(x + gamma).float(), pred, reduction="sum")
                (g,) = torch.autograd.grad(loss, gamma)
                gamma = (gamma - self.alpha * g.sign()).detach()
                if self.clip:
                    gamma = (x + gamma).clamp(0, 1) - x
        return gamma

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.anti_adversary(x)  # γ constant: the gradient to x is the identity
        return out.clamp(0, 1) if self.clip else out

    def extra_repr(self) -> str:
        return f"k={self.k}, alpha={self.alpha:g}, clip={self.clip}"
