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

The profiles table and option checks live in ``profiles.py``, the losses and the two loops in ``stages.py``;
this module holds the ``nn.Module`` and its public API.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..profile_names import DEFAULT_PROFILE
from ..purifier import Purifier
from .blur import Blur, make_blur
from .coarse_cache import CoarseCache
from .layers import FeatureTap, LayerSpec, detect_layers
from .profiles import (GRAD_MODES, PROFILES, SURROGATES, apply_calibration, check_request, check_stage_options,
                       profile_options, runtime_options, step_size)
from .stages import coarse_shift, fine_align, ila, ila_reference, lpips_normalize, safe_norm, upcast

__all__ = ["ZeroPur", "PROFILES", "GRAD_MODES", "CoarseCache", "load_defended_model"]


class _RaiseOnBackward(torch.autograd.Function):
    """Identity on the logits that refuses to backpropagate (grad_mode='none')."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        raise UserError("ZeroPur grad_mode='none' gives no gradient through purification; build it with "
                        "grad_mode='bpda' (straight-through) or 'full', or wrap it: zeropur_bench.gradients.BPDA / "
                        "FullGradient")


class ZeroPur(Purifier):
    """ZeroPur purification in front of ``classifier`` (any nn.Module mapping [0, 1] images to logits), a
    :class:`~zeropur_bench.purifier.Purifier`.

    ``defense.purify(x)`` returns purified images; ``defense(x)`` returns ``classifier(purify(x))``. Called
    directly (e.g. by a library attack), its gradient is the one fixed at construction by ``grad_mode``:
    ``'bpda'`` (straight-through identity: ``x + (purify(x) − x).detach()``), ``'full'`` (backpropagate through the
    unrolled steps) or ``'none'`` (backward raises). The benchmark's attacks never rely on it: they wrap the
    defense (:class:`~zeropur_bench.gradients.BPDA`, :class:`~zeropur_bench.gradients.FullGradient`, which may ask
    for the smooth surrogate ``'normalized'``, g/‖g‖_∞ instead of sign(g), so the steps carry gradient).

    Args:
        classifier: the model; kept in eval mode, its parameters are never given gradients.
        profile: ``'calibrated'`` (default, as on the command line: the authors' settings with the ILA weight
            fitted to this classifier's feature scale on clean training images; see
            :mod:`zeropur_bench.defense.calibration`), ``'authors'`` (the authors' code) or ``'paper'``; see
            ``PROFILES`` and :mod:`zeropur_bench.profile_names`.
        stages: ``'c'`` (coarse shifting only) or ``'cf'`` (coarse shifting + fine alignment).
        blur: blur spec (``'median:3'``, ``'gaussian:1.2'``, ``'tv:0.05'``) or callable; see ``make_blur``.
        layers: stage module names (forward order) to use instead of auto-detection.
        grad_mode: ``'bpda'``, ``'full'`` or ``'none'``: what a direct call's backward does (fixed).
        seed: seed of the random start (per image, from (seed, image index)).
        calibration: for ``profile='calibrated'``: a :class:`~zeropur_bench.defense.calibration.Calibration`,
            its dict, or a calibration file. None: the shipped calibration found by the sha256 of the
            classifier's weights (any other module must pass one; the weight never falls back to 1e-4).
        coarse_cache: a :class:`CoarseCache` shared by variants whose coarse stage is the same (exact reuse).
        **overrides: any key of ``PROFILES[profile]`` plus ``embedding`` (module whose input is f),
            ``surrogate`` ('sign' | 'normalized'), ``dtype`` ('fp32' | 'bf16' autocast), ``channels_last``,
            ``ila_norm`` ('none' | 'feature': each layer's ILA term ÷ ‖f_l(x_adv)‖², scale-free).
    """

    name = "zeropur"
    surrogates = SURROGATES
    has_objective = True

    def __init__(self, classifier: nn.Module, profile: str = DEFAULT_PROFILE, stages: str = "cf",
                 blur: str | Callable[[torch.Tensor], torch.Tensor] = "median:3",
                 layers: Sequence[str] | None = None, grad_mode: str = "bpda", seed: int = 0,
                 calibration: Any = None, coarse_cache: CoarseCache | None = None,
                 **overrides: Any) -> None:
        super().__init__(classifier, seed)
        check_request(profile, stages, overrides)
        if grad_mode not in GRAD_MODES:
            raise UserError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
        self._grad_mode = grad_mode
        self.profile = profile
        self.stages = stages
        self.blur: Blur = make_blur(blur)
        opts = profile_options(profile, overrides)
        self.calibration = apply_calibration(opts, profile, overrides, calibration, classifier, self.blur.spec,
                                             stages)
        self.coarse_cache = coarse_cache
        self.ila_norm, self.surrogate, self.dtype, self.channels_last = runtime_options(overrides)
        if self.channels_last:
            self.classifier.to(memory_format=torch.channels_last)

        check_stage_options(opts)
        self.coarse_steps: int = opts["coarse_steps"]
        self.coarse_eps = float(opts["coarse_eps"])
        self.coarse_step = step_size(opts["coarse_step"], self.coarse_eps, self.coarse_steps)
        self.momentum = float(opts["momentum"]) if opts["momentum"] else None
        self.random_start = bool(opts["random_start"])
        self.randomized = self.random_start  # the random start is its only randomness
        self.blur_target_detached = bool(opts["blur_target_detached"])
        self.fine_steps: int = opts["fine_steps"]
        self.fine_eps = float(opts["fine_eps"])
        self.fine_step = step_size(opts["fine_step"], self.fine_eps, self.fine_steps)
        # None only for C under 'calibrated' without a calibration (no fine stage, nothing weighed)
        self.ila_weight = None if opts["ila_weight"] is None else float(opts["ila_weight"])
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
        """What a direct call's backward does (fixed at construction; attacks use the gradient wrappers)."""
        return self._grad_mode

    @property
    def default_gradient(self) -> str:
        return self._grad_mode

    def config(self) -> dict[str, Any]:
        """Every hyperparameter actually used (JSON-able); records store it. The record format of ZeroPur's first
        records (``method``, ``grad_mode``, ``surrogate``, ...): comparison keys stay byte-identical."""
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

    def extra_repr(self) -> str:
        return f"profile={self.profile!r}, stages={self.stages!r}, blur={self.blur.spec!r}, grad_mode={self.grad_mode!r}"

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

    def counting_passes(self) -> contextlib.AbstractContextManager:
        """No coarse result shared with other variants inside (each prediction does all of its own passes)."""
        return self.coarse_cache.bypass() if self.coarse_cache is not None else contextlib.nullcontext()

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

    def _coarse_key(self) -> tuple:
        """What the coarse stage's result depends on, besides the input and its indices."""
        return (id(self.classifier), self.blur.spec, self.coarse_steps, self.coarse_eps, self.coarse_step,
                self.momentum, self.random_start, self.blur_target_detached, self.seed, self.dtype,
                self.channels_last, self.surrogate, self.layer_spec)

    # ------------------------------------------------------------------ objectives (functions of x)
    def stage_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs f_l(x) of every hooked stage, plus ``'embedding'`` = f(x) (differentiable if x requires grad)."""
        self.check_input(x)
        with self._tap:
            _, feats, emb = self._forward_tap(x)
        return {**feats, "embedding": emb}

    def coarse_objective(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample cosine d(f(x), f(g(x))) (Eq. 7), differentiable through both x and the blur branch."""
        self.check_input(x)
        n = x.shape[0]
        with self._tap:
            _, _, emb = self._forward_tap(torch.cat([x, self.blur(x)]))
        return F.cosine_similarity(upcast(emb[:n]), upcast(emb[n:]), dim=1)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """What purification ascends first: the coarse cosine d(f(x), f(g(x))) (:meth:`coarse_objective`)."""
        return self.coarse_objective(x)

    def _norm_refs(self) -> list[float] | None:
        """Reference scales of ``ila_norm='feature'`` for the fine layers; None when ILA is not normalised."""
        return ila_reference(len(self.fine_layers)) if self.ila_norm == "feature" else None

    def fine_objective(self, x2: torch.Tensor, x_adv: torch.Tensor, x_coarse: torch.Tensor,
                       full: bool = False) -> torch.Tensor:
        """Per-sample MILD(x_adv, x', x'') (Eq. 11: mean over layers S of ⟨Δu''_l, Δu'_l⟩, Eq. 8–10).

        ``full=True`` returns the exact per-sample quantity fine alignment maximises under this profile:
        ila_weight · (ILA summed or averaged over S) − lpips_weight · self-LPIPS(x'', x_adv).
        """
        for t in (x2, x_adv, x_coarse):
            self.check_input(t)
        n = x2.shape[0]
        with self._tap:
            _, feats, _ = self._forward_tap(torch.cat([x2, x_adv, x_coarse]))
        cur = {k: v[:n] for k, v in feats.items()}
        base = {k: v[n:2 * n] for k, v in feats.items()}
        ref = {k: v[2 * n:] for k, v in feats.items()}
        if not full:
            return ila(cur, base, ref, self.fine_layers, "mean", self._norm_refs())
        if self.ila_weight is None:
            raise UserError("this ZeroPur-C has no ILA weight (profile 'calibrated' without a calibration); for the "
                            "fine objective pass calibration=... or choose profile='authors'")
        obj = self.ila_weight * ila(cur, base, ref, self.fine_layers, self.ila_reduce, self._norm_refs())
        if self.lpips_weight:
            d = lpips_normalize([cur[l] for l in self.lpips_layers]) - lpips_normalize([base[l] for l in self.lpips_layers])
            obj = obj - self.lpips_weight * safe_norm(d)
        return obj

    # ------------------------------------------------------------------ the two stages (math in stages.py)
    def _coarse(self, x0: torch.Tensor, indices: torch.Tensor, graph: bool,
                on_iterate: Callable[[torch.Tensor], None] | None = None, surrogate: str | None = None) -> torch.Tensor:
        """Coarse shifting, Alg. 1, with this defense's current settings (:func:`.stages.coarse_shift`)."""
        return coarse_shift(self._forward_tap, self.blur, x0, indices, eps=self.coarse_eps, steps=self.coarse_steps,
                            alpha=self.coarse_step, momentum=self.momentum, random_start=self.random_start,
                            blur_target_detached=self.blur_target_detached, seed=self.seed,
                            surrogate=surrogate or self.surrogate, graph=graph, on_iterate=on_iterate)

    def _fine(self, x_adv: torch.Tensor, x_coarse: torch.Tensor, graph: bool,
              surrogate: str | None = None) -> torch.Tensor:
        """Fine alignment, Alg. 2 / MILD, with this defense's current settings (:func:`.stages.fine_align`)."""
        return fine_align(self._forward_tap, x_adv, x_coarse, eps=self.fine_eps, steps=self.fine_steps,
                          alpha=self.fine_step, layers=self.fine_layers, ila_weight=self.ila_weight,
                          ila_reduce=self.ila_reduce, norm_refs=self._norm_refs(), lpips_weight=self.lpips_weight,
                          lpips_layers=self.lpips_layers, surrogate=surrogate or self.surrogate, graph=graph)

    def _purify(self, x: torch.Tensor, indices: torch.Tensor | None, graph: bool,
                surrogate: str | None = None) -> dict[str, torch.Tensor]:
        self.check_input(x)
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
            # the memo holds exact results of this defense's own steps: not for a graph, nor a surrogate's steps
            cache = self.coarse_cache if (self.coarse_cache is not None and not graph and not surrogate) else None
            key = self._coarse_key() if cache is not None else None
            coarse = cache.get(key, x_in, indices) if cache is not None else None
            if coarse is None:
                coarse = self._coarse(x_in, indices, graph, surrogate=surrogate)
                if cache is not None:
                    cache.put(key, x_in, indices, coarse)
            out = {"coarse": coarse}
            out["purified"] = self._fine(x_in, coarse, graph, surrogate) if self.stages == "cf" else coarse
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

    def differentiable_purify(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                              surrogate: str | None = None) -> torch.Tensor:
        """Purified images with the graph of the unrolled steps (the full gradient), under ``surrogate`` ('sign':
        the defense's own steps, whose gradient through sign(g) is zero; 'normalized': g/‖g‖_∞, which carries
        gradient), default the defense's own ``surrogate`` setting."""
        if surrogate is not None and surrogate not in self.surrogates:
            raise UserError(f"ZeroPur offers the surrogates {', '.join(self.surrogates)}, not {surrogate!r}")
        with torch.enable_grad():
            return self._purify(x, indices, torch.is_grad_enabled(), surrogate)["purified"]

    def purify_stages(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{'coarse': x' , 'purified': final} from one run (the coarse result is computed anyway for 'cf')."""
        return {k: v.detach() for k, v in self._purify(x, indices, False).items()}

    def coarse_iterates(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Every iterate x_0 = ``x``, x_1 .. x_K of coarse shifting (Alg. 1; the paper's Fig. 3 plots their
        embeddings), detached. ``indices`` as in :meth:`purify`. x_K is checked bit for bit against
        ``purify_stages(x, indices)['coarse']``, so the iterates are those the defense itself runs through (a
        :class:`UserError` if not). No gradient."""
        self.check_input(x)
        idx = torch.arange(x.shape[0], device=x.device) if indices is None else \
            torch.as_tensor(indices, device=x.device)
        out = [x.detach().clone()]
        if self.coarse_steps > 0:
            with self._session(x) as x0:
                self._coarse(x0, idx, graph=False, on_iterate=lambda t: out.append(t.detach().clone()))
            ref = self.purify_stages(x, idx)["coarse"]
            if not torch.equal(ref, out[-1]):
                raise UserError("the coarse iterates recorded here do not reproduce ZeroPur's own result (max "
                                f"difference {float((ref - out[-1]).abs().max()):.3g})")
        return out

    def align(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Fine alignment alone (Alg. 2) from ``x`` with a given coarse result x' (e.g. from
        :meth:`purify_stages`), so several fine settings can share one coarse stage. No gradient."""
        self.check_input(x)
        self.check_input(coarse)
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
