"""The one set of run options (issue "one set of run options"): ``run``, ``sweep`` and ``sanity`` take them from
:func:`run_options` and build their configurations with :func:`build_configs`.

``run`` takes every option of :data:`OPTIONS`; the others leave some out (``exclude`` / ``only``) or change a
default or help text (``changes``, e.g. sanity's single ``--stages c``). A command passes the values it got to
:class:`RunOptions`; an option a command leaves out keeps its default there, which is the engine's default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, TypeVar

import click

from ..runspec import DEFAULT_PROFILE, PROFILE_NAMES

if TYPE_CHECKING:
    from ..config import AttackSpec, EvalConfig

DATASET_CHOICES = ("cifar10", "cifar100", "imagenet")
F = TypeVar("F", bound=Callable[..., Any])

# name (the parameter a command receives) → (option declarations, click.option keyword arguments), in the order
# `run --help` lists them.
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "dataset": (("--dataset",), dict(type=click.Choice(DATASET_CHOICES), default="cifar10", show_default=True)),
    "threat": (("--threat",), dict(
        type=click.Choice(["linf", "l2"], case_sensitive=False), default="linf", show_default=True,
        help="Threat model of the ATTACK. Purification stays L∞ with its own budget (eps_c, eps_f) whatever the "
             "threat model, as in the paper.")),
    "model": (("--model",), dict(
        default=None, help="Shipped classifier (e.g. resnet20-cifar10-standard), built-in architecture (with "
                           "--checkpoint) or RobustBench zoo name (see `list`). Default: the shipped "
                           "resnet20-<dataset>-standard where it exists, else RobustBench 'Standard'.")),
    "checkpoint": (("--checkpoint",), dict(default=None, help="Local checkpoint for a built-in architecture.")),
    "model_dir": (("--model-dir",), dict(
        default=None, help="Folder of RobustBench checkpoints (<dir>/<dataset>/<threat>/<name>.pt).")),
    "data_dir": (("--data-dir",), dict(default=None, help="Data folder (default: $ZEROPUR_BENCH_DATA, else ./data).")),
    "plugins": (("--plugin", "plugins"), dict(
        multiple=True, help="A Python file that registers defenses of your own (@register_defense); repeatable. "
                            "Installed packages register theirs through the entry-point group "
                            "zeropur_bench.defenses.")),
    "defenses": (("--defense", "defenses"), dict(
        multiple=True, help="A registered defense, optionally with options: NAME[:k=v,...]. Built in: "
                            "zeropur (default), blur (the blur alone, g(x): the paper's Table 1 baseline), none; "
                            "`zeropur-bench list` shows every registered one. Repeatable: --defense zeropur "
                            "--defense blur.")),
    "stages": (("--stages",), dict(
        multiple=True, type=click.Choice(["c", "cf"]),
        help="Coarse only (c) and/or coarse + fine (cf); repeat for several variants on ONE adversarial set. "
             "Default: both.")),
    "profiles": (("--profile", "profiles"), dict(
        multiple=True, type=click.Choice(PROFILE_NAMES),
        help="authors (the authors' code), paper (the paper's text) or calibrated (the authors' settings with the "
             "ILA weight fitted to this classifier on clean training images). Repeatable: one adversarial set "
             f"serves every profile. Default: {DEFAULT_PROFILE}.")),
    "calibration_file": (("--calibration", "calibration_file"), dict(
        default=None, help="Calibration file (zeropur-bench calibrate) for --profile calibrated. Default: the "
                           "shipped calibration of a shipped classifier, else one computed now on clean training "
                           "images.")),
    "blur": (("--blur",), dict(
        multiple=True, help="Blur spec: median:3, gaussian:1.2, tv:0.1 ... Repeatable. Default: the paper's blur "
                            "for the classifier's training recipe (median:3 for vanilla, gaussian:1.2 for "
                            "standard/strong), median:3 when the recipe is unknown.")),
    "zp_overrides": (("--zp", "zp_overrides"), dict(
        default="", help="ZeroPur overrides, e.g. 'coarse_steps=5,fine_steps=20'.")),
    "attacks": (("--attack", "attacks"), dict(
        multiple=True, help="Registered attack, optionally with parameters: NAME[:k=v,...], e.g. pgd:steps=40 or "
                            "autoattack:version=standard. Repeatable. Default: pgd (PGD-20) and "
                            "autoattack:version=rand (AutoAttack-rand).")),
    "setting": (("--setting",), dict(
        type=click.Choice(["transfer", "adaptive"]), default="transfer", show_default=True,
        help="transfer: crafted on the bare classifier then purified (Tables 2–5); adaptive: crafted against the "
             "defended model (Table 6).")),
    "cascade": (("--cascade",), dict(
        is_flag=True, help="adaptive: run the attacks in the order given, each only on the examples every earlier "
                           "one left unbroken (as AutoAttack does): the per-example worst case for a fraction of "
                           "the cost; the record says which attack broke each example, and at which step.")),
    "eps": (("--eps",), dict(
        default=None, help="Attack budget, e.g. 8/255. Default: Linf 8/255 (CIFAR), 4/255 (ImageNet); L2 0.5.")),
    "n_ex": (("--n-ex",), dict(
        type=int, default=None, help="Number of test examples (the first n). Default: 100 for the built-in CIFAR "
                                     "ResNets (a few minutes on 2 CPU cores), 10 for RobustBench zoo models "
                                     "(WRN-28-10 is ~40x slower on CPU).")),
    "batch_size": (("--batch-size",), dict(type=int, default=100, show_default=True)),
    "device": (("--device",), dict(default="cpu", show_default=True)),
    "dtype": (("--dtype",), dict(
        type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
        help="bf16 = autocast; validate against fp32 before reporting bf16 numbers.")),
    "channels_last": (("--channels-last",), dict(
        is_flag=True, help="channels_last memory format (faster convolutions on CPU).")),
    "seed": (("--seed",), dict(type=int, default=0, show_default=True, help="Attack and defense seed.")),
    "data_seed": (("--data-seed",), dict(
        type=int, default=None, help="Take a seeded random subset instead of the first n.")),
    "estimator": (("--estimator",), dict(
        type=click.Choice(["one-shot", "logit-avg", "majority", "worst-of-n"]), default="one-shot", show_default=True,
        help="How a stochastic defense is judged, clean and attacked alike (collapses to one call if "
             "deterministic); worst-of-n: right only if all --estimator-n (>= 10) calls are right.")),
    "estimator_n": (("--estimator-n",), dict(type=int, default=1, show_default=True)),
    "recipe": (("--recipe",), dict(
        default=None, help="How your classifier was trained (vanilla/standard/strong/...), for tables; shipped and "
                           "registered classifiers bring their own.")),
    "out": (("--out",), dict(
        default=None, help="Record path, or a folder (existing, or ending in /) for the default name "
                           "<dataset>-<threat>-<model>-<setting>-<hash>.json (default folder: results/).")),
    "shard": (("--shard",), dict(
        default=None, help="K/N: compute only batches b with b % N == K into the shared <record>.partial/ (one "
                           "job of an array); assemble with --merge-only once all N are done.")),
    "merge_only": (("--merge-only",), dict(
        is_flag=True, help="Compute nothing: assemble the record from <record>.partial/ when every batch exists, "
                           "else list the missing ones and exit 2.")),
    "force": (("--force",), dict(
        is_flag=True, help="Recompute even if --out already holds this run's finished record (same configuration, "
                           "code and batch size), which is otherwise reported, not recomputed.")),
    "no_progress": (("--no-progress",), dict(is_flag=True)),
}


def run_options(*, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                changes: Mapping[str, Mapping[str, Any]] | None = None) -> Callable[[F], F]:
    """Decorator: the command takes ``run``'s options (:data:`OPTIONS`, in run's order), those in ``only`` if
    given, less those in ``exclude``; ``changes[name]`` updates an option's keyword arguments (its default, help,
    ``multiple`` ...; the parameter name stays, so :class:`RunOptions` receives it)."""
    changes = dict(changes or {})
    exclude = set(exclude)
    names = [n for n in OPTIONS if (only is None or n in set(only)) and n not in exclude]
    unknown = (set(changes) | exclude | set(only or ())) - set(OPTIONS)
    if unknown:
        raise ValueError(f"not run options: {sorted(unknown)}")  # a programming error, at import

    def decorate(fn: F) -> F:
        for name in reversed(names):  # click lists options in decoration order, outermost first
            decls, kwargs = OPTIONS[name]
            fn = click.option(*decls, **{**kwargs, **changes.get(name, {})})(fn)
        return fn

    return decorate


@dataclass
class RunOptions:
    """The values of :func:`run_options` a command received (an option it leaves out keeps its default here).
    A repeatable option a command takes once (sanity's ``--stages c``) may be given as one string."""

    dataset: str = "cifar10"
    threat: str = "linf"
    model: str | None = None
    checkpoint: str | None = None
    model_dir: str | None = None
    data_dir: str | None = None
    plugins: tuple[str, ...] = ()
    defenses: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    calibration_file: str | None = None
    blur: tuple[str, ...] = ()
    zp_overrides: str = ""
    attacks: tuple[str, ...] = ()
    setting: str = "transfer"
    cascade: bool = False
    eps: str | None = None
    n_ex: int | None = None
    batch_size: int = 100
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    seed: int = 0
    data_seed: int | None = None
    estimator: str = "one-shot"
    estimator_n: int = 1
    recipe: str | None = None
    no_progress: bool = False

    def __post_init__(self) -> None:
        for name in ("plugins", "defenses", "stages", "profiles", "blur", "attacks"):
            value = getattr(self, name)
            setattr(self, name, () if value is None else (value,) if isinstance(value, str) else tuple(value))

    @classmethod
    def take(cls, values: dict[str, Any]) -> "RunOptions":
        """The run options among a command's parameters ``values`` (removed from it)."""
        return cls(**{f.name: values.pop(f.name) for f in fields(cls) if f.name in values})


@dataclass
class Resolved:
    """The run options with their defaults filled in (but ``stages``, empty when not given: run makes C and C-F,
    a sweep C-F); ``base`` holds the :class:`EvalConfig` keyword arguments other than ``defenses``."""

    model: str
    attacks: list[AttackSpec]
    defenses: list[str]
    stages: list[str]
    profiles: list[str]
    blurs: list[str]
    overrides: dict[str, Any]
    base: dict[str, Any]
    calibration_file: str | None = None


Layout = Callable[[Resolved], "list[EvalConfig]"]


def run_layout(r: Resolved) -> list[EvalConfig]:
    """``run``: one configuration holding every defense variant of the options (:func:`runspec.build_variants`)."""
    from ..config import EvalConfig
    from ..runspec import build_variants

    return [EvalConfig(**r.base, defenses=build_variants(r.defenses, r.stages, r.profiles, r.blurs, r.overrides,
                                                         r.calibration_file))]


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def _is_main_process() -> bool:
    from .. import distributed

    return not (distributed.launched_by_torchrun() and os.environ.get("RANK") != "0")


def build_configs(opts: RunOptions, layout: Layout = run_layout) -> list[EvalConfig]:
    """The evaluation configuration(s) of a command's run options; nothing is loaded (the engine loads the
    classifier and builds the defenses, and a calibration a defense needs is fitted there). ``layout`` turns the
    resolved options into configurations: :func:`run_layout` for ``run``; ``sweep`` and ``sanity`` pass their own.
    The default classifier is said on stderr, on the main process only. ``--plugin`` files are imported first."""
    from .. import distributed
    from ..defense import load_plugin
    from ..runspec import default_attacks, default_blur, default_model, default_n_ex, parse_attack, parse_kv, \
        parse_number

    for plugin in opts.plugins:  # before any --defense is looked up
        load_plugin(plugin)
    device = distributed.resolve_device(opts.device)  # under torchrun: cuda -> cuda:LOCAL_RANK
    model = opts.model
    if model is None:
        model, msg = default_model(opts.dataset)
        if _is_main_process():
            _echo_err(msg)
    n_ex = opts.n_ex if opts.n_ex is not None else default_n_ex(model)
    attacks = [parse_attack(a) for a in opts.attacks] or default_attacks()
    overrides = parse_kv(opts.zp_overrides, "--zp")
    base = dict(model=model, dataset=opts.dataset, threat=opts.threat, setting=opts.setting,
                eps=parse_number(opts.eps, "--eps") if opts.eps is not None else None, attacks=attacks,
                checkpoint=opts.checkpoint, model_dir=opts.model_dir, n_ex=n_ex, data_seed=opts.data_seed,
                seed=opts.seed, estimator=opts.estimator, estimator_n=opts.estimator_n, batch_size=opts.batch_size,
                device=device, dtype=opts.dtype, channels_last=opts.channels_last, recipe=opts.recipe,
                cascade=opts.cascade)
    resolved = Resolved(model=model, attacks=attacks, defenses=list(dict.fromkeys(opts.defenses)) or ["zeropur"],
                        stages=list(dict.fromkeys(opts.stages)), profiles=list(dict.fromkeys(opts.profiles))
                        or [DEFAULT_PROFILE], blurs=list(dict.fromkeys(opts.blur))
                        or [default_blur(model, opts.checkpoint, opts.recipe)], overrides=overrides, base=base,
                        calibration_file=opts.calibration_file)
    return layout(resolved)
