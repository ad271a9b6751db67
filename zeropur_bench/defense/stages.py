"""ZeroPur's stage math (arXiv 2406.03143): the losses and the two sign-gradient loops, as plain functions.

- :func:`coarse_shift`: coarse shifting, Alg. 1 (Eq. 7), ascent on the cosine d(f(x), f(g(x))).
- :func:`fine_align`: fine alignment, Alg. 2 (MILD, Eq. 8–11), ascent on the ILA projection (:func:`ila`) minus
  the authors' self-LPIPS (:func:`lpips_normalize`, :func:`safe_norm`).

``forward`` is the defended classifier's hooked forward: image batch → (logits, {stage: f_l(x)}, f(x)).
The hyperparameters are passed at each call, so a defense whose attributes change (``ila_weight`` during
calibration, ``surrogate`` inside an attack) runs with the current values.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..purifier import example_uniform

__all__ = ["Forward", "coarse_shift", "fine_align", "grad_var", "ila", "ila_reference", "lpips_normalize", "project",
           "random_start_noise", "safe_norm", "step_direction", "upcast"]

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]

# the random start's per-image noise: the purifier contract's counter-based generator (one per (seed, index))
random_start_noise = example_uniform


def project(x: torch.Tensor, center: torch.Tensor, eps: float) -> torch.Tensor:
    """Π onto the L∞ ball of radius eps around ``center`` and [0, 1] (Alg. 1–2; differentiable in both)."""
    return torch.minimum(torch.maximum(x, center - eps), center + eps).clamp(0.0, 1.0)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Low-precision (autocast) features to float32 for the losses; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def lpips_normalize(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Self-LPIPS embedding (authors' ``normalize_flatten_features``): unit channel norm per position, / sqrt(HW)."""
    out = []
    for f in feats:
        f = upcast(f)
        if f.dim() == 4:
            f = f / ((f.pow(2).sum(1, keepdim=True)).sqrt() + 1e-10) / math.sqrt(f.shape[2] * f.shape[3])
        out.append(f.flatten(1))
    return torch.cat(out, 1)


def safe_norm(d: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm that is smooth at 0 (fine alignment starts at x'' = x_adv, where LPIPS is exactly 0)."""
    return (d.pow(2).sum(1) + 1e-24).sqrt()


def step_direction(g: torch.Tensor, surrogate: str) -> torch.Tensor:
    """sign(g) (Alg. 1–2), or g/‖g‖_∞ per image for ``surrogate='normalized'`` (carries gradient)."""
    if surrogate == "sign":
        return torch.sign(g)
    scale = g.abs().flatten(1).amax(1)
    return g / scale.clamp_min(1e-30).view(-1, *[1] * (g.dim() - 1))


def grad_var(x: torch.Tensor, graph: bool) -> torch.Tensor:
    """The variable a step differentiates with respect to."""
    # In graph mode a fresh view makes autograd.grad(·, a) the partial derivative w.r.t. this use of x only
    # (targets built from x stay constants for the inner step but remain differentiable for the outer one).
    return x.view_as(x) if graph else x.detach().requires_grad_(True)


def ila_reference(n_layers: int) -> list[float]:
    """Per-layer reference scales for ``ila_norm='feature'`` (defense/calibration.py ``REFERENCE``)."""
    from .calibration import REFERENCE

    if len(REFERENCE["layers"]) == n_layers:
        return list(REFERENCE["layers"])
    return [REFERENCE["scale"] / n_layers] * n_layers


def ila(feats: dict[str, torch.Tensor], base: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
        layers: Sequence[str], reduce: str, norm_refs: Sequence[float] | None = None) -> torch.Tensor:
    """Per-sample ILA / MILD term, Eq. 8–11: Σ (or mean, ``reduce='mean'``) over ``layers`` of
    ⟨f_l(x'') − f_l(x_adv), f_l(x') − f_l(x_adv)⟩, with ``feats``, ``base``, ``ref`` the features of x'', x_adv, x'.
    ``norm_refs`` (``ila_norm='feature'``): each layer's term ÷ ‖f_l(x_adv)‖² × its reference scale."""
    terms = [((upcast(feats[l]) - upcast(base[l])).flatten(1) * (upcast(ref[l]) - upcast(base[l])).flatten(1)).sum(1)
             for l in layers]
    if norm_refs is not None:  # scale-free: per image and layer, ÷ ‖f_l(x_adv)‖² × the reference scale
        terms = [t * r / upcast(base[l]).flatten(1).pow(2).sum(1).clamp_min(1e-12)
                 for t, r, l in zip(terms, norm_refs, layers)]
    total = torch.stack(terms, 0).sum(0)
    return total / len(terms) if reduce == "mean" else total


def coarse_shift(forward: Forward, blur: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                 indices: torch.Tensor, *, eps: float, steps: int, alpha: float, momentum: float | None,
                 random_start: bool, blur_target_detached: bool, seed: int, surrogate: str, graph: bool,
                 on_iterate: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Coarse shifting, Alg. 1 (Eq. 7): x ← Π(x + α·sign ∇ d(f(x), f(g(x)))), g(x) recomputed every step
    (authors: + MI-FGSM momentum on the per-image L1-normalised gradient). ``on_iterate`` receives every
    iterate x_1 .. x_K (Fig. 3 plots them)."""
    if steps == 0:
        return x0
    x = x0
    if random_start:
        noise = random_start_noise(seed, indices, x0.shape[1:], x0.device).to(x0.dtype)
        x = (x0 + eps * (2 * noise - 1)).clamp(0.0, 1.0)
    if not graph:
        x = x.detach()
    acc = None
    shape = (-1,) + (1,) * (x0.dim() - 1)
    for _ in range(steps):
        a = grad_var(x, graph)
        if blur_target_detached:
            if graph:
                _, _, target = forward(blur(x))
            else:
                with torch.no_grad():
                    _, _, target = forward(blur(x))
            _, _, emb = forward(a)
        else:
            # gradient flows through both branches: one forward on the concatenated batch
            n = a.shape[0]
            _, _, both = forward(torch.cat([a, blur(a)]))
            emb, target = both[:n], both[n:]
        d = F.cosine_similarity(upcast(emb), upcast(target), dim=1)
        (grad,) = torch.autograd.grad(d.sum(), a, create_graph=graph)
        if momentum is not None:
            grad = grad / grad.abs().flatten(1).sum(1).clamp_min(1e-30).view(shape)
            acc = grad if acc is None else momentum * acc + grad
            grad = acc
        x = project(x + alpha * step_direction(grad, surrogate), x0, eps)
        if not graph:
            x = x.detach()
        if on_iterate is not None:
            on_iterate(x)
    return x


def fine_align(forward: Forward, x_adv: torch.Tensor, x_coarse: torch.Tensor, *, eps: float, steps: int,
               alpha: float, layers: Sequence[str], ila_weight: float, ila_reduce: str,
               norm_refs: Sequence[float] | None, lpips_weight: float, lpips_layers: Sequence[str],
               surrogate: str, graph: bool) -> torch.Tensor:
    """Fine alignment, Alg. 2 / MILD (Eq. 8–11), from x_adv with x' = ``x_coarse`` fixed: ascent on
    ila_weight · :func:`ila` − lpips_weight · self-LPIPS(x'', x_adv) inside the eps ball around x_adv."""
    if steps == 0:
        return x_adv
    n = x_adv.shape[0]
    ctx = contextlib.nullcontext() if graph else torch.no_grad()
    with ctx:  # targets f_l(x_adv), f_l(x'): constants, both in one forward
        _, feats, _ = forward(torch.cat([x_adv, x_coarse]))
        base = {k: v[:n] for k, v in feats.items()}
        ref = {k: v[n:] for k, v in feats.items()}
        base_lp = lpips_normalize([base[l] for l in lpips_layers]) if lpips_weight else None
    x = x_adv if graph else x_adv.detach()
    for k in range(steps):
        a = grad_var(x, graph)
        _, cur, _ = forward(a)
        obj = ila_weight * ila(cur, base, ref, layers, ila_reduce, norm_refs)
        # At k = 0, x'' = x_adv: LPIPS is 0 and non-differentiable (a cone); its subgradient is 0 (as with the
        # authors' norm). Skipping it also keeps float noise between batch shapes out of the first step.
        if lpips_weight and k > 0:
            d = lpips_normalize([cur[l] for l in lpips_layers]) - base_lp
            obj = obj - lpips_weight * safe_norm(d)
        (grad,) = torch.autograd.grad(obj.sum(), a, create_graph=graph)
        x = project(x + alpha * step_direction(grad, surrogate), x_adv, eps)
        if not graph:
            x = x.detach()
    return x
