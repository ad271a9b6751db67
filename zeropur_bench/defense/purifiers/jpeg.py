"""JPEG compression (Das et al. 2017, "Keeping the Bad Guys Out"; Guo et al. 2018, "Countering Adversarial Images
using Input Transformations"): encode and decode at quality 75, the quality both papers use.

The forward is the real codec: torchvision's libjpeg encoder and decoder (4:2:0 chroma subsampling, as PIL's
default, and bit-identical to PIL's ``save(format='jpeg', quality=75)`` that the papers' code calls). The full
gradient is that of kornia's differentiable JPEG (Reich et al. 2024; Shin & Song 2017), attached to the real
codec's output straight-through: the attack sees the real decision and a gradient of a codec that approximates
it (Athalye et al.'s BPDA with a differentiable approximation instead of the identity)."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ...defenses import register_defense
from ...errors import UserError
from ...params import Param
from ...purifier import Purifier


def jpeg_codec(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode every image of a [0, 1] batch as JPEG at ``quality`` (torchvision/libjpeg, 8-bit).

    The codec runs on the CPU whatever the batch's device: nvjpeg (torchvision's CUDA codec) is a different
    encoder, and the exact bytes of libjpeg are the defense."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = torch.round(x.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu()
    with warnings.catch_warnings():  # torchvision 0.29 announces a move to torchcodec; pyproject pins <= 0.29.1
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(u8), quality=quality))
    return torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255


@register_defense("jpeg")
class Jpeg(Purifier):
    """JPEG compression at quality 75 (Das et al. 2017; Guo et al. 2018).

    Deterministic. Offers BPDA (the default) and the full gradient through kornia's differentiable JPEG (surrogate
    ``diff-jpeg``, also used when no surrogate is named: the real codec has no gradient)."""

    surrogates = ("diff-jpeg",)
    option_specs = {"quality": Param("int", low=1, high=100)}

    def __init__(self, classifier: nn.Module, quality: int = 75) -> None:
        super().__init__(classifier)
        self.quality = int(quality)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg_codec(x, self.quality)

    def differentiable_purify(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                              surrogate: str | None = None) -> torch.Tensor:
        """The real codec's output, with the gradient of kornia's differentiable JPEG at the same quality."""
        if surrogate not in (None, "diff-jpeg"):
            raise UserError(f"defense {self.name!r} offers the gradient surrogate diff-jpeg, not {surrogate!r}")
        if x.shape[1] != 3:
            raise UserError(f"the differentiable JPEG takes RGB images (3 channels), got {x.shape[1]}")
        from kornia.enhance import jpeg_codec_differentiable

        with torch.enable_grad():
            quality = torch.tensor([float(self.quality)], device=x.device)
            smooth = jpeg_codec_differentiable(x, quality)
            return jpeg_codec(x, self.quality) + (smooth - smooth.detach())

    def extra_repr(self) -> str:
        return f"quality={self.quality}"
