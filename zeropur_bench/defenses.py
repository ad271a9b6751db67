"""The defense registry, as ``ATTACKS`` is for attacks: every purifier by name, with typed, range-checked options.

``@register_defense("name")`` on a :class:`~zeropur_bench.purifier.Purifier` subclass registers it; its options
are its constructor's keyword arguments after ``classifier`` (typed from their annotations or defaults, checked
with :mod:`zeropur_bench.params` like attack parameters; a class may declare ``option_specs`` for ranges). A
factory function can be registered instead (``register_defense("name", factory=..., option_specs=...)``: ZeroPur's,
which owns its profiles, calibration and coarse-stage memo).

Plugins reach the same registry: a Python file (``zeropur-bench run --plugin FILE``, :func:`load_plugin`) or an
installed package's entry point in the group ``zeropur_bench.defenses`` (:func:`load_entry_points`). A plugin that
fails to import, takes a name already taken, or lacks ``purify`` is refused in one line.

The run owns ``seed``, ``dtype`` and ``channels_last`` (``--seed``, ``--dtype``, ``--channels-last``): a defense
receives them through :class:`BuildContext` (and its constructor's ``seed=`` when it takes one), never as options.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .errors import UserError
from .params import Param, check_params
from .purifier import Purifier, takes_indices

ENTRY_POINT_GROUP = "zeropur_bench.defenses"
# options the run owns (the run's option that sets them)
RUN_OWNED = {"dtype": "--dtype", "channels_last": "--channels-last", "seed": "--seed"}


@dataclass
class BuildContext:
    """What a defense is built with besides its classifier and options: the run's seed, dtype and memory format,
    the setting, the data (for a defense that fits something on training images), a message sink, and ``shared``:
    one dict per run in which a defense's factory may keep what its variants share (ZeroPur's coarse-stage memo
    in the transfer setting, its calibrations)."""

    seed: int = 0
    dtype: str = "fp32"
    channels_last: bool = False
    setting: str = "transfer"
    dataset: str = "cifar10"
    data_dir: str | None = None
    echo: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    shared: dict[str, Any] = field(default_factory=dict)


Factory = Callable[[nn.Module, BuildContext, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class VariantOptions:
    """The command line's run-wide defense options, which a defense may expand into several variants
    (:meth:`DefenseEntry.expand`): ZeroPur's ``--stages``, ``--profile``, ``--blur``, ``--zp`` and ``--calibration``
    (the blur alone uses ``--blur``); empty where not given."""

    stages: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    blurs: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    calibration_file: str | None = None


Expand = Callable[[dict[str, Any], VariantOptions], list[tuple[dict[str, Any], str | None]]]


@dataclass(frozen=True)
class DefenseEntry:
    """One registered defense: how to build it (``factory``), its options (``option_specs``, ``defaults``; None for
    an option means "no check here, the defense checks it"), where it came from (``source``), and how its variants
    are named (``label``) and written into records (``record_fields``, ``from_record_fields``: a defense whose
    records predate the registry keeps their fields)."""

    name: str
    factory: Factory
    option_specs: dict[str, Param | None]
    defaults: dict[str, Any]
    summary: str
    source: str = "built-in"
    open_options: bool = False  # accepts options beyond those listed (its own **overrides, checked by it)
    label: Callable[[dict[str, Any]], str] | None = None
    record_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    from_record_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    validate: Callable[[dict[str, Any]], None] | None = None  # the defense's own checks of its options
    expand_rule: Expand | None = None
    order: int = 2  # display order of its variants in a run (the bare classifier 0, the blur alone 1)
    # the gradient access it offers (Purifier.gradients), known before it is built for a registered class; None for
    # a factory, which says only once built
    gradients: tuple[str, ...] | None = None

    def expand(self, options: dict[str, Any], run: VariantOptions) -> list[tuple[dict[str, Any], str | None]]:
        """The variants ``--defense NAME:options`` stands for, as (options, label or None): the defense's own rule
        (ZeroPur: one per blur, profile and stages), else one variant with these options."""
        return self.expand_rule(options, run) if self.expand_rule is not None else [(dict(options), None)]

    def check_options(self, options: dict[str, Any]) -> None:
        """One :class:`UserError` for an unknown, run-owned or ill-typed option."""
        owned = sorted(set(options) & set(RUN_OWNED))
        if owned:
            raise UserError(f"defense {self.name!r}: option(s) {', '.join(owned)} are set for the whole run: use "
                            f"{', '.join(RUN_OWNED[k] for k in owned)} instead")
        unknown = sorted(set(options) - set(self.option_specs))
        if unknown and not self.open_options:
            raise UserError(f"unknown option(s) {', '.join(unknown)} for defense {self.name!r}; options: "
                            f"{', '.join(sorted(self.option_specs)) or '(none)'}")
        check_params(self.name, {k: p for k, p in self.option_specs.items() if p is not None}, options, "defense")
        if self.validate is not None:
            self.validate(options)

    def variant_label(self, options: dict[str, Any]) -> str:
        """The default name of a variant: the entry's own rule, else its name plus every option that differs from
        its default, e.g. ``my-squeeze[bits=3]``."""
        if self.label is not None:
            return self.label(options)
        diff = {k: v for k, v in options.items() if self.defaults.get(k, object()) != v}
        if not diff:
            return self.name
        from .fmt import fmt_value

        return self.name + "[" + ",".join(f"{k}={fmt_value(v)}" for k, v in sorted(diff.items())) + "]"


DEFENSES: dict[str, DefenseEntry] = {}
_LOADED_ENTRY_POINTS = False


def _param_for(annotation: Any, default: Any) -> Param | None:
    """The :class:`Param` of a constructor argument from its annotation (text under postponed evaluation) or,
    without one, its default's type; None when neither says (the defense checks it)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = "" if annotation is inspect.Parameter.empty else str(text).replace(" ", "")
    optional = default is None or "None" in text.split("|") or text.startswith("Optional[")
    base = [t for t in text.replace("Optional[", "").rstrip("]").split("|") if t and t != "None"]
    kind = {"int": "int", "float": "number", "bool": "bool", "str": "word"}.get(base[0] if len(base) == 1 else "")
    if kind is None and default is not None and default is not inspect.Parameter.empty:
        kind = {bool: "bool", int: "int", float: "number", str: "word"}.get(type(default))
    return Param(kind, optional=optional) if kind else None


def class_options(cls: type) -> tuple[dict[str, Param | None], dict[str, Any], bool]:
    """(option specs, defaults, open) of a Purifier subclass: its constructor's arguments after ``classifier``
    (less the run-owned ``seed``), typed from annotations/defaults, refined by the class's ``option_specs``."""
    sig = inspect.signature(cls.__init__)
    params = list(sig.parameters.values())[1:]  # self
    if params and params[0].name == "classifier":
        params = params[1:]
    specs: dict[str, Param | None] = {}
    defaults: dict[str, Any] = {}
    open_ = False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            open_ = True
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL or p.name in RUN_OWNED:
            continue
        specs[p.name] = _param_for(p.annotation, p.default)
        if p.default is not inspect.Parameter.empty:
            defaults[p.name] = p.default
    specs.update(getattr(cls, "option_specs", {}) or {})
    return specs, defaults, open_


def _class_factory(cls: type) -> Factory:
    takes_seed = "seed" in inspect.signature(cls.__init__).parameters

    def build(classifier: nn.Module, ctx: BuildContext, options: dict[str, Any]) -> nn.Module:
        kw = dict(options)
        if takes_seed:
            kw["seed"] = ctx.seed
        return cls(classifier, **kw)

    return build


def register_defense(name: str, *, factory: Factory | None = None, option_specs: dict[str, Param | None] | None = None,
                     defaults: dict[str, Any] | None = None, summary: str | None = None, open_options: bool = False,
                     label: Callable[[dict[str, Any]], str] | None = None,
                     record_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                     from_record_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                     validate: Callable[[dict[str, Any]], None] | None = None, expand: Expand | None = None,
                     order: int = 2) -> Callable:
    """Register a defense under ``name``: as a class decorator on a :class:`Purifier` subclass (options from its
    constructor), or, with ``factory``, a function building it. A name already taken is a :class:`UserError`."""

    def add(target: Any) -> Any:
        if not isinstance(name, str) or not name or any(c in name for c in ":,= "):
            raise UserError(f"a defense name must be a non-empty word without ':', ',', '=' or spaces, got {name!r}")
        if name in DEFENSES:
            raise UserError(f"the defense name {name!r} is taken ({DEFENSES[name].source}); register yours under "
                            "another name")
        if factory is None:
            if not (isinstance(target, type) and issubclass(target, Purifier)):
                raise UserError(f"defense {name!r}: register a zeropur_bench.Purifier subclass (or pass factory=)")
            if target.purify is Purifier.purify:
                raise UserError(f"defense {name!r}: {target.__name__} lacks purify(x); a Purifier defines it")
            if target.randomized is True and not takes_indices(target.purify):
                raise UserError(f"defense {name!r} is randomized: its purify must take indices (purify(x, indices)) "
                                "and draw per example from (seed, index)")
            specs, found, open_ = class_options(target)
            target.name = name
            doc = (inspect.getdoc(target) or name).splitlines()[0]
            entry = DefenseEntry(name, _class_factory(target), specs, found, summary or doc, _source(target),
                                 open_, label, record_fields, from_record_fields, validate, expand, order,
                                 tuple(target.gradients))
        else:
            entry = DefenseEntry(name, factory, dict(option_specs or {}), dict(defaults or {}), summary or name,
                                 _source(factory), open_options, label, record_fields, from_record_fields, validate,
                                 expand, order)
        DEFENSES[name] = entry
        return target

    return add if factory is None else add(factory)


def _source(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    if module.startswith("zeropur_bench."):
        return "built-in"
    origin = getattr(sys.modules.get(module), "__file__", None)
    return f"plugin {origin}" if origin else f"module {module}"


def get_defense(name: str) -> DefenseEntry:
    """The registered defense ``name`` (entry points loaded first), else a :class:`UserError` listing them."""
    load_entry_points()
    if name not in DEFENSES:
        raise UserError(f"unknown defense '{name}'; known: {', '.join(sorted(DEFENSES))} (a purifier of your own: "
                        "--plugin FILE, or an entry point in the group zeropur_bench.defenses)")
    return DEFENSES[name]


def load_plugin(path: str | Path) -> list[str]:
    """Import a plugin file (it registers its defenses with :func:`register_defense`); returns the names it
    added. A missing file, one that fails to import or registers nothing is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".py":
        raise UserError(f"--plugin {path}: not a Python file (.py) that exists")
    before = set(DEFENSES)
    module_name = f"zeropur_bench_plugin_{abs(hash(str(p.resolve())))}"
    if module_name in sys.modules:  # loaded before (a second run in one process): its defenses are registered
        return sorted(n for n, e in DEFENSES.items() if e.source == f"plugin {p.resolve()}")
    spec = importlib.util.spec_from_file_location(module_name, p.resolve())
    if spec is None or spec.loader is None:
        raise UserError(f"--plugin {path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except UserError as exc:
        sys.modules.pop(module_name, None)
        raise UserError(f"--plugin {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (a user's file: any error it raises is reported in one line)
        sys.modules.pop(module_name, None)
        raise UserError(f"--plugin {path} failed to import: {type(exc).__name__}: {exc}") from None
    added = sorted(set(DEFENSES) - before)
    if not added:
        raise UserError(f"--plugin {path} registered no defense (decorate a Purifier subclass with "
                        "@register_defense(\"name\"))")
    return added


def load_entry_points() -> None:
    """Register the defenses of installed packages (entry-point group ``zeropur_bench.defenses``: each entry point
    names a module or object whose import registers them), once per process. A broken one is a one-line
    :class:`UserError` naming its package."""
    global _LOADED_ENTRY_POINTS
    if _LOADED_ENTRY_POINTS:
        return
    _LOADED_ENTRY_POINTS = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        package = getattr(getattr(ep, "dist", None), "name", None) or ep.value.split(":")[0]
        try:
            ep.load()
        except UserError as exc:
            raise UserError(f"the defense plugin of package {package!r} (entry point {ep.name}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 (a third party's package: reported in one line)
            raise UserError(f"the defense plugin of package {package!r} (entry point {ep.name} = {ep.value}) is "
                            f"broken: {type(exc).__name__}: {exc}; fix or uninstall that package") from None

