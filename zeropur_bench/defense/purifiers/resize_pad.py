"""Random resizing and padding (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating Adversarial Effects Through
Randomization", ICLR): resize the image to a random r×r, r ∈ [299, 331), with nearest-neighbour interpolation, then
pad it to 331×331 at a random offset with the value 0 of their [−1, 1] input range (0.5 here).

Scaled to 32×32 inputs: 331/299 of 32 is 35.4, so r ∈ [32, 35) and the output is 35×35. The output is larger than
the input: the classifier must take 35×35 images (a CIFAR ResNet's global pooling does), and there is no BPDA
(its identity needs the input's shape); resizing and padding are differentiable, which is how Athalye et al. 2018
attacked it (with EOT).
"""
from __future__ import annotations

import torch
from torch import nn

from ...defenses import register_defense
from ...errors import UserError
from ...params import Param
from ...purifier import Purifier


def resize_pad(x: torch.Tensor, size: torch.Tensor, top: torch.Tensor, left: torch.Tensor, out: int,
               value: float) -> torch.Tensor:
    """Each image b resized to size[b]² (nearest neighbour: source pixel ⌊i·H/size⌋, TensorFlow's) and placed at
    (top[b], left[b]) on an out×out canvas of ``value``.

    One gather per axis for the whole batch: torch's and kornia's resizes take one output size per call, and a
    size per image would need a loop over images. Differentiable in x (the gather)."""
    n, c, h, w = x.shape
    pos = torch.arange(out, device=x.device).view(1, -1)
    size, top, left = size.view(-1, 1), top.view(-1, 1), left.view(-1, 1)
    rows, cols = pos - top, pos - left  # (n, out): position inside the resized image
    inside = ((rows >= 0) & (rows < size)).unsqueeze(2) & ((cols >= 0) & (cols < size)).unsqueeze(1)
    src_r = (rows.clamp(min=0) * h).div(size, rounding_mode="floor").clamp(max=h - 1)
    src_c = (cols.clamp(min=0) * w).div(size, rounding_mode="floor").clamp(max=w - 1)
    picked = x.gather(2, src_r.view(n, 1, out, 1).expand(n, c, out, w))
    picked = picked.gather(3, src_c.view(n, 1, 1, out).expand(n, c, out, out))
    return torch.where(inside.unsqueeze(1), picked, torch.full_like(picked, value))


@register_defense("random-resize-pad")
class RandomResizePad(Purifier):
    """Random resizing and padding (Xie et al. 2018, scaled to 32×32: r ∈ [32, 35), padded to 35×35 with 0.5).

    Randomized: r and the offsets are drawn per example from (seed, dataset index) (:meth:`Purifier.example_uniform`),
    so an example gets the same draw in any batch, shard or resume, and each resubmission a fresh one. Changes the
    shape (35×35 out of 32×32), so it offers the full gradient only."""

    randomized = True
    shape_preserving = False
    gradients = ("full",)
    option_specs = {"low": Param("int", low=1), "high": Param("int", low=2),
                    "pad_value": Param("number", low=0, high=1)}

    def __init__(self, classifier: nn.Module, low: int = 32, high: int = 35, pad_value: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__(classifier, seed)
        if not low < high:
            raise UserError(f"random-resize-pad: the size range [low, high) must be non-empty, got [{low}, {high})")
        self.low, self.high, self.pad_value = int(low), int(high), float(pad_value)

    def draws(self, x: torch.Tensor, indices: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(size, top, left) per image: size uniform in [low, high), each offset uniform in [0, high − size]."""
        u = self.example_uniform(indices, (3,), x.device, n=len(x)).to(torch.float64)
        size = self.low + (u[:, 0] * (self.high - self.low)).long()
        room = (self.high - size + 1).to(torch.float64)
        return size, (u[:, 1] * room).long(), (u[:, 2] * room).long()

    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        size, top, left = self.draws(x, indices)
        return resize_pad(x, size, top, left, self.high, self.pad_value)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, pad_value={self.pad_value:g}"
