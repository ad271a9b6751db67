"""Bit-depth reduction (Xu, Evans & Qi 2018, "Feature Squeezing", NDSS): each channel rounded to ``bits`` bits,
``round(x·(2^b − 1)) / (2^b − 1)`` as their ``reduce_precision`` does. Their CIFAR-10 squeezer is 5 bits."""
from __future__ import annotations

import torch
from torch import nn

from ...defenses import register_defense
from ...params import Param
from ...purifier import Purifier


@register_defense("bit-depth")
class BitDepth(Purifier):
    """Bit-depth reduction (Xu et al. 2018, feature squeezing; CIFAR-10: 5 bits).

    Deterministic. The quantiser's own gradient is zero almost everywhere, so it offers BPDA only: the straight-
    through identity is the known differentiable approximation (Athalye et al. 2018, Sec. 4.1)."""

    gradients = ("bpda",)
    option_specs = {"bits": Param("int", low=1, high=8)}

    def __init__(self, classifier: nn.Module, bits: int = 5) -> None:
        super().__init__(classifier)
        self.bits = int(bits)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2 ** self.bits - 1
        return torch.round(x * levels) / levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}"
