"""Blurring operators g for coarse shifting (paper Sec. 3.2, Table 7, Table 9).

Every operator works on a batch of [0, 1] NCHW images on any device, is written in plain torch ops (so an attack
can differentiate through it) and treats every image independently. String specs:

- ``median:k``   k×k median filter (k odd), reflect padding (torch 'reflect' = scipy ``mode='mirror'``:
  the edge pixel is not repeated).
- ``gaussian:s`` Gaussian blur with standard deviation s pixels, separable kernel of radius ceil(3s)
  (size 2·ceil(3s)+1, same kernel as torchvision's ``gaussian_blur``), reflect padding.
- ``tv:w`` or ``tv:w:iters``  total-variation minimisation (Table 7): ``iters`` (default 50) gradient-descent steps
  on ½‖z − x‖² + w·TV_ε(z) from z = x, with the smoothed isotropic TV_ε = Σ sqrt(dx² + dy² + ε²), ε = 0.05
  and step 1 / (1 + 8w/ε) (the inverse Lipschitz constant of the gradient, so every step descends).

PIL's filters (the authors' code) quantise to uint8 and run per image on the CPU; these are batched and exact.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import UserError

__all__ = ["Blur", "MedianBlur", "GaussianBlur", "TVBlur", "CallableBlur", "make_blur", "BLURS"]

BLURS = {
    "median": "median:k   k×k median filter, k odd ≥ 3 (e.g. median:3)",
    "gaussian": "gaussian:sigma   Gaussian blur, sigma > 0 pixels (e.g. gaussian:1.2)",
    "tv": "tv:weight[:iters]   total-variation minimisation, weight > 0 (e.g. tv:0.05 or tv:0.05:50)",
    "identity": "identity   no blur (a control)",
}


def _pad(x: torch.Tensor, r: int) -> torch.Tensor:
    # torch's reflect padding needs r < H, W; tiny images fall back to replicate padding.
    mode = "reflect" if r < x.shape[-1] and r < x.shape[-2] else "replicate"
    return F.pad(x, (r, r, r, r), mode=mode)


class Blur:
    """Base class: a callable on image batches with a canonical ``spec`` string."""

    spec: str = "?"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class MedianBlur(Blur):
    """k×k median filter (paper Sec. 3.1/4.1: 3×3 for 'Vanilla' classifiers; Table 9: 5×5, 7×7)."""

    def __init__(self, k: int = 3) -> None:
        if k < 3 or k % 2 == 0:
            raise UserError(f"median kernel size must be odd and >= 3, got {k}; valid forms: {_valid_forms()}")
        self.k = k
        self.spec = f"median:{k}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        r = self.k // 2
        # No torch median filter exists; unfold + median is batched and differentiable (gradient routes to the
        # selected pixel, like the reference PIL/scipy filter's value).
        patches = F.unfold(_pad(x, r), self.k)  # (n, c·k², h·w)
        patches = patches.view(n, c, self.k * self.k, h * w)
        return patches.median(dim=2).values.view(n, c, h, w)


def gaussian_kernel1d(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


class GaussianBlur(Blur):
    """Gaussian blur (paper Sec. 4.1: sigma 1.2 for 'Standard'/'Strong'; Table 9: 0.6/1.2/1.8; authors' code 1.8)."""

    def __init__(self, sigma: float = 1.2) -> None:
        if not (sigma > 0 and math.isfinite(sigma)):
            raise UserError(f"gaussian sigma must be > 0, got {sigma}; valid forms: {_valid_forms()}")
        self.sigma = float(sigma)
        self.radius = int(math.ceil(3 * self.sigma))
        self.spec = f"gaussian:{self.sigma:g}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = gaussian_kernel1d(self.sigma, self.radius, x.dtype, x.device)
        size = k.numel()
        y = _pad(x, self.radius).reshape(n * c, 1, h + 2 * self.radius, w + 2 * self.radius)
        y = F.conv2d(y, k.view(1, 1, 1, size))
        y = F.conv2d(y, k.view(1, 1, size, 1))
        return y.reshape(n, c, h, w)


class TVBlur(Blur):
    """Total-variation minimisation (paper Table 7): gradient descent on ½‖z − x‖² + w·TV_ε(z), per image.

    The TV gradient is written in closed form (no autograd inside), so the unrolled iterations are ordinary
    differentiable tensor ops and an attack can backpropagate through them.
    """

    EPS = 0.05

    def __init__(self, weight: float = 0.05, iters: int = 50) -> None:
        if not (weight > 0 and math.isfinite(weight)):
            raise UserError(f"tv weight must be > 0, got {weight}; valid forms: {_valid_forms()}")
        if iters < 1:
            raise UserError(f"tv iterations must be >= 1, got {iters}; valid forms: {_valid_forms()}")
        self.weight = float(weight)
        self.iters = int(iters)
        self.step = 1.0 / (1.0 + 8.0 * self.weight / self.EPS)
        self.spec = f"tv:{self.weight:g}:{self.iters}"

    @classmethod
    def tv(cls, z: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        """Per-image isotropic total variation, smoothed TV_ε(z) by default (``eps=0``: the plain TV)."""
        eps = cls.EPS if eps is None else eps
        dx = F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
        return torch.sqrt(dx * dx + dy * dy + eps ** 2).flatten(1).sum(1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        eps2 = self.EPS ** 2
        for _ in range(self.iters):
            dx = F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1, 0, 0))  # zero at the last column (Neumann)
            dy = F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
            norm = torch.sqrt(dx * dx + dy * dy + eps2)
            px, py = dx / norm, dy / norm
            # ∂TV/∂z = −div(p): −p[i,j] + p[i,j−1] (x) and −p[i,j] + p[i−1,j] (y)
            grad_tv = (F.pad(px[..., :, :-1], (1, 0, 0, 0)) - px) + (F.pad(py[..., :-1, :], (0, 0, 1, 0)) - py)
            z = z - self.step * ((z - x) + self.weight * grad_tv)
        return z


class IdentityBlur(Blur):
    """g(x) = x: no blur. Coarse shifting then has nothing to pull towards (a control, and the gross break the
    regression check must catch)."""

    spec = "identity"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


class CallableBlur(Blur):
    """Wraps any user callable mapping an image batch to an image batch of the same shape."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], spec: str | None = None) -> None:
        self.fn = fn
        self.spec = spec or f"callable:{getattr(fn, '__qualname__', None) or type(fn).__name__}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fn(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise UserError(f"blur callable {self.spec} must return a tensor of shape {tuple(x.shape)}, "
                            f"got {getattr(y, 'shape', type(y).__name__)}")
        return y


def _valid_forms() -> str:
    return "; ".join(BLURS.values()) + "; or any callable on NCHW image batches"


def make_blur(spec: str | Blur | Callable[[torch.Tensor], torch.Tensor]) -> Blur:
    """Parse a blur spec ('median:3', 'gaussian:1.2', 'tv:0.05[:iters]') or wrap a callable."""
    if isinstance(spec, Blur):
        return spec
    if callable(spec) and not isinstance(spec, str):
        return CallableBlur(spec)
    if not isinstance(spec, str):
        raise UserError(f"blur must be a string spec or a callable, got {type(spec).__name__}; "
                        f"valid forms: {_valid_forms()}")
    name, _, args = spec.strip().lower().partition(":")
    parts = [a for a in args.split(":")] if args else []
    try:
        if name == "median" and len(parts) <= 1:
            return MedianBlur(int(parts[0]) if parts else 3)
        if name == "gaussian" and len(parts) <= 1:
            return GaussianBlur(float(parts[0]) if parts else 1.2)
        if name == "identity" and not parts:
            return IdentityBlur()
        if name == "tv" and len(parts) <= 2:
            return TVBlur(float(parts[0]) if parts else 0.05, int(parts[1]) if len(parts) > 1 else 50)
    except ValueError:
        pass
    raise UserError(f"unknown blur spec {spec!r}; valid forms: {_valid_forms()}")
