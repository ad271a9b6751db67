"""Training augmentations of App. A.1 / Table 8: 'vanilla', 'standard', 'strong', applied to whole batches.

Every random parameter is drawn *per sample* from an explicit ``torch.Generator``, so a batch is augmented in
one vectorised pass and a run is reproducible from ``(seed, epoch)``. The generator is a CPU one: the
parameters (a few numbers per sample) are drawn on the CPU in the same order whatever the batch's device and only
then moved there, where the image operations run, so a batch on a GPU gets exactly the CPU run's parameters.
Written here rather than taken from torchvision because ``torchvision.transforms.v2`` draws one set of random
parameters per call: applied to a batched tensor, every image of the batch would get the same crop, flip and
jitter. The deterministic kernels (equalisation) are torchvision's own, applied to the randomly selected
samples only.

Choices the paper does not state (Table 8 only lists the operations), all recorded in checkpoints via
:func:`aug_params`:

* RandomResizedCrop ``scale=(0.35, 1)`` instead of torchvision's ImageNet default ``(0.08, 1)``: on 32×32 images a
  crop of 8 % of the area keeps ~9×9 pixels, which a small CIFAR ResNet-20 cannot learn from well; 0.35 keeps the
  paper's operation (a resized crop, unlike the pad-and-crop the shared public weights used) at a strength
  comparable to pad-4-and-crop. ``ratio=(3/4, 4/3)`` is torchvision's default. Crop boxes are continuous
  (sub-pixel) and resampled bilinearly in one ``grid_sample`` together with the flip.
* 'strong' follows the SimCLR / BYOL recipe: colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8 (operations in a
  random order per batch), grayscale p=0.2, gaussian blur 3×3 with sigma ~ U(0.1, 2) p=0.2, solarisation at 0.5
  p=0.2, equalisation p=0.2, on top of the standard crop + flip.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError

AUG_PARAMS: dict[str, dict[str, Any]] = {
    "vanilla": {},
    "standard": {
        "random_resized_crop": {"size": 32, "scale": [0.35, 1.0], "ratio": [3 / 4, 4 / 3],
                                "interpolation": "bilinear", "subpixel": True},
        "horizontal_flip": {"p": 0.5},
    },
}
AUG_PARAMS["strong"] = {
    **AUG_PARAMS["standard"],
    "color_jitter": {"p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1,
                     "order": "random permutation per batch"},
    "grayscale": {"p": 0.2},
    "gaussian_blur": {"p": 0.2, "kernel_size": 3, "sigma": [0.1, 2.0]},
    "solarize": {"p": 0.2, "threshold": 0.5},
    "equalize": {"p": 0.2},
}
AUGS = tuple(AUG_PARAMS)


def aug_params(name: str) -> dict[str, Any]:
    """The exact parameters of augmentation ``name`` (JSON-able; stored in checkpoints)."""
    check_aug(name)
    return {"name": name, **{k: dict(v) for k, v in AUG_PARAMS[name].items()}}


def check_aug(name: str) -> None:
    if name not in AUG_PARAMS:
        raise UserError(f"unknown augmentation '{name}'; known: {', '.join(AUGS)}")


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU-drawn parameter tensor on ``device`` (itself on the CPU). To a GPU through pinned memory without
    blocking: a plain ``.to('cuda')`` from pageable memory waits for every queued kernel (a host-device sync)."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _bernoulli(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def resized_crop_flip(x: torch.Tensor, g: torch.Generator, scale: tuple[float, float] = (0.35, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5, tries: int = 10) -> torch.Tensor:
    """Per-sample RandomResizedCrop (torchvision's sampling: area ~ U(scale), log-ratio ~ U(log ratio), first of
    ``tries`` boxes that fits, else the whole image) and horizontal flip, as one bilinear ``grid_sample``."""
    b, _, h, w = x.shape
    area = _uniform(b * tries, *scale, g).view(b, tries)
    logr = _uniform(b * tries, math.log(ratio[0]), math.log(ratio[1]), g).view(b, tries)
    ar = torch.exp(logr)
    cw = torch.sqrt(area * ar)  # crop width / image width (fractions)
    ch = torch.sqrt(area / ar)
    ok = (cw <= 1) & (ch <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1))
    pick = first.clamp(min=0).unsqueeze(1)
    cw = torch.where(first >= 0, cw.gather(1, pick).squeeze(1), torch.ones(b))
    ch = torch.where(first >= 0, ch.gather(1, pick).squeeze(1), torch.ones(b))
    # box position: top-left uniform over the positions that keep the box inside the image
    left = torch.rand(b, generator=g) * (1 - cw)
    top = torch.rand(b, generator=g) * (1 - ch)
    flip = _bernoulli(b, flip_p, g)
    cx = (left + cw / 2) * 2 - 1  # box centre in grid coordinates [-1, 1]
    cy = (top + ch / 2) * 2 - 1
    sx = torch.where(flip, -cw, cw)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = ch, cy
    grid = F.affine_grid(_on(theta, x.device).to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma as torchvision's rgb_to_grayscale, keeping a channel dimension of 1."""
    return (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (f.view(-1, 1, 1, 1) * a + (1 - f.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, gg, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = delta.clamp(min=1e-12)
    rc, gc, bc = (maxc - r) / d, (maxc - gg) / d, (maxc - b) / d
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == gg, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack((hue, s, maxc), 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack((torch.stack((v, q, p, p, t, v), 1), torch.stack((t, v, v, q, p, p), 1),
                         torch.stack((p, p, t, v, v, q), 1)), 1)  # B×3(rgb)×6×H×W
    return table.gather(2, i.unsqueeze(1).unsqueeze(1).expand(-1, 3, 1, -1, -1)).squeeze(2)


def color_jitter(x: torch.Tensor, g: torch.Generator, brightness: float, contrast: float, saturation: float,
                 hue: float) -> torch.Tensor:
    """torchvision ColorJitter with per-sample factors; the order of the four operations is drawn per batch."""
    b = x.shape[0]
    fb = _uniform(b, max(0.0, 1 - brightness), 1 + brightness, g)
    fc = _uniform(b, max(0.0, 1 - contrast), 1 + contrast, g)
    fs = _uniform(b, max(0.0, 1 - saturation), 1 + saturation, g)
    fh = _uniform(b, -hue, hue, g)
    fb, fc, fs, fh = (_on(f, x.device) for f in (fb, fc, fs, fh))
    for op in torch.randperm(4, generator=g).tolist():
        if op == 0:
            x = (x * fb.view(-1, 1, 1, 1)).clamp(0, 1)
        elif op == 1:
            x = _blend(x, _gray(x).mean((1, 2, 3), keepdim=True), fc)
        elif op == 2:
            x = _blend(x, _gray(x), fs)
        else:
            hsv = _rgb_to_hsv(x)
            hsv = torch.cat(((hsv[:, :1] + fh.view(-1, 1, 1, 1)) % 1.0, hsv[:, 1:]), 1)
            x = _hsv_to_rgb(hsv).clamp(0, 1)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Separable gaussian blur with one sigma per sample (grouped convolution, reflect padding as torchvision)."""
    b, c, h, w = x.shape
    r = kernel_size // 2
    d = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(d.view(1, -1) ** 2) / (2 * _on(sigma, x.device).view(-1, 1).to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b*c)×k
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's (batched, deterministic) histogram equalisation on the uint8 image."""
    from torchvision.transforms.v2 import functional as TF

    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    return TF.equalize(u8).to(x.dtype) / 255


def augment(x: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch ``x`` (float [0, 1], N×3×H×W) with recipe ``name``; every sample gets its own random
    parameters, all drawn from ``generator`` (Table 8; parameters in :data:`AUG_PARAMS`)."""
    check_aug(name)
    if name == "vanilla":
        return x
    p = AUG_PARAMS[name]
    g = generator
    rrc = p["random_resized_crop"]
    x = resized_crop_flip(x, g, tuple(rrc["scale"]), tuple(rrc["ratio"]), p["horizontal_flip"]["p"])
    if name == "standard":
        return x.clamp(0, 1)
    b = x.shape[0]

    def where(mask: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(_on(mask, a.device).view(-1, 1, 1, 1), a, y)

    cj = p["color_jitter"]
    m = _bernoulli(b, cj["p"], g)
    x = where(m, color_jitter(x.clamp(0, 1), g, cj["brightness"], cj["contrast"], cj["saturation"], cj["hue"]), x)
    m = _bernoulli(b, p["grayscale"]["p"], g)
    x = where(m, _gray(x).expand_as(x), x)
    gb = p["gaussian_blur"]
    m = _bernoulli(b, gb["p"], g)
    sigma = _uniform(b, *gb["sigma"], g)
    x = where(m, gaussian_blur(x, sigma, gb["kernel_size"]), x)
    m = _bernoulli(b, p["solarize"]["p"], g)
    thr = p["solarize"]["threshold"]
    x = where(m, torch.where(x >= thr, 1 - x, x), x)
    m = _bernoulli(b, p["equalize"]["p"], g)
    if m.any():  # a CPU mask: no device sync; indices (not the mask) on the device, so no sync there either
        idx = _on(m.nonzero().squeeze(1), x.device)
        x = x.clone()
        x[idx] = equalize(x[idx].clamp(0, 1))
    return x.clamp(0, 1)
