"""The blur alone in front of the classifier, ``classifier(g(x))``: the paper's Table 1 baseline, against which
ZeroPur's two stages are measured (how much of the recovery is just the blur)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import UserError
from .blur import Blur, make_blur


class BlurOnly(nn.Module):
    """``classifier(blur(x))``; deterministic, and differentiable through the blur (median: through the selected
    pixels), so adaptive attacks see the true gradient."""

    def __init__(self, classifier: nn.Module, blur: str | Callable[[torch.Tensor], torch.Tensor] = "median:3") -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise UserError(f"classifier must be a torch nn.Module, got {type(classifier).__name__}")
        self.classifier = classifier.eval()
        self.blur: Blur = make_blur(blur)

    def config(self) -> dict[str, Any]:
        return {"method": "blur", "blur": self.blur.spec}

    def train(self, mode: bool = True) -> "BlurOnly":
        self.training = mode
        self.classifier.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blur(x))

    def extra_repr(self) -> str:
        return f"blur={self.blur.spec!r}"
