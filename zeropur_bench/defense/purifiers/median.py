"""Median smoothing (Xu, Evans & Qi 2018, "Feature Squeezing", NDSS): a k×k median filter per channel, exactly
their ``scipy.ndimage.median_filter(x, size=k, mode='reflect')``. Their CIFAR-10 squeezer is 2×2."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...defenses import register_defense
from ...params import Param
from ...purifier import Purifier


def symmetric_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Pad H and W with scipy's 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a); torch's 'reflect'
    leaves the edge pixel out and 'replicate' repeats only it, so the rows and columns are indexed here."""
    def index(n: int) -> torch.Tensor:
        i = torch.arange(-before, n + after, device=x.device)
        period = 2 * n
        i = torch.remainder(i, period)
        return torch.where(i < n, i, period - 1 - i)

    return x.index_select(-2, index(x.shape[-2])).index_select(-1, index(x.shape[-1]))


def median_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """scipy's ``median_filter(size=k, mode='reflect')`` on each channel of a batch, in torch.

    Written here because no library does scipy's filter in torch: kornia's ``median_blur`` zero-pads, takes the
    lower of the two middle values and centres the window, while scipy's window at pixel i spans
    [i − k//2, i − k//2 + k − 1] (for k = 2: the pixel and the one before it) and takes sorted element k²//2 (for an
    even window, the upper middle value). Batched; differentiable (the gradient goes to the selected pixel)."""
    n, c, h, w = x.shape
    patches = F.unfold(symmetric_pad(x, k // 2, k - 1 - k // 2), k)  # (n, c·k², h·w)
    patches = patches.view(n, c, k * k, h * w)
    return patches.kthvalue(k * k // 2 + 1, dim=2).values.view(n, c, h, w)


@register_defense("median-smoothing")
class MedianSmoothing(Purifier):
    """Median smoothing (Xu et al. 2018, feature squeezing; CIFAR-10: 2×2 window, scipy's reflect padding).

    Deterministic. Differentiable almost everywhere (the gradient routes to each window's selected pixel): it offers
    that full gradient and BPDA (the default access, as for the other transforms)."""

    option_specs = {"size": Param("int", low=2, high=15)}

    def __init__(self, classifier: nn.Module, size: int = 2) -> None:
        super().__init__(classifier)
        self.size = int(size)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return median_filter(x, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"
