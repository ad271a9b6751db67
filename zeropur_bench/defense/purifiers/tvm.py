"""Total variance minimisation with pixel dropout (Guo, Rana, Cissé & van der Maaten 2018, "Countering
Adversarial Images using Input Transformations"): keep a random half of the pixels, then find the image
closest to the kept pixels with the least total variation,

    z* = argmin_z  Σ_kept ‖z − x‖² + λ_TV · Σ (|∂_h z| + |∂_v z|)        (keep 0.5, λ_TV 0.03)

per channel, with one Bernoulli(keep) mask per pixel shared by the channels: their solver's objective and settings
(Athalye et al.'s port of it: split Bregman, data weight 2/λ_TV, anisotropic TV, keep_prob 0.5, lambda_tv 0.03).

The solver is written here because no library solves a masked TV problem (scikit-image's Bregman has no mask; Guo
et al. patched it; kornia only evaluates TV): Chambolle & Pock's primal-dual iteration, batched over images, from
z = x. Guo et al.'s Gauss–Seidel sweep is sequential over pixels and stops when an iteration changes the image by
less than 1e-3 RMS (about 14 sweeps on CIFAR-10); this reaches a lower objective of the same problem.

Guo et al. evaluated on ImageNet only; λ_TV and the keep probability are theirs, unscaled (the objective is per
pixel).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...defenses import register_defense
from ...params import Param
from ...purifier import Purifier


def _grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero past the last column/row (Neumann boundary)."""
    return (F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1)), F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1)))


def _div(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """−(the adjoint of :func:`_grad`)."""
    qx, qy = px[..., :, :-1], py[..., :-1, :]
    return F.pad(qx, (0, 1)) - F.pad(qx, (1, 0)) + F.pad(qy, (0, 0, 0, 1)) - F.pad(qy, (0, 0, 1, 0))


def masked_tv_objective(z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """Per image: Σ mask·(z − x)² + weight·anisotropic TV(z) (the problem :func:`masked_tv` solves)."""
    gx, gy = _grad(z)
    return (mask * (z - x) ** 2).flatten(1).sum(1) + weight * (gx.abs() + gy.abs()).flatten(1).sum(1)


# Images per block of the solver on a CPU when no gradient is taken: each iteration is a dozen elementwise passes over
# its tensors, so the speed is memory bandwidth; blocks whose tensors stay in cache about halve the time per image
# (blocks of 32 vs 512 images, 200 iterations, one core of a 2-core EPYC, beside other jobs: a ratio, not a timing).
# A GPU gets the whole batch (more blocks there would be more kernel launches). The images are independent: the same
# result either way.
SOLVER_BLOCK = 32


def masked_tv(x: torch.Tensor, mask: torch.Tensor, weight: float, iters: int, block: int | None = None
              ) -> torch.Tensor:
    """argmin_z Σ mask·(z − x)² + weight·TV(z), by ``iters`` Chambolle–Pock steps (step sizes τ = σ = 1/√8, the
    inverse norm of the gradient operator) from z = x; differentiable (the unrolled iterations). ``block``: images
    solved at a time when no gradient is taken (default :data:`SOLVER_BLOCK` on a CPU, the whole batch elsewhere)."""
    block = block or (SOLVER_BLOCK if x.device.type == "cpu" else len(x))
    if (len(x) > block and len(mask) == len(x)
            and not (torch.is_grad_enabled() and (x.requires_grad or mask.requires_grad))):
        return torch.cat([masked_tv(x[i:i + block], mask[i:i + block], weight, iters, block)
                          for i in range(0, len(x), block)])
    tau = sigma = 1.0 / math.sqrt(8.0)
    mu = 2.0 / weight  # the data term (μ/2)·mask·(z − x)² beside TV(z)
    fidelity = tau * mu * mask
    pulled, inverse = fidelity * x, 1 / (1 + fidelity)  # the proximal step's constants, once
    u = bar = x
    px = py = torch.zeros_like(x)
    for _ in range(iters):
        gx, gy = _grad(bar)
        px, py = (px + sigma * gx).clamp(-1, 1), (py + sigma * gy).clamp(-1, 1)
        new = (u + tau * _div(px, py) + pulled) * inverse
        u, bar = new, 2 * new - u
    return u


@register_defense("tvm")
class TVMinimization(Purifier):
    """TV minimisation with pixel dropout (Guo et al. 2018; keep probability 0.5, λ_TV 0.03).

    Randomized: the dropout mask is drawn per example from (seed, dataset index) (:meth:`Purifier.example_uniform`),
    so an example keeps the same pixels in any batch, shard or resume, and every resubmission (estimator, EOT) draws
    a fresh mask from its own stream. Offers BPDA (the default, as Athalye et al. broke it) and the full gradient
    through the unrolled solver for the drawn mask."""

    randomized = True
    option_specs = {"keep": Param("number", low=0, high=1, open_low=True),
                    "weight": Param("number", low=0, open_low=True), "iters": Param("int", low=1)}

    def __init__(self, classifier: nn.Module, keep: float = 0.5, weight: float = 0.03, iters: int = 200,
                 seed: int = 0) -> None:
        super().__init__(classifier, seed)
        self.keep, self.weight, self.iters = float(keep), float(weight), int(iters)

    def mask(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The kept pixels (1) of each image, shared by its channels: Bernoulli(keep) per pixel."""
        u = self.example_uniform(indices, x.shape[-2:], x.device, n=len(x))
        return (u < self.keep).to(x.dtype).unsqueeze(1)

    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return masked_tv(x, self.mask(x, indices), self.weight, self.iters).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"keep={self.keep:g}, weight={self.weight:g}, iters={self.iters}"
