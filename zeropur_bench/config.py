"""What a run is: :class:`EvalConfig` (data, classifier, threat, attacks, defense variants, estimator, device)
with :class:`AttackSpec` and :class:`DefenseSpec`, validated on construction, before any work."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from .device import check_device
from .errors import UserError
from .parsing import check_seed
from .threats import THREATS

SETTINGS = ("transfer", "adaptive")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
# Paper names an attack's column may carry only with that paper's / library's settings (see Attack.label).
RESERVED_LABELS = ("pgd-20", "pgd20", "autoattack")


def default_eps(dataset: str, threat: str) -> float:
    """Paper App. A.2: Linf 8/255 on CIFAR, 4/255 on ImageNet; L2 0.5."""
    if threat == "l2":
        return 0.5
    return 4 / 255 if dataset == "imagenet" else 8 / 255


def eps_str(eps: float, threat: str) -> str:
    if threat == "linf":
        frac = Fraction(eps * 255).limit_denominator(8)
        if abs(float(frac) / 255 - eps) < 1e-9:
            return f"{frac}/255"
    return f"{eps:g}"


@dataclass
class AttackSpec:
    """An attack by registry name with its parameters. Its column name (``key_for``) follows the resolved
    parameters: a paper's name (PGD-20, AutoAttack) only with that paper's settings; ``label`` overrides it,
    but may not claim a paper's name the settings do not earn."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def cls(self) -> Any:
        from .attacks import ATTACKS

        if self.name not in ATTACKS:
            raise UserError(f"unknown attack '{self.name}'; known: {', '.join(sorted(ATTACKS))}")
        return ATTACKS[self.name]

    def resolved(self, eps: float, threat: str) -> dict[str, Any]:
        """Parameters with defaults filled in and ``step`` resolved (what the attack runs with)."""
        return self.cls.resolve_params(dict(self.params), eps, THREATS[threat])

    def key_for(self, eps: float, threat: str, deterministic_target: bool | None = None,
                with_eps: bool = True) -> str:
        """The column name (and record key) of this attack at ``eps`` / ``threat``; ``with_eps=False``: the
        name without the eps it ran at (the series of an eps sweep)."""
        params = self.resolved(eps, threat)
        auto = self.cls.target_label(params, eps, THREATS[threat], deterministic_target, with_eps=with_eps)
        if not self.label:
            return auto
        norm = self.label.lower().replace(" ", "")
        if norm.startswith(RESERVED_LABELS) and self.label != auto:
            raise UserError(f"label '{self.label}' names a paper's attack, but these settings make '{auto}'; "
                            "choose another label")
        return self.label


# Fields of DefenseSpec before the defense registry (ZeroPur's knobs): still accepted, folded into ``options`` by the
# defense's own rule, and written back into records beside ``options`` by it.
LEGACY_DEFENSE_FIELDS = ("profile", "stages", "blur", "overrides", "calibration")


@dataclass(init=False)
class DefenseSpec:
    """A defense variant: a registered defense ``name`` (:mod:`zeropur_bench.defenses`) with its ``options``, a
    ``label`` (the variant's name; default the defense's own rule, e.g. ``zeropur-cf``) and, for a sweep's variant,
    ``sweep``: the swept setting(s), recorded so reports never parse the label.

    ``DefenseSpec(stages="c", profile="calibrated", blur=..., overrides={...}, calibration=...)`` (ZeroPur's fields
    before the registry) still works: the defense folds them into ``options``."""

    name: str
    options: dict[str, Any]
    label: str | None
    sweep: dict[str, Any] | None

    def __init__(self, name: str = "zeropur", options: dict[str, Any] | None = None, label: str | None = None,
                 sweep: dict[str, Any] | None = None, **legacy: Any) -> None:
        unknown = sorted(set(legacy) - set(LEGACY_DEFENSE_FIELDS))
        if unknown:
            raise UserError(f"unknown defense field(s) {', '.join(unknown)}; a defense takes name, options, label")
        self.name, self.label, self.sweep = name, label, sweep
        given = {k: v for k, v in legacy.items() if v is not None and v != {}}
        folded = self.entry.from_record_fields(given) if (given and self.entry.from_record_fields) else {}
        if given and self.entry.from_record_fields is None:
            raise UserError(f"defense {name!r} takes options (options={{...}}), not {', '.join(sorted(given))}")
        self.options = {**folded, **dict(options or {})}

    @property
    def entry(self) -> Any:
        from .defense import registered

        return registered(self.name)

    @property
    def key(self) -> str:
        """The variant's name in records and tables."""
        return self.label or self.entry.variant_label(self.options)

    def check(self) -> None:
        """The defense exists and takes these options (before anything is loaded)."""
        self.entry.check_options(self.options)

    def record_fields(self) -> dict[str, Any]:
        """What a record keeps of this variant: name, options, label, sweep, and the defense's own older fields."""
        entry = self.entry
        extra = entry.record_fields(self.options) if entry.record_fields else {}
        return {"name": self.name, **extra, "options": self.options, "label": self.label, "sweep": self.sweep}

    def build(self, classifier: nn.Module, context: Any) -> nn.Module:
        """The defense in front of ``classifier`` (``context``: :class:`zeropur_bench.defenses.BuildContext`)."""
        self.check()
        return self.entry.factory(classifier, context, dict(self.options))

    def option(self, key: str, default: Any = None) -> Any:
        """An option's value, or the defense's default for it."""
        return self.options.get(key, self.entry.defaults.get(key, default))


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass
class EvalConfig:
    """Everything that determines a run's results (and how to rerun it)."""

    model: str
    dataset: str = "cifar10"
    threat: str = "linf"
    eps: float | None = None
    setting: str = "transfer"
    attacks: list[AttackSpec] = field(default_factory=lambda: [AttackSpec("pgd")])
    defenses: list[DefenseSpec] = field(default_factory=lambda: [DefenseSpec(stages="c"), DefenseSpec(stages="cf")])
    checkpoint: str | None = None
    model_dir: str | None = None
    n_ex: int = 200
    split: str = "test"
    data_seed: int | None = None  # None: the first n_ex (as RobustBench); else a seeded random subset
    seed: int = 0  # attack and defense randomness, kept apart from the data seed
    estimator: str = "one-shot"
    estimator_n: int = 1
    batch_size: int = 100
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    recipe: str | None = None  # how the classifier was trained, for tables (e.g. "standard")
    # adaptive: run the attacks in order, each only on the examples every earlier attack left unbroken (the
    # AutoAttack way): the per-example worst case for a fraction of the cost; each later column is "on survivors"
    cascade: bool = False

    def __post_init__(self) -> None:
        from .data import check_dataset
        from .estimators import ESTIMATORS, WORST_OF_N_MIN

        self.attacks = [a if isinstance(a, AttackSpec) else AttackSpec(**a) for a in self.attacks]
        self.defenses = [d if isinstance(d, DefenseSpec) else DefenseSpec(**d) for d in self.defenses]
        check_dataset(self.dataset, self.split)
        self.threat = str(self.threat).lower()
        if self.threat not in THREATS:
            raise UserError(f"unknown threat model '{self.threat}'; known: {', '.join(THREATS)}")
        if self.setting not in SETTINGS:
            raise UserError(f"unknown setting '{self.setting}'; known: {', '.join(SETTINGS)}")
        if self.eps is None:
            self.eps = default_eps(self.dataset, self.threat)
        limit = 1.0 if self.threat == "linf" else 64.0
        if not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool) and math.isfinite(self.eps)
                and 0 < self.eps <= limit):
            raise UserError(f"eps must be in (0, {limit:g}] for {self.threat}, got {self.eps}"
                            + (" (give Linf eps as a fraction of 1, e.g. 8/255)" if isinstance(self.eps, (int, float))
                               and self.eps > limit else ""))
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype '{self.dtype}'; known: {', '.join(DTYPES)}")
        _positive_int(self.n_ex, "n_ex (--n-ex)")
        _positive_int(self.batch_size, "batch_size (--batch-size)")
        if self.data_seed is not None:
            check_seed(self.data_seed, "data_seed (--data-seed)")
        check_seed(self.seed, "seed (--seed)")
        if self.estimator not in ESTIMATORS:
            raise UserError(f"unknown estimator '{self.estimator}'; known: {', '.join(ESTIMATORS)}")
        _positive_int(self.estimator_n, "estimator_n (--estimator-n)")
        if self.estimator == "one-shot" and self.estimator_n != 1:
            raise UserError(f"the one-shot estimator makes one call; --estimator-n {self.estimator_n} needs "
                            "--estimator logit-avg, majority or worst-of-n")
        if self.estimator == "worst-of-n" and self.estimator_n < WORST_OF_N_MIN:
            raise UserError(f"the worst-of-n estimator judges an example right only if all N resubmissions are; "
                            f"give --estimator-n {WORST_OF_N_MIN} or more (DiffHammer; AutoAttack PR #105), got "
                            f"{self.estimator_n}")
        check_device(self.device)
        if not self.attacks:
            raise UserError("give at least one attack")
        if not self.defenses:
            raise UserError("give at least one defense variant (or 'none')")
        for d in self.defenses:
            d.check()
        keys = [d.key for d in self.defenses]
        if len(set(keys)) != len(keys):
            raise UserError(f"two defense variants share the name {sorted(k for k in keys if keys.count(k) > 1)[0]!r}; "
                            "give them distinct labels")
        if not isinstance(self.cascade, bool):
            raise UserError(f"cascade must be true or false, got {self.cascade!r}")
        if self.cascade and self.setting != "adaptive":
            raise UserError("a cascade attacks each defended model on its own survivors: use it with --setting "
                            "adaptive (the transfer setting crafts every attack once for all variants)")
        adaptive_defended = any(d.name != "none" for d in self.defenses)  # the bare classifier is no defense
        for a in self.attacks:
            cls = a.cls
            if (cls.needs_defense or cls.adaptive_only) and self.setting == "transfer":
                raise UserError(f"attack '{a.name}' attacks the defense itself: use --setting adaptive")
            if (cls.needs_defense or cls.adaptive_only) and not adaptive_defended:
                raise UserError(f"attack '{a.name}' attacks a defense, but the only variant is 'none'; "
                                "add a defense (--defense NAME) or use a transfer attack such as pgd")
            a.resolved(self.eps, self.threat)  # unknown or run-owned keys fail here, before any work
        akeys = [a.key_for(self.eps, self.threat) for a in self.attacks]
        if len(set(akeys)) != len(akeys):
            raise UserError(f"two attacks share the column {sorted(k for k in akeys if akeys.count(k) > 1)[0]!r}; "
                            "give them different parameters or labels")

    @property
    def norm(self) -> str:
        return THREATS[self.threat]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attacks"] = [{**asdict(a), "key": a.key_for(self.eps, self.threat), "family": a.cls.family_name(),
                         "resolved": a.resolved(self.eps, self.threat)} for a in self.attacks]
        d["defenses"] = [{**v.record_fields(), "key": v.key} for v in self.defenses]
        d["eps_str"] = eps_str(self.eps, self.threat)
        if d.get("checkpoint"):
            from .data import portable_path

            d["checkpoint"] = portable_path(d["checkpoint"]) if os.path.isabs(d["checkpoint"]) else d["checkpoint"]
        return d
