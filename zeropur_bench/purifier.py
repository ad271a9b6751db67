"""The purifier contract: what every defense in front of a classifier is, whoever wrote it.

A :class:`Purifier` is an ``nn.Module`` holding its ``classifier`` (any module mapping [0, 1] images to logits),
with ``purify(x) -> x'`` and a forward that is ``classifier(purify(x))``:

* it is always in eval mode, and its classifier is frozen (eval mode; purification and the gradient wrappers
  differentiate with respect to images only, so no parameter ever takes a gradient);
* ``passes_per_prediction`` states its classifier passes per prediction (None: the engine measures them);
* a randomized purifier sets ``randomized = True`` (on the class, or in its constructor), takes ``indices`` in ``purify(x, indices)`` and draws its
  randomness per example from ``(seed, index)`` (:meth:`Purifier.example_uniform`), so draws do not depend on how
  examples are batched (shards, resume, the cascade and CPU against GPU agree per example); the engine passes the
  dataset indices, estimators and EOT pass fresh streams;
* one that is not ``classifier(purify(x))`` (Mixup Inference averages predictions) overrides :meth:`predict` and
  :meth:`differentiable_predict`, and offers ``gradients = ("full",)``;
* ``gradients`` says which access it offers (``default_gradient``: the one an attack that simply differentiates
  the defended model gets) to gradient attacks (:mod:`zeropur_bench.gradients`): ``"bpda"``
  (straight-through through ``purify``, Athalye et al. 2018; needs an output of the input's shape, so a purifier
  with ``shape_preserving = False`` offers ``"full"`` only) and ``"full"`` (through ``purify``'s own graph, or a
  ``surrogate`` it names in ``surrogates`` and implements in :meth:`differentiable_purify`);
* its resolved settings (:meth:`config`: the record and the comparison key) are its constructor's arguments,
  captured when it is built: a user writes nothing for them.

ZeroPur, the blur alone and ``none`` are three Purifiers (:mod:`zeropur_bench.defense`); a user's purifier is a
subclass registered with :func:`zeropur_bench.defenses.register_defense`.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
from typing import Any, ClassVar, Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .errors import UserError

GRADIENTS = ("bpda", "full")
_GOLDEN = 0x9E3779B97F4A7C15
# ids of the purifiers whose per-call input check is skipped (inside an attack's loop); a context variable, not an
# attribute, so that an attack never assigns to a defense
_TRUSTED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("zeropur_bench_trusted", default=frozenset())


def _i64(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic)."""
    z = (z ^ _lsr(z, 30)) * _i64(0xBF58476D1CE4E5B9)
    z = (z ^ _lsr(z, 27)) * _i64(0x94D049BB133111EB)
    return z ^ _lsr(z, 31)


def example_uniform(seed: int, indices: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise of ``(len(indices), *shape)``; example i's noise depends only on (seed, indices[i]).

    A counter-based generator (splitmix64) instead of one ``torch.Generator`` per example: vectorised (no Python
    loop over images), batch independent, and identical on CPU and CUDA.
    """
    n = math.prod(shape)
    idx = indices.to(device=device, dtype=torch.int64).view(-1, 1)
    key = _mix64(_mix64(torch.full_like(idx, _i64((seed * _GOLDEN + _GOLDEN) % (1 << 64)))) ^ idx)
    counter = torch.arange(1, n + 1, device=device, dtype=torch.int64).view(1, -1) * _i64(_GOLDEN)
    bits = _lsr(_mix64(key + counter), 40)  # top 24 bits
    return (bits.to(torch.float32) / float(1 << 24)).view(len(idx), *shape)


def takes_indices(fn: Any) -> bool:
    """Whether callable ``fn`` accepts an ``indices`` argument (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "indices" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def check_images(x: Any, who: str) -> None:
    """A float NCHW batch with finite pixels in [0, 1], else one :class:`UserError` (``who`` names the caller)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise UserError(f"{who} expects a float image batch of shape (N, C, H, W) in [0, 1], got "
                        f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    if not x.numel():
        return
    with torch.no_grad():
        lo, hi = torch.aminmax(x.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise UserError(f"{who} input contains NaN or inf pixels; pass images in [0, 1]")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise UserError(f"{who} input pixels must lie in [0, 1], got range [{lo.item():.4g}, {hi.item():.4g}]; "
                        "pass unnormalised images (normalisation belongs inside the classifier)")


class Purifier(nn.Module):
    """Base class of every defense: ``classifier(purify(x))`` (module docstring).

    Subclasses implement :meth:`purify`; they may override :meth:`predict` (a forward that is not
    ``classifier(purify(x))``), :meth:`differentiable_purify` (a surrogate for the full gradient) and :meth:`config`
    (only to keep an older record format; by default it is the constructor's arguments).
    """

    name: ClassVar[str] = "purifier"  # the registry name (set by register_defense)
    randomized: ClassVar[bool] = False
    shape_preserving: ClassVar[bool] = True
    gradients: ClassVar[tuple[str, ...]] = GRADIENTS
    surrogates: ClassVar[tuple[str, ...]] = ()
    passes_per_prediction: ClassVar[float | None] = None
    has_objective: ClassVar[bool] = False  # offers objective(x) (defense-aware attacks)
    # a calibrated purifier's calibration (an object with to_dict(): how and on what it was fitted), for its record
    calibration: Any = None

    @property
    def default_gradient(self) -> str:
        """The access an attack that simply differentiates the defended model (PGD, AutoAttack) gets: BPDA where
        offered (the standard for a non-differentiable transform), else the full gradient."""
        return "bpda" if "bpda" in self.gradients else "full"

    def __init__(self, classifier: nn.Module, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise UserError(f"classifier must be a torch nn.Module, got {type(classifier).__name__}")
        # frozen: eval mode, and no purification or gradient wrapper ever gives its parameters a gradient (they
        # differentiate with respect to images only); a user's requires_grad flags are left as they are
        self.classifier = classifier.eval()
        self.seed = int(seed)
        super().train(False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Capture every subclass's constructor arguments (defaults applied) as its settings (:meth:`config`)."""
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__dict__["__init__"]
        sig = inspect.signature(init)

        @functools.wraps(init)
        def wrapped(self: Purifier, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self).__init__ is wrapped:  # the most derived constructor's arguments are the settings
                bound = sig.bind(self, *args, **kw)
                bound.apply_defaults()
                settings = {k: v for k, v in list(bound.arguments.items())[1:] if k != "classifier"}
                for p in sig.parameters.values():  # **kwargs flattened: they are settings like the others
                    if p.kind is inspect.Parameter.VAR_KEYWORD:
                        settings.update(settings.pop(p.name, {}))
                object.__setattr__(self, "_settings", settings)
            super(Purifier, self).train(False)

        cls.__init__ = wrapped  # type: ignore[method-assign]

    # -- the contract ---------------------------------------------------------------------------------------------
    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Purified images; ``indices`` (one dataset index per image) seed a randomized purifier's draws."""
        raise NotImplementedError(f"{type(self).__name__} must implement purify(x)")

    def purify_at(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`purify`, passing ``indices`` only to a purifier that takes them."""
        if indices is not None and takes_indices(self.purify):
            return self.purify(x, indices=indices)
        return self.purify(x)

    def predict(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the defended model: ``classifier(purify(x))``."""
        return self.classifier(self.purify_at(x, indices))

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict(x, indices)

    def differentiable_purify(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                              surrogate: str | None = None) -> torch.Tensor:
        """``purify`` with its autograd graph (the full gradient); ``surrogate`` one of :attr:`surrogates`."""
        if surrogate is not None:
            raise UserError(f"defense {self.name!r} offers no gradient surrogate (asked for {surrogate!r}); "
                            + (f"it offers {', '.join(self.surrogates)}" if self.surrogates else "use none"))
        with torch.enable_grad():
            return self.purify_at(x, indices)

    def differentiable_predict(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                               surrogate: str | None = None) -> torch.Tensor:
        """:meth:`predict` with gradients through purification (what :class:`~zeropur_bench.gradients.FullGradient`
        calls); a purifier that overrides :meth:`predict` overrides this too."""
        return self.classifier(self.differentiable_purify(x, indices, surrogate))

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample quantity purification ascends at ``x``, differentiable (``has_objective``): what a
        defense-aware attack (Mao et al. 2021) makes high already, so purification has nothing to undo."""
        raise UserError(f"defense {self.name!r} offers no purification objective (has_objective is false)")

    def config(self) -> dict[str, Any]:
        """The resolved settings (JSON-able): the registry name and the constructor's arguments."""
        settings = getattr(self, "_settings", {})
        return {"method": self.name, **{k: _jsonable(v) for k, v in settings.items()}}

    # -- engine helpers ---------------------------------------------------------------------------------------------
    def example_uniform(self, indices: torch.Tensor | None, shape: Sequence[int], device: torch.device,
                        n: int | None = None) -> torch.Tensor:
        """Per-example uniform [0, 1) draws of ``shape`` from ``(self.seed, index)`` (``indices`` None: arange(n))."""
        if indices is None:
            indices = torch.arange(int(n or 0), device=device)
        return example_uniform(self.seed, indices, shape, device)

    def check_input(self, x: Any) -> None:
        """The per-call input check (:func:`check_images`), skipped inside :meth:`trusted_inputs`."""
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point() and id(self) in _TRUSTED.get():
            return
        check_images(x, type(self).__name__)

    @contextlib.contextmanager
    def trusted_inputs(self) -> Iterator[None]:
        """Skip the per-call pixel-range check (a host-device sync on a GPU) while an attack, which validated its
        input once and projects every iterate into [0, 1], calls the defense at every step."""
        token = _TRUSTED.set(_TRUSTED.get() | {id(self)})
        try:
            yield
        finally:
            _TRUSTED.reset(token)

    def counting_passes(self) -> contextlib.AbstractContextManager:
        """A context in which every prediction does all of its own work (no memo shared with other variants), so
        the classifier passes counted inside are this purifier's own. Default: nothing to switch off."""
        return contextlib.nullcontext()

    def train(self, mode: bool = True) -> "Purifier":
        """A purifier stays in eval mode (its classifier never uses batch statistics): ``train()`` and ``eval()``
        change nothing, so a library that toggles modes (torchattacks, AutoAttack) never writes to the defense."""
        return self


@runtime_checkable
class Staged(Protocol):
    """A purifier that names its stages (ZeroPur): the first stage's result of one run (``purify_stages(x)
    ['coarse']``), the features of its classifier's stages (``stage_features``) and the ones its second stage
    aligns (``fine_layers``). The defense-aware attack's fine term needs them."""

    fine_layers: tuple[str, ...]

    def purify_stages(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]: ...

    def stage_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(t) for t in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(t) for k, t in v.items()}
    return getattr(v, "spec", None) or str(v)


def is_purifier(model: Any) -> bool:
    """Whether ``model`` is a defense under the contract."""
    return isinstance(model, Purifier)
