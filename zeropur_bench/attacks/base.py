"""The attack interface: one class per attack, registered by name.

The base class owns everything that is the same for every attack: parameter defaults and validation, input
validation, device, eval mode, seeding, counting forward/backward passes, and the final projection into the
threat model. Subclasses implement :meth:`Attack._attack` on a validated batch.

Threat models follow the paper's App. A.2: Linf eps 8/255, step 2/255, 20 steps; L2 eps 0.5, step 0.05.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..errors import UserError
from ..estimators import ATTACK_STREAM, STREAM, accepts_indices
from ..fmt import fmt_value
from ..gradients import access
from ..params import Param, check_params
from ..purifier import is_purifier
from ..threats import NORMS

# Paper App. A.2 (CIFAR): Linf eps 8/255 step 2/255, L2 eps 0.5 step 0.05. ImageNet's Linf 4/255 is passed
# explicitly as eps. The default step is the same fraction of eps at any eps (2/255 = eps/4 at 8/255, 0.05 =
# eps/10 at 0.5): a fixed 2/255 step at eps 1/255 would only bounce between the corners of the ball.
NORM_DEFAULTS: dict[str, dict[str, float]] = {
    "Linf": {"eps": 8 / 255, "step": 2 / 255},
    "L2": {"eps": 0.5, "step": 0.05},
}
STEP_FRACTION = {"Linf": 0.25, "L2": 0.1}
# Slack for float error when checking the eps ball after projection.
_TOL = 1e-6

ATTACKS: dict[str, type["Attack"]] = {}


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def register(name: str) -> Callable[[type["Attack"]], type["Attack"]]:
    """Class decorator: register an :class:`Attack` subclass under ``name``."""

    def deco(cls: type[Attack]) -> type[Attack]:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return deco


def make_attack(name: str, model: nn.Module, **params: Any) -> "Attack":
    """Build the attack registered as ``name`` on ``model`` (the bare classifier or the defense)."""
    if name not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name](model, **params)


def underlying_classifier(model: nn.Module) -> nn.Module:
    """The classifier whose passes are counted: the purifier's classifier, else the model itself."""
    return model.classifier if is_purifier(model) else model


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def batch_seed(seed: int, indices: torch.Tensor | None) -> int:
    """The RNG seed of one batch: a function of (seed, first dataset index), so a batch re-run on resume draws
    the same random numbers as in the uninterrupted run, whatever ran before it."""
    first = int(indices[0]) if indices is not None and len(indices) else 0
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, first]).generate_state(1)[0] & 0x7FFFFFFF)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` into the ``norm`` ball of radius ``eps`` around ``x``, then into [0, 1]."""
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / n).clamp(max=1.0).view(-1, 1, 1, 1)
    return (x + delta).clamp(0.0, 1.0)


def lp_step(grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    """The steepest-ascent step of size ``step``: sign for Linf, normalised gradient for L2."""
    if norm == "Linf":
        return step * grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return step * grad / n.view(-1, 1, 1, 1)


def random_init(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A uniform random start in the Linf ball (Madry et al.), or a random direction in the L2 ball."""
    if norm == "Linf":
        d = torch.empty_like(x).uniform_(-eps, eps)
    else:
        d = torch.randn_like(x)
        n = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        r = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)
        d = d / n * eps * r
    return (x + d).clamp(0.0, 1.0)


class FreshNoise(nn.Module):
    """Wraps a model that takes ``indices`` (ZeroPur seeds its random start from (seed, index)) so that every
    call draws fresh randomness: call c gets ``arange(n) + (stream + c) * STREAM``. Library attacks (torchattacks,
    pyautoattack) call ``model(x)`` on sub-batches; without this, their EOT repeats would see the same noise."""

    def __init__(self, model: nn.Module, stream: int = ATTACK_STREAM) -> None:
        super().__init__()
        self.model = model
        self.stream = stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(x.shape[0], device=x.device) + self.stream * STREAM
        self.stream += 1
        return self.model(x, indices=idx)


class PassCounter:
    """Counts image-passes through a classifier: forward (images per call, summed) and backward (images whose
    input received a gradient). A forward hook is the cheapest exact count, and it also sees the classifier
    calls made inside a purifier."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    @contextlib.contextmanager
    def attach(self, module: nn.Module) -> Iterator["PassCounter"]:
        def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
            inp = inputs[0] if inputs and torch.is_tensor(inputs[0]) else None
            n = inp.shape[0] if inp is not None else 0
            self.forward += n
            # A hook on the input (not the logits) also sees backward passes that start from inner features,
            # e.g. ZeroPur's embedding-cosine gradients.
            if inp is not None and inp.requires_grad:
                def bwd(g: torch.Tensor, n: int = n) -> None:
                    self.backward += n
                inp.register_hook(bwd)

        h = module.register_forward_hook(hook)
        try:
            yield self
        finally:
            h.remove()


class Attack:
    """Base class. ``Attack(model, *, eps=None, norm="Linf", seed=0, **params)``; ``attack(x, y, indices=None)``
    returns x_adv within the eps ball and [0, 1], on the model's device. ``indices`` are the batch's dataset
    indices: the batch's RNG seed is derived from (seed, indices[0]) (a resumed batch redraws the same numbers), and
    an indexed defense (ZeroPur's per-index random start) gets fresh randomness streams derived from them.
    ``last_info`` describes the last call: ``n``, ``batch_seed``, ``forward_passes`` / ``backward_passes`` (image-
    passes through the classifier, including those inside the purifier; divide by ``n`` for per image), and
    attack-specific keys (EOT repeats used, determinism probe, ``broken_any_step`` / ``broken_final``, ...).

    Class attributes: ``name`` (registry key), ``defaults`` (attack parameters and their defaults; ``None`` for
    ``step`` means the per-norm default of App. A.2, eps/4 for Linf and eps/10 for L2), ``norms`` (supported),
    ``needs_defense`` (the model must be a :class:`~zeropur_bench.purifier.Purifier`; such attacks are
    adaptive-only), ``adaptive_only``, ``gradient``: the access to a purifier the attack asks for
    (:func:`zeropur_bench.gradients.access`: 'default', 'bpda', 'full' or 'none'); an attack never changes the
    defense.
    """

    name: ClassVar[str] = "?"
    family: ClassVar[str | None] = None  # None: the registry name (records carry it as config.attacks[i].family)
    defaults: ClassVar[dict[str, Any]] = {}
    param_specs: ClassVar[dict[str, Param]] = {}  # type and range of each parameter (attacks.params)
    norms: ClassVar[tuple[str, ...]] = NORMS
    needs_defense: ClassVar[bool] = False
    # the attack reports every iterate (``x_final``, ``broken_per_step``): "final only" and step curves
    iterates: ClassVar[bool] = False
    adaptive_only: ClassVar[bool] = False
    gradient: ClassVar[str] = "default"

    def __init__(self, model: nn.Module, *, eps: float | None = None, norm: str = "Linf", seed: int = 0,
                 **params: Any) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"attack {self.name!r} needs an nn.Module model, got {type(model).__name__}")
        if norm not in self.norms:
            raise UserError(f"attack {self.name!r} supports norms {', '.join(self.norms)}, not {norm!r}")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(["eps", "norm", "seed", *sorted(self.defaults)])
            raise UserError(f"unknown parameter(s) {', '.join(unknown)} for attack {self.name!r}; known: {known}")
        if (self.needs_defense or self.adaptive_only) and not is_purifier(model):
            raise UserError(f"attack {self.name!r} attacks the defense itself (adaptive setting only); "
                            "give it the defended model, or use a transfer attack such as 'pgd'")
        self.model = model
        self.norm = norm
        self.eps = float(NORM_DEFAULTS[norm]["eps"] if eps is None else eps)
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise UserError(f"eps must be a finite number >= 0, got {eps!r}")
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.defaults, **params}
        if "step" in self.params and self.params["step"] is None:
            self.params["step"] = STEP_FRACTION[norm] * self.eps
        self.last_info: dict[str, Any] = {}
        self._indices = torch.zeros(0, dtype=torch.long)  # dataset indices of the current batch (set per call)
        self._stream = ATTACK_STREAM  # next unused randomness stream (see estimators.STREAM)
        self._check_params()

    # -- parameters and column labels (no model needed) ----------------------------------------------------------
    @classmethod
    def resolve_params(cls, params: dict[str, Any], eps: float, norm: str) -> dict[str, Any]:
        """The parameters this attack runs with: defaults filled in, ``step=None`` resolved to the per-norm
        fraction of ``eps``. Comparison keys and labels are computed from these, never from what was typed."""
        reserved = sorted({"eps", "norm", "seed"} & set(params))
        if reserved:
            raise UserError(f"attack {cls.name!r}: {', '.join(reserved)} is set by the run, not by the attack "
                            f"(use --eps / --threat / --seed); attack parameters: {', '.join(sorted(cls.defaults))}")
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            raise UserError(f"unknown parameter(s) {', '.join(unknown)} for attack {cls.name!r}; allowed: "
                            f"{', '.join(sorted(cls.defaults)) or '(none)'}")
        check_params(cls.name, cls.param_specs, params)  # before any label or key sees a raw value
        out = {**cls.defaults, **params}
        if "step" in out and out["step"] is None:
            out["step"] = STEP_FRACTION[norm] * float(eps)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}

    @classmethod
    def family_name(cls) -> str:
        return cls.family or cls.name

    @classmethod
    def target_label(cls, params: dict[str, Any], eps: float, norm: str, deterministic_target: bool | None,
                     with_eps: bool = True) -> str:
        """The column name against a target whose determinism is known (None: not probed): :meth:`label`,
        unless the attack runs differently on a deterministic target (AutoAttack-BPDA 'rand')."""
        return cls.label(params, eps, norm, with_eps=with_eps)

    @classmethod
    def mixed_label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        """The column name of one attack run on several targets that :meth:`target_label` names differently."""
        return cls.label(params, eps, norm, with_eps=with_eps)

    @classmethod
    def label(cls, params: dict[str, Any], eps: float, norm: str, with_eps: bool = True) -> str:
        """The column name of this attack with resolved ``params``: its registry name plus every parameter that
        differs from its defaults, e.g. ``pgd[steps=5]``. Subclasses give a paper's or library's name (PGD-20,
        AutoAttack) only when every setting is that paper's or library's. ``with_eps=False``: leave out the eps
        a label names when the attack ran away from the paper's (the series name of an eps sweep)."""
        base = cls.resolve_params({}, eps, norm)
        diff = {k: v for k, v in params.items() if k in base and not _same_value(v, base[k])}
        if not diff:
            return cls.name
        return cls.name + "[" + ",".join(f"{k}={fmt_value(v)}" for k, v in sorted(diff.items())) + "]"

    # -- subclass API -------------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Validate ``self.params`` (raise UserError): the declared ``param_specs``; for a parameter without
        one, the type of its default."""
        check_params(self.name, self.param_specs, self.params)
        for key, default in self.defaults.items():
            if key in self.param_specs:
                continue
            v = self.params.get(key)
            if isinstance(default, bool):
                ok = isinstance(v, bool)
                want = "true or false"
            elif isinstance(default, int):
                ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                want = "an integer"
            elif isinstance(default, float):
                ok = isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))
                want = "a number"
            elif isinstance(default, str):
                ok = isinstance(v, str)
                want = "a word"
            else:
                continue
            if not ok:
                raise UserError(f"parameter {key} of attack {self.name!r} must be {want}, got {v!r}")
        for key in ("steps", "restarts", "eot_iter", "eot_reps", "verify_reps", "n_queries"):
            v = self.params.get(key)
            if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0):
                raise UserError(f"parameter {key} of attack {self.name!r} must be an integer >= 0, got {v!r}")
        step = self.params.get("step")
        if step is not None and not (isinstance(step, (int, float)) and step >= 0):
            raise UserError(f"parameter step of attack {self.name!r} must be a number >= 0, got {step!r}")

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------------------------
    @property
    def classifier(self) -> nn.Module:
        return underlying_classifier(self.model)

    def differentiable(self, surrogate: str | None = None) -> nn.Module:
        """The model with the gradient access this attack asks for (``gradient``; a purifier wrapped)."""
        return access(self.model, self.gradient, surrogate)

    @property
    def target(self) -> nn.Module:
        """The model as library attacks should call it: this attack's gradient access, fresh randomness per call
        for an indexed defense."""
        model = self.differentiable()
        return FreshNoise(model, self._next_streams(1 << 16)) if accepts_indices(model) else model

    def _next_streams(self, k: int) -> int:
        s = self._stream
        self._stream += k
        return s

    def fresh_indices(self, reps: int) -> torch.Tensor:
        """Indices for ``x.repeat(reps, 1, 1, 1)`` of the current batch, from ``reps`` fresh streams."""
        s = self._next_streams(reps)
        k = torch.arange(reps, device=self._indices.device).repeat_interleave(self._indices.shape[0])
        return self._indices.repeat(reps) + (s + k) * STREAM

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this attack (for the record)."""
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "seed": self.seed, **self.params}

    # -- the call -----------------------------------------------------------------------------------------------
    @staticmethod
    def validate_inputs(x: Any, y: Any) -> None:
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise UserError(f"images must be a 4-d NCHW tensor, got {shape}")
        if not torch.is_floating_point(x):
            raise UserError(f"images must be floating point in [0, 1], got dtype {x.dtype}")
        if not torch.is_tensor(y) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            shape = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise UserError(f"labels must be a 1-d tensor with one label per image ({x.shape[0]}), got {shape}")
        if torch.is_floating_point(y) or y.dtype == torch.bool:
            raise UserError(f"labels must be integers, got dtype {y.dtype}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise UserError("images contain NaN or inf; check the data pipeline")
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise UserError(f"pixels must lie in [0, 1], got [{float(x.min()):.4g}, {float(x.max()):.4g}]; "
                            "pass unnormalised images (normalisation lives inside the classifier)")

    def __call__(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        self.validate_inputs(x, y)
        dev = self.device
        x = x.detach().to(dev, torch.float32)
        y = y.detach().to(dev, torch.long)
        self.last_info = {"n": int(x.shape[0])}
        if indices is not None:
            indices = torch.as_tensor(indices, dtype=torch.long).flatten()
            if indices.shape[0] != x.shape[0]:
                raise UserError(f"indices must have one entry per image ({x.shape[0]}), got {indices.shape[0]}")
        self._indices = (indices.to(dev) if indices is not None else torch.arange(x.shape[0], device=dev))
        self._stream = ATTACK_STREAM
        if x.shape[0] == 0:
            self.last_info.update(forward_passes=0, backward_passes=0)
            return x.clone()
        # a purifier is always in eval mode; a bare classifier is put there for the call and restored after
        modes = [] if is_purifier(self.model) else [(m, m.training) for m in self.model.modules()]
        counter = PassCounter()
        devices = [dev] if dev.type == "cuda" else []
        if modes:
            self.model.eval()
        try:
            # fork_rng saves and restores the global RNG: torchattacks and pyautoattack draw from (and reseed) it.
            trusted = self.model.trusted_inputs() if is_purifier(self.model) else contextlib.nullcontext()
            with torch.random.fork_rng(devices=devices), counter.attach(self.classifier), trusted:
                seed = batch_seed(self.seed, indices)
                torch.manual_seed(seed)
                self.last_info["batch_seed"] = seed
                x_adv = self._attack(x, y)
        finally:
            for m, mode in modes:  # restore each submodule's own mode
                m.training = mode
        x_adv = x_adv.detach().to(dev, torch.float32)
        if x_adv.shape != x.shape or not bool(torch.isfinite(x_adv).all()):
            raise RuntimeError(f"attack {self.name!r} returned a bad tensor (shape {tuple(x_adv.shape)})")
        self._assert_in_ball(x_adv, x)
        x_adv = project(x_adv, x, self.eps, self.norm)
        self.last_info.update(forward_passes=counter.forward, backward_passes=counter.backward)
        return x_adv

    def _assert_in_ball(self, x_adv: torch.Tensor, x: torch.Tensor) -> None:
        d = (x_adv - x).flatten(1)
        dist = d.abs().amax(1) if self.norm == "Linf" else d.norm(dim=1)
        # Libraries project themselves; anything beyond float slack means a bug, not rounding.
        if x_adv.numel() and float(dist.max()) > self.eps * (1 + 1e-3) + 1e-4:
            raise RuntimeError(f"attack {self.name!r} left the {self.norm} ball: {float(dist.max()):.6g} > "
                               f"{self.eps:.6g}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

