"""Gradient access to a purifier, as wrappers (advertorch's ``BPDAWrapper``, foolbox's EOT-as-a-wrapper): an attack
asks for the access it needs and never changes the defense.

* :class:`BPDA`: the forward is the defended model's real decision, ``classifier(purify(x))``; the backward treats
  ``purify`` as the identity (straight-through, Athalye et al. 2018). Needs ``purify`` to keep the input's shape.
* :class:`FullGradient`: backpropagates through ``purify``'s own graph, or through a surrogate the purifier offers
  (ZeroPur's smooth surrogate of its sign steps, ``surrogate="normalized"``).

Both keep the purifier's ``indices`` (per-example randomness) and expose ``classifier`` and ``defended``.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import UserError
from .purifier import GRADIENTS, Purifier


class _Access(nn.Module):
    access = "?"

    def __init__(self, defended: Purifier) -> None:
        super().__init__()
        if not isinstance(defended, Purifier):
            raise UserError(f"{type(self).__name__} wraps a Purifier, got {type(defended).__name__}")
        if self.access not in defended.gradients:
            offered = ", ".join(defended.gradients) or "none"
            raise UserError(f"defense {defended.name!r} offers no {self.access} gradient (it offers: {offered})"
                            + ("; its output has another shape than its input, so BPDA's identity does not apply"
                               if self.access == "bpda" and not defended.shape_preserving else ""))
        self.defended = defended

    @property
    def classifier(self) -> nn.Module:
        return self.defended.classifier

    def train(self, mode: bool = True) -> "_Access":
        return self  # the purifier inside stays in eval mode


class BPDA(_Access):
    """Straight-through BPDA: ``classifier(x + (purify(x) − x).detach())`` (the forward value is the purified
    prediction; d/dx is the classifier's gradient at the purified image)."""

    access = "bpda"

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            purified = self.defended.purify_at(x, indices).detach()
        if torch.is_grad_enabled() and x.requires_grad:
            return self.classifier(x + (purified - x).detach())
        return self.classifier(purified)


class FullGradient(_Access):
    """The defended model with gradients through ``purify`` itself (or the purifier's named ``surrogate``)."""

    access = "full"

    def __init__(self, defended: Purifier, surrogate: str | None = None) -> None:
        super().__init__(defended)
        if surrogate is not None and surrogate not in defended.surrogates:
            raise UserError(f"defense {defended.name!r} offers no gradient surrogate {surrogate!r}; "
                            f"it offers: {', '.join(defended.surrogates) or 'none'}")
        self.surrogate = surrogate

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.defended.predict(x, indices)  # no gradient asked: the real decision
        return self.defended.differentiable_predict(x, indices, self.surrogate)


ACCESS = ("default", "bpda", "full", "none")


def access(model: nn.Module, kind: str, surrogate: str | None = None) -> nn.Module:
    """``model`` as an attack asking for gradient access ``kind`` sees it: a bare classifier as it is; a purifier
    wrapped (:class:`BPDA`, :class:`FullGradient`), or as it is for 'none' (gradient-free attacks only call it).
    'default' is the purifier's ``default_gradient``; a purifier offering no BPDA gets the full gradient for
    'bpda'."""
    if not isinstance(model, Purifier) or kind == "none":
        return model
    if kind == "default":
        kind = model.default_gradient
        if kind not in GRADIENTS:  # ZeroPur built with grad_mode='none': its own forward, whose backward refuses
            return model
    if kind == "bpda" and "bpda" in model.gradients:
        return BPDA(model)
    if kind in ("bpda", "full"):
        return FullGradient(model, surrogate)
    raise ValueError(f"unknown gradient access {kind!r}")
