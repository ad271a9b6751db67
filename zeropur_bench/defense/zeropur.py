"""ZeroPur (arXiv 2406.03143): zero-shot adversarial purification as an ``nn.Module``.

Two stages on the classifier's own features:

- Coarse shifting (Alg. 1, Eq. 7): sign-gradient ascent on the cosine similarity d(f(x), f(g(x))) between the
  embedding f of the image and of its blurred copy g(x), inside the L∞ ball of radius eps_c around the input and
  [0, 1]; g(x) is recomputed every step.
- Fine alignment (Alg. 2, MILD, Eq. 8–11): starting again from the input x_adv, with the coarse result x' fixed,
  sign-gradient ascent on the mean over layers S of ⟨f_l(x'') − f_l(x_adv), f_l(x') − f_l(x_adv)⟩ inside the
  eps_f ball around x_adv and [0, 1].

Two profiles (see ``PROFILES``): ``authors`` reproduces the authors' public code (MI-FGSM momentum, detached blur
target, 50 fine steps, ILA on the last two stages + self-LPIPS), ``paper`` follows the paper's text (plain sign
steps, random start, α_c = 2/255, 10 fine steps, MILD over the last three stages, no LPIPS).

Every loss is a per-sample quantity summed over the batch, so the sign steps of one image never depend on the
other images in the batch (the authors average over the batch, which only rescales the gradient: same signs).
The authors' relative weight of ILA (1e-4, ILA summed over layers) and self-LPIPS (1) per sample is kept.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .blur import Blur, make_blur
from .calibration import resolve_calibration
from .coarse_cache import CoarseCache
from .layers import FeatureTap, LayerSpec, detect_layers

__all__ = ["ZeroPur", "PROFILES", "GRAD_MODES", "CoarseCache", "load_defended_model"]

GRAD_MODES = ("bpda", "full", "none")
SURROGATES = ("sign", "normalized")

# None for a step size means eps / steps (Alg. 2 line 2; the authors' code also for coarse shifting).
PROFILES: dict[str, dict[str, Any]] = {
    "authors": {  # erhul/ZeroPur zeropur.py (see docs/method.md)
        "coarse_steps": 10, "coarse_eps": 10 / 255, "coarse_step": None,
        "momentum": 1.0, "random_start": False, "blur_target_detached": True,
        "fine_steps": 50, "fine_eps": 10 / 255, "fine_step": None,
        "fine_layers": 2, "ila_weight": 1e-4, "ila_reduce": "sum",
        "lpips_weight": 1.0, "lpips_layers": "all",
    },
    "paper": {  # Sec. 3.2–3.3, Alg. 1–2, Table 11
        "coarse_steps": 10, "coarse_eps": 10 / 255, "coarse_step": 2 / 255,
        # Detached blur target as in the authors' code: the literal ∇d through both branches (False) lets the
        # step make g(x) agree with x instead of moving x (PGD-20 transfer, ResNet-20, median:3, 200 images:
        # C 0.5% vs 51.5% detached).
        "momentum": None, "random_start": True, "blur_target_detached": True,
        "fine_steps": 10, "fine_eps": 10 / 255, "fine_step": None,
        "fine_layers": 3, "ila_weight": 1.0, "ila_reduce": "mean",
        "lpips_weight": 0.0, "lpips_layers": "all",
    },
}
# The authors' profile with the ILA weight fitted to the classifier's feature scale on clean training images
# (defense/calibration.py): None here means "from the calibration", never a silent 1e-4.
PROFILES["calibrated"] = {**PROFILES["authors"], "ila_weight": None}
ILA_NORMS = ("none", "feature")
_OPTIONS = sorted(set(PROFILES["authors"]) | {"embedding", "surrogate", "dtype", "channels_last", "ila_norm"})

_GOLDEN = 0x9E3779B97F4A7C15


def _i64(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic)."""
    z = (z ^ _lsr(z, 30)) * _i64(0xBF58476D1CE4E5B9)
    z = (z ^ _lsr(z, 27)) * _i64(0x94D049BB133111EB)
    return z ^ _lsr(z, 31)


def random_start_noise(seed: int, indices: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise of ``(len(indices), *shape)``; image i's noise depends only on (seed, indices[i]).

    A counter-based generator (splitmix64) instead of one ``torch.Generator`` per image: vectorised (no Python
    loop over images), batch independent, and identical on CPU and CUDA.
    """
    n_pix = math.prod(shape)
    idx = indices.to(device=device, dtype=torch.int64).view(-1, 1)
    key = _mix64(_mix64(torch.full_like(idx, _i64((seed * _GOLDEN + _GOLDEN) % (1 << 64)))) ^ idx)
    counter = torch.arange(1, n_pix + 1, device=device, dtype=torch.int64).view(1, -1) * _i64(_GOLDEN)
    bits = _lsr(_mix64(key + counter), 40)  # top 24 bits
    return (bits.to(torch.float32) / float(1 << 24)).view(len(idx), *shape)


class _RaiseOnBackward(torch.autograd.Function):
    """Identity on the logits that refuses to backpropagate (grad_mode='none')."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        raise UserError("ZeroPur grad_mode='none' gives no gradient through purification; set "
                        "defense.grad_mode = 'bpda' (straight-through) or 'full' (through the unrolled steps)")


def _project(x: torch.Tensor, center: torch.Tensor, eps: float) -> torch.Tensor:
    """Π onto the L∞ ball of radius eps around ``center`` and [0, 1] (differentiable in both arguments)."""
    return torch.minimum(torch.maximum(x, center - eps), center + eps).clamp(0.0, 1.0)


def _up(t: torch.Tensor) -> torch.Tensor:
    """Low-precision (autocast) features to float32 for the losses; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _lpips_normalize(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Self-LPIPS embedding (authors' ``normalize_flatten_features``): unit channel norm per position, / sqrt(HW)."""
    out = []
    for f in feats:
        f = _up(f)
        if f.dim() == 4:
            f = f / ((f.pow(2).sum(1, keepdim=True)).sqrt() + 1e-10) / math.sqrt(f.shape[2] * f.shape[3])
        out.append(f.flatten(1))
    return torch.cat(out, 1)


def _safe_norm(d: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm that is smooth at 0 (fine alignment starts at x'' = x_adv, where LPIPS is exactly 0)."""
    return (d.pow(2).sum(1) + 1e-24).sqrt()


_NUMBER = ("coarse_eps", "fine_eps", "ila_weight", "lpips_weight")
_NUMBER_OR_NONE = ("coarse_step", "fine_step", "momentum")
_BOOL = ("random_start", "blur_target_detached", "channels_last")


def _check_option_types(opts: dict[str, Any]) -> None:
    """One clear error per wrongly typed option (``--zp coarse_eps=abc``), before any arithmetic on it."""
    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

    for k, v in opts.items():
        if k in _NUMBER and not is_num(v):
            raise UserError(f"ZeroPur option {k} must be a number (e.g. {k}=8/255), got {v!r}")
        if k in _NUMBER_OR_NONE and v is not None and not is_num(v):
            raise UserError(f"ZeroPur option {k} must be a number or none, got {v!r}")
        if k in _BOOL and not isinstance(v, bool):
            raise UserError(f"ZeroPur option {k} must be true or false, got {v!r}")
        if k in ("fine_layers", "lpips_layers") and not (
                (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)
                or (isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v))):
            raise UserError(f"ZeroPur option {k} must be a number of last stages, 'all', or module names, got {v!r}")
        if k == "embedding" and v is not None and not isinstance(v, str):
            raise UserError(f"ZeroPur option embedding must be a module name, got {v!r}")


class ZeroPur(nn.Module):
    """ZeroPur purification in front of ``classifier`` (any nn.Module mapping [0, 1] images to logits).

    ``defense.purify(x)`` returns purified images; ``defense(x)`` returns ``classifier(purify(x))`` with the
    gradient mode ``grad_mode`` applied: ``'bpda'`` (straight-through identity: ``x + (purify(x) − x).detach()``),
    ``'full'`` (backpropagate through the unrolled steps, ``surrogate='normalized'`` replaces sign(g) by
    g/‖g‖_∞ so the steps carry gradient) or ``'none'`` (backward raises).

    Args:
        classifier: the model; kept in eval mode, its parameters are never given gradients.
        profile: ``'authors'`` (default), ``'paper'`` or ``'calibrated'`` (the authors' settings with the ILA
            weight fitted to this classifier's feature scale on clean training images; see
            :mod:`zeropur_bench.defense.calibration`); see ``PROFILES``.
        stages: ``'c'`` (coarse shifting only) or ``'cf'`` (coarse shifting + fine alignment).
        blur: blur spec (``'median:3'``, ``'gaussian:1.2'``, ``'tv:0.05'``) or callable; see ``make_blur``.
        layers: stage module names (forward order) to use instead of auto-detection.
        grad_mode: ``'bpda'``, ``'full'`` or ``'none'``.
        seed: seed of the random start (per image, from (seed, image index)).
        calibration: for ``profile='calibrated'``: a :class:`~zeropur_bench.defense.calibration.Calibration`,
            its dict, or a calibration file. None: the shipped calibration found by the sha256 of the
            classifier's weights (any other module must pass one; the weight never falls back to 1e-4).
        coarse_cache: a :class:`CoarseCache` shared by variants whose coarse stage is the same (exact reuse).
        **overrides: any key of ``PROFILES[profile]`` plus ``embedding`` (module whose input is f),
            ``surrogate`` ('sign' | 'normalized'), ``dtype`` ('fp32' | 'bf16' autocast), ``channels_last``,
            ``ila_norm`` ('none' | 'feature': each layer's ILA term ÷ ‖f_l(x_adv)‖², scale-free).
    """

    def __init__(self, classifier: nn.Module, profile: str = "authors", stages: str = "cf",
                 blur: str | Callable[[torch.Tensor], torch.Tensor] = "median:3",
                 layers: Sequence[str] | None = None, grad_mode: str = "bpda", seed: int = 0,
                 calibration: Any = None, coarse_cache: CoarseCache | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise UserError(f"classifier must be a torch nn.Module, got {type(classifier).__name__}")
        if profile not in PROFILES:
            raise UserError(f"unknown ZeroPur profile {profile!r}; choose one of {sorted(PROFILES)}")
        if stages not in ("c", "cf"):
            raise UserError(f"stages must be 'c' (coarse shifting) or 'cf' (coarse + fine), got {stages!r}")
        unknown = sorted(set(overrides) - set(_OPTIONS))
        if unknown:
            raise UserError(f"unknown ZeroPur option(s) {unknown}; valid options: {', '.join(_OPTIONS)}")
        _check_option_types(overrides)
        self.classifier = classifier.eval()
        self.profile = profile
        self.stages = stages
        self.blur: Blur = make_blur(blur)
        self.seed = int(seed)
        opts = dict(PROFILES[profile])
        opts.update({k: v for k, v in overrides.items() if k in PROFILES[profile]})
        self.calibration = None
        if profile == "calibrated":
            if "ila_weight" in overrides:
                raise UserError("profile 'calibrated' fits ila_weight itself; to set it by hand use "
                                f"profile='authors', ila_weight={overrides['ila_weight']!r}")
            self.calibration = resolve_calibration(calibration, classifier, self.blur.spec)
            opts["ila_weight"] = self.calibration.ila_weight
        elif calibration is not None:
            raise UserError(f"calibration= is for profile='calibrated' (this defense uses profile={profile!r})")
        self.ila_norm = str(overrides.get("ila_norm", "none"))
        if self.ila_norm not in ILA_NORMS:
            raise UserError(f"ila_norm must be one of {ILA_NORMS}, got {self.ila_norm!r}")
        self.coarse_cache = coarse_cache
        self.surrogate = overrides.get("surrogate", "sign")
        if self.surrogate not in SURROGATES:
            raise UserError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        self.dtype = str(overrides.get("dtype", "fp32")).lower()
        if self.dtype not in ("fp32", "bf16"):
            raise UserError(f"dtype must be 'fp32' or 'bf16', got {self.dtype!r}")
        self.channels_last = bool(overrides.get("channels_last", False))
        if self.channels_last:
            self.classifier.to(memory_format=torch.channels_last)
        self.grad_mode = grad_mode

        for key in ("coarse_steps", "fine_steps"):
            if not isinstance(opts[key], int) or opts[key] < 0:
                raise UserError(f"{key} must be an integer >= 0, got {opts[key]!r}")
        for key in ("coarse_eps", "fine_eps", "coarse_step", "fine_step"):
            if opts[key] is not None and not (float(opts[key]) >= 0 and math.isfinite(float(opts[key]))):
                raise UserError(f"{key} must be a finite number >= 0, got {opts[key]!r}")
        if opts["ila_reduce"] not in ("sum", "mean"):
            raise UserError(f"ila_reduce must be 'sum' or 'mean', got {opts['ila_reduce']!r}")
        self.coarse_steps: int = opts["coarse_steps"]
        self.coarse_eps = float(opts["coarse_eps"])
        self.coarse_step = float(opts["coarse_step"]) if opts["coarse_step"] is not None else \
            (self.coarse_eps / self.coarse_steps if self.coarse_steps else 0.0)
        self.momentum = float(opts["momentum"]) if opts["momentum"] else None
        self.random_start = bool(opts["random_start"])
        self.blur_target_detached = bool(opts["blur_target_detached"])
        self.fine_steps: int = opts["fine_steps"]
        self.fine_eps = float(opts["fine_eps"])
        self.fine_step = float(opts["fine_step"]) if opts["fine_step"] is not None else \
            (self.fine_eps / self.fine_steps if self.fine_steps else 0.0)
        self.ila_weight = float(opts["ila_weight"])
        self.ila_reduce: str = opts["ila_reduce"]
        self.lpips_weight = float(opts["lpips_weight"])

        self.layer_spec: LayerSpec = detect_layers(classifier, layers, overrides.get("embedding"))
        self.fine_layers = self._resolve_layers(opts["fine_layers"], "fine_layers")
        self.lpips_layers = self._resolve_layers(opts["lpips_layers"], "lpips_layers")
        hooked = list(self.layer_spec.stages) + [n for n in self.fine_layers + self.lpips_layers
                                                 if n not in self.layer_spec.stages]
        self._tap = FeatureTap(classifier, self.layer_spec, hooked)

    # ------------------------------------------------------------------ configuration
    def _resolve_layers(self, value: Any, key: str) -> tuple[str, ...]:
        stages = self.layer_spec.stages
        if value == "all":
            return tuple(stages)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise UserError(f"{key} must be >= 1 (number of last stages) or a list of module names")
            return tuple(stages[-value:])  # more than there are: all of them (3-stage CIFAR ResNets)
        if isinstance(value, str):
            value = [value]
        names = dict(self.classifier.named_modules())
        value = list(value)
        missing = [v for v in value if v not in names]
        if missing or not value:
            raise UserError(f"{key}: module(s) {missing or value} not found; detected stages: {list(stages)}")
        return tuple(value)

    @property
    def grad_mode(self) -> str:
        return self._grad_mode

    @grad_mode.setter
    def grad_mode(self, mode: str) -> None:
        if mode not in GRAD_MODES:
            raise UserError(f"grad_mode must be one of {GRAD_MODES}, got {mode!r}")
        self._grad_mode = mode

    def config(self) -> dict[str, Any]:
        """Every hyperparameter actually used (JSON-able); records store it."""
        extra: dict[str, Any] = {}
        if self.calibration is not None:  # resolved weight and its source: part of the comparison key
            extra["calibration"] = self.calibration.short()
        if self.ila_norm != "none":
            extra["ila_norm"] = self.ila_norm
        return {
            **extra,
            "method": "zeropur", "profile": self.profile, "stages": self.stages, "blur": self.blur.spec,
            "grad_mode": self.grad_mode, "surrogate": self.surrogate, "seed": self.seed, "dtype": self.dtype,
            "channels_last": self.channels_last,
            "coarse_steps": self.coarse_steps, "coarse_eps": self.coarse_eps, "coarse_step": self.coarse_step,
            "momentum": self.momentum, "random_start": self.random_start,
            "blur_target_detached": self.blur_target_detached,
            "fine_steps": self.fine_steps if self.stages == "cf" else 0, "fine_eps": self.fine_eps,
            "fine_step": self.fine_step, "ila_weight": self.ila_weight, "ila_reduce": self.ila_reduce,
            "lpips_weight": self.lpips_weight,
            "layers": {**self.layer_spec.to_dict(), "fine": list(self.fine_layers),
                       "lpips": list(self.lpips_layers) if self.lpips_weight else []},
        }

    describe = config

    def extra_repr(self) -> str:
        return f"profile={self.profile!r}, stages={self.stages!r}, blur={self.blur.spec!r}, grad_mode={self.grad_mode!r}"

    def train(self, mode: bool = True) -> "ZeroPur":
        """Set the module's flag only: the classifier always stays in eval mode (no batch statistics)."""
        self.training = mode
        self.classifier.eval()
        return self

    # ------------------------------------------------------------------ helpers
    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x.device):
            return self._tap.run(x)

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise UserError(f"ZeroPur expects a float image batch of shape (N, C, H, W) in [0, 1], got "
                            f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
        if getattr(self, "_trusted", 0):
            return  # inside an attack's loop: its inputs were checked once and stay in [0, 1] by projection
        with torch.no_grad():
            lo, hi = torch.aminmax(x.detach())
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise UserError("ZeroPur input contains NaN or inf pixels; pass images in [0, 1]")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise UserError(f"ZeroPur input pixels must lie in [0, 1], got range [{lo.item():.4g}, {hi.item():.4g}]"
                            "; pass unnormalised images (normalisation belongs inside the classifier)")

    @contextlib.contextmanager
    def trusted_inputs(self) -> Iterator[None]:
        """Skip the per-call pixel-range check (a host-device sync on a GPU) while an attack, which validated its
        input once and projects every iterate into [0, 1], calls the defense at every step."""
        self._trusted = getattr(self, "_trusted", 0) + 1
        try:
            yield
        finally:
            self._trusted -= 1

    @contextlib.contextmanager
    def _session(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Grad enabled, inference mode off (input cloned out of it), hooks on, classifier in eval."""
        if self.classifier.training:
            self.classifier.eval()
        if torch.is_inference_mode_enabled() or x.is_inference():
            with torch.inference_mode(False):
                x = x.clone()
                with torch.enable_grad(), self._tap:
                    yield x
        else:
            with torch.enable_grad(), self._tap:
                yield x

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        if self.surrogate == "sign":
            return torch.sign(g)
        scale = g.abs().flatten(1).amax(1)
        return g / scale.clamp_min(1e-30).view(-1, *[1] * (g.dim() - 1))

    @staticmethod
    def _grad_var(x: torch.Tensor, graph: bool) -> torch.Tensor:
        # In graph mode a fresh view makes autograd.grad(·, a) the partial derivative w.r.t. this use of x only
        # (targets built from x stay constants for the inner step but remain differentiable for the outer one).
        return x.view_as(x) if graph else x.detach().requires_grad_(True)

    def _ila_reference(self) -> list[float]:
        from .calibration import REFERENCE

        if len(REFERENCE["layers"]) == len(self.fine_layers):
            return list(REFERENCE["layers"])
        return [REFERENCE["scale"] / len(self.fine_layers)] * len(self.fine_layers)

    def _coarse_key(self) -> tuple:
        """What the coarse stage's result depends on, besides the input and its indices."""
        return (id(self.classifier), self.blur.spec, self.coarse_steps, self.coarse_eps, self.coarse_step,
                self.momentum, self.random_start, self.blur_target_detached, self.seed, self.dtype,
                self.channels_last, self.surrogate, self.layer_spec)

    # ------------------------------------------------------------------ objectives (functions of x)
    def stage_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs f_l(x) of every hooked stage, plus ``'embedding'`` = f(x) (differentiable if x requires grad)."""
        self._check_input(x)
        with self._tap:
            _, feats, emb = self._forward_tap(x)
        return {**feats, "embedding": emb}

    def coarse_objective(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample cosine d(f(x), f(g(x))) (Eq. 7), differentiable through both x and the blur branch."""
        self._check_input(x)
        n = x.shape[0]
        with self._tap:
            _, _, emb = self._forward_tap(torch.cat([x, self.blur(x)]))
        return F.cosine_similarity(_up(emb[:n]), _up(emb[n:]), dim=1)

    def _ila(self, feats: dict[str, torch.Tensor], base: dict[str, torch.Tensor],
             ref: dict[str, torch.Tensor], reduce: str) -> torch.Tensor:
        terms = [((_up(feats[l]) - _up(base[l])).flatten(1) * (_up(ref[l]) - _up(base[l])).flatten(1)).sum(1)
                 for l in self.fine_layers]
        if self.ila_norm == "feature":  # scale-free: per image and layer, ÷ ‖f_l(x_adv)‖² × the reference scale
            refs = self._ila_reference()
            terms = [t * r / _up(base[l]).flatten(1).pow(2).sum(1).clamp_min(1e-12)
                     for t, r, l in zip(terms, refs, self.fine_layers)]
        total = torch.stack(terms, 0).sum(0)
        return total / len(terms) if reduce == "mean" else total

    def fine_objective(self, x2: torch.Tensor, x_adv: torch.Tensor, x_coarse: torch.Tensor,
                       full: bool = False) -> torch.Tensor:
        """Per-sample MILD(x_adv, x', x'') (Eq. 11: mean over layers S of ⟨Δu''_l, Δu'_l⟩, Eq. 8–10).

        ``full=True`` returns the exact per-sample quantity fine alignment maximises under this profile:
        ila_weight · (ILA summed or averaged over S) − lpips_weight · self-LPIPS(x'', x_adv).
        """
        for t in (x2, x_adv, x_coarse):
            self._check_input(t)
        n = x2.shape[0]
        with self._tap:
            _, feats, _ = self._forward_tap(torch.cat([x2, x_adv, x_coarse]))
        cur = {k: v[:n] for k, v in feats.items()}
        base = {k: v[n:2 * n] for k, v in feats.items()}
        ref = {k: v[2 * n:] for k, v in feats.items()}
        if not full:
            return self._ila(cur, base, ref, "mean")
        obj = self.ila_weight * self._ila(cur, base, ref, self.ila_reduce)
        if self.lpips_weight:
            d = _lpips_normalize([cur[l] for l in self.lpips_layers]) - _lpips_normalize([base[l] for l in self.lpips_layers])
            obj = obj - self.lpips_weight * _safe_norm(d)
        return obj

    # ------------------------------------------------------------------ the two stages
    def _coarse(self, x0: torch.Tensor, indices: torch.Tensor, graph: bool,
                on_iterate: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """Coarse shifting, Alg. 1 (authors: + MI-FGSM momentum on the per-image L1-normalised gradient).
        ``on_iterate`` receives every iterate x_1 .. x_K (Fig. 3 plots them)."""
        eps, steps, alpha = self.coarse_eps, self.coarse_steps, self.coarse_step
        if steps == 0:
            return x0
        x = x0
        if self.random_start:
            noise = random_start_noise(self.seed, indices, x0.shape[1:], x0.device).to(x0.dtype)
            x = (x0 + eps * (2 * noise - 1)).clamp(0.0, 1.0)
        if not graph:
            x = x.detach()
        acc = None
        shape = (-1,) + (1,) * (x0.dim() - 1)
        for _ in range(steps):
            a = self._grad_var(x, graph)
            if self.blur_target_detached:
                if graph:
                    _, _, target = self._forward_tap(self.blur(x))
                else:
                    with torch.no_grad():
                        _, _, target = self._forward_tap(self.blur(x))
                _, _, emb = self._forward_tap(a)
            else:
                # gradient flows through both branches: one forward on the concatenated batch
                n = a.shape[0]
                _, _, both = self._forward_tap(torch.cat([a, self.blur(a)]))
                emb, target = both[:n], both[n:]
            d = F.cosine_similarity(_up(emb), _up(target), dim=1)
            (grad,) = torch.autograd.grad(d.sum(), a, create_graph=graph)
            if self.momentum is not None:
                grad = grad / grad.abs().flatten(1).sum(1).clamp_min(1e-30).view(shape)
                acc = grad if acc is None else self.momentum * acc + grad
                grad = acc
            x = _project(x + alpha * self._direction(grad), x0, eps)
            if not graph:
                x = x.detach()
            if on_iterate is not None:
                on_iterate(x)
        return x

    def _fine(self, x_adv: torch.Tensor, x_coarse: torch.Tensor, graph: bool) -> torch.Tensor:
        """Fine alignment, Alg. 2 / MILD (Eq. 8–11), from x_adv with x' = ``x_coarse`` fixed."""
        eps, steps, alpha = self.fine_eps, self.fine_steps, self.fine_step
        if steps == 0:
            return x_adv
        n = x_adv.shape[0]
        ctx = contextlib.nullcontext() if graph else torch.no_grad()
        with ctx:  # targets f_l(x_adv), f_l(x'): constants, both in one forward
            _, feats, _ = self._forward_tap(torch.cat([x_adv, x_coarse]))
            base = {k: v[:n] for k, v in feats.items()}
            ref = {k: v[n:] for k, v in feats.items()}
            base_lp = _lpips_normalize([base[l] for l in self.lpips_layers]) if self.lpips_weight else None
        x = x_adv if graph else x_adv.detach()
        for k in range(steps):
            a = self._grad_var(x, graph)
            _, cur, _ = self._forward_tap(a)
            obj = self.ila_weight * self._ila(cur, base, ref, self.ila_reduce)
            # At k = 0, x'' = x_adv: LPIPS is 0 and non-differentiable (a cone); its subgradient is 0 (as with the
            # authors' norm). Skipping it also keeps float noise between batch shapes out of the first step.
            if self.lpips_weight and k > 0:
                d = _lpips_normalize([cur[l] for l in self.lpips_layers]) - base_lp
                obj = obj - self.lpips_weight * _safe_norm(d)
            (grad,) = torch.autograd.grad(obj.sum(), a, create_graph=graph)
            x = _project(x + alpha * self._direction(grad), x_adv, eps)
            if not graph:
                x = x.detach()
        return x

    def _purify(self, x: torch.Tensor, indices: torch.Tensor | None, graph: bool) -> dict[str, torch.Tensor]:
        self._check_input(x)
        if indices is None:
            indices = torch.arange(x.shape[0], device=x.device)
        else:
            indices = torch.as_tensor(indices, device=x.device)
            if indices.shape != (x.shape[0],):
                raise UserError(f"indices must have shape ({x.shape[0]},) (one index per image), "
                                f"got {tuple(indices.shape)}")
        if self.coarse_steps == 0 and (self.stages == "c" or self.fine_steps == 0):
            return {"coarse": x.clone(), "purified": x.clone()}
        with self._session(x) as x_in:
            graph = graph and x_in.requires_grad
            cache = self.coarse_cache if (self.coarse_cache is not None and not graph) else None
            key = self._coarse_key() if cache is not None else None
            coarse = cache.get(key, x_in, indices) if cache is not None else None
            if coarse is None:
                coarse = self._coarse(x_in, indices, graph)
                if cache is not None:
                    cache.put(key, x_in, indices, coarse)
            out = {"coarse": coarse}
            out["purified"] = self._fine(x_in, coarse, graph) if self.stages == "cf" else coarse
        return out

    # ------------------------------------------------------------------ public API
    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Purified images (same shape, in [0, 1], within eps of ``x``).

        ``indices`` (one int per image, default ``arange``) seed each image's random start, so results do not
        depend on the batch an image is in. Differentiable through the steps only with ``grad_mode='full'``.
        """
        graph = self.grad_mode == "full" and torch.is_grad_enabled()
        out = self._purify(x, indices, graph)["purified"]
        return out if graph else out.detach()

    def purify_stages(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{'coarse': x' , 'purified': final} from one run (the coarse result is computed anyway for 'cf')."""
        return {k: v.detach() for k, v in self._purify(x, indices, False).items()}

    def align(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Fine alignment alone (Alg. 2) from ``x`` with a given coarse result x' (e.g. from
        :meth:`purify_stages`), so several fine settings can share one coarse stage. No gradient."""
        self._check_input(x)
        self._check_input(coarse)
        if coarse.shape != x.shape:
            raise UserError(f"coarse must have the shape of x {tuple(x.shape)}, got {tuple(coarse.shape)}")
        with self._session(x) as x_in:
            return self._fine(x_in, coarse.to(x_in.device), False).detach()

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """``classifier(purify(x))`` with the gradient mode ``self.grad_mode`` applied."""
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if self.grad_mode == "full":
            return self.classifier(self.purify(x, indices))
        purified = self._purify(x, indices, False)["purified"].detach()
        if self.grad_mode == "bpda":
            return self.classifier(x + (purified - x).detach() if wants_grad else purified)
        with torch.no_grad():
            logits = self.classifier(purified)
        return _RaiseOnBackward.apply(x, logits) if wants_grad else logits


def load_defended_model(model_name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                        model_dir: str | None = None, checkpoint: str | None = None,
                        device: str | torch.device = "cpu", **zeropur_options: Any) -> ZeroPur:
    """``ZeroPur(load_classifier(model_name, dataset, ...), **zeropur_options)``."""
    from ..classifiers import load_classifier

    clf = load_classifier(model_name, dataset, threat_model=threat_model, checkpoint=checkpoint,
                          model_dir=model_dir, device=device)
    return ZeroPur(clf, **zeropur_options)
