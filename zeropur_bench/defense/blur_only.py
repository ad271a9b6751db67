"""The blur alone in front of the classifier, ``classifier(g(x))``: the paper's Table 1 baseline, against which
ZeroPur's two stages are measured (how much of the recovery is just the blur); and ``none``, the bare classifier
as a purifier (the identity), so every variant of a run is a :class:`~zeropur_bench.purifier.Purifier`."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..purifier import Purifier
from .blur import Blur, make_blur


class BlurOnly(Purifier):
    """``classifier(blur(x))``; deterministic, and differentiable through the blur (median: through the selected
    pixels), so the full gradient is the true one."""

    name = "blur"
    default_gradient = "full"  # differentiable: attacks see the true gradient, as they always did

    def __init__(self, classifier: nn.Module, blur: str | Callable[[torch.Tensor], torch.Tensor] = "median:3") -> None:
        super().__init__(classifier)
        self.blur: Blur = make_blur(blur)

    def config(self) -> dict[str, Any]:
        return {"method": "blur", "blur": self.blur.spec}

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(x)

    def extra_repr(self) -> str:
        return f"blur={self.blur.spec!r}"


class NoDefense(Purifier):
    """The bare classifier: ``purify`` is the identity."""

    name = "none"
    passes_per_prediction = 1.0
    default_gradient = "full"

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__(classifier)

    def config(self) -> dict[str, Any]:
        return {"name": "none"}

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x
