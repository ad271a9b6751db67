"""The one reader of run records: :class:`RecordView`, typed, with the fields reports need.

Tables, figures, ``check``, ``sweep`` and ``sanity`` read records only through it. Facts that earlier code sniffed
from names are record fields (schema v2; fields are added, never renamed; ``benchmarks/migrate_records.py``
added them to the committed records):

* ``config.attacks[i].family`` (the attack's family, e.g. ``pgd``, ``autoattack``, ``bpda-eot``) and
  ``config.attacks[i].key_without_eps`` (its column name with the eps it ran at left out, for eps sweeps) beside
  ``resolved`` (its settings);
* ``variants[k].defense.sweep``: ``{parameter: value}`` for a sweep's variants, null otherwise;
* ``variants[k].defense.calibration``: the calibration of a ``calibrated`` variant, null otherwise;
* ``variants[k].defense.stages`` for every ZeroPur variant;
* ``variants[k].defense.options``: the options of the registered defense (the defense registry, issue 31).

Nothing here depends on which defense a variant is: its settings come from its ``options`` (or, in a record made
before them, from its resolved settings).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError

SCHEMA = "zeropur-bench/record/v2"
OLD_SCHEMAS = ("zeropur-bench/record/v1",)
RECORD_PREFIX = "zeropur-bench/record/"  # a schema under it that is neither SCHEMA nor old: a newer version's
_VARIANT_ORDER = {"none": 0, "blur": 1}
_STAGE_ORDER = {"c": 0, "cf": 1}
_PROFILE_ORDER = {"authors": 0, "calibrated": 1, "paper": 2}
# how tables, figures and model_info name a registered defense (its registry name otherwise)
DISPLAY_NAMES = {"zeropur": "ZeroPur"}


class RecordError(UserError):
    """A file that is not a readable v2 record (the message names it and says what to do)."""


@dataclass(frozen=True)
class AttackView:
    """One attack of a record: its column ``key``, registry ``name``, ``family`` and resolved ``params``."""

    key: str
    name: str
    family: str
    params: dict[str, Any]
    key_without_eps: str
    label: str | None = None
    given: dict[str, Any] = field(default_factory=dict)  # the parameters as given (before eps resolved step)


@dataclass(frozen=True)
class Metric:
    """An accuracy with its 95% Wilson interval (fractions); ``acc`` is None when not measured."""

    acc: float | None
    ci: tuple[float, float] | None

    @property
    def measured(self) -> bool:
        return self.acc is not None


@dataclass(frozen=True)
class VariantView:
    """One defense variant of a record: what it is, and its summary / per-example vectors."""

    key: str
    name: str  # the registered defense: zeropur | blur | none | a plugin's
    profile: str | None
    stages: str | None
    blur: str | None
    overrides: dict[str, Any]
    resolved: dict[str, Any]
    calibration: dict[str, Any] | None
    sweep: dict[str, Any] | None
    deterministic: bool | None
    passes_per_prediction: float | None
    summary: dict[str, Any]
    examples: dict[str, Any]
    defense: dict[str, Any] = field(repr=False)  # the record's defense block as written
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.summary.get("n") or 0)

    def metric(self, name: str, attack: str | None = None) -> Metric:
        """``name`` in summary (``defended_clean_acc``, ``worst_case_acc``; with ``attack``: ``robust_acc``,
        ``adv_acc``, ``robust_final_acc``) and its interval."""
        acc = self.summary.get(name)
        ci = (self.summary.get("ci95") or {}).get(name)
        if attack is not None:
            acc = (acc or {}).get(attack) if isinstance(acc, dict) else None
            ci = (ci or {}).get(attack) if isinstance(ci, dict) else None
        if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not math.isfinite(acc):
            return Metric(None, None)
        ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci)
        return Metric(float(acc), (float(ci[0]), float(ci[1])) if ok else None)

    def sort_key(self) -> tuple:
        """Display order: no defense, the blur alone, then the others, stages C before C-F, authors / calibrated /
        paper."""
        if self.name in _VARIANT_ORDER:
            return (_VARIANT_ORDER[self.name], 0, 0)
        return (2, _STAGE_ORDER.get(str(self.stages), 2), _PROFILE_ORDER.get(str(self.profile), 3))


@dataclass(frozen=True)
class RecordView:
    """A v2 run record, typed. ``raw`` is the record as read; ``path`` where it was found (None in memory)."""

    raw: dict[str, Any] = field(repr=False)
    path: str | None
    dataset: str
    threat: str
    eps: float
    eps_str: str
    setting: str
    split: str
    model: str
    arch: str
    recipe: str | None
    checkpoint: str | None
    n: int
    seed: int
    batch_size: int
    attacks: tuple[AttackView, ...]
    variants: dict[str, VariantView]
    primary: str
    estimator: str = "one-shot"
    estimator_n: int = 1
    dtype: str = "fp32"
    cascade: bool = False  # adaptive attacks run as a cascade: later columns are "on survivors"

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str | os.PathLike | None = None) -> "RecordView":
        """Read a record dict; a missing or malformed field is a :class:`RecordError` naming the record."""
        where = str(path) if path is not None else "the record"
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: not a record (a JSON object is expected)")
        if raw.get("schema") in OLD_SCHEMAS:
            raise RecordError(f"{where} is a {raw['schema']} record, made before robust accuracy required the clean "
                              "image right too; re-make it with the same command (its 'config' holds it)")
        if raw.get("schema") != SCHEMA:
            schema = raw.get("schema")
            if isinstance(schema, str) and schema.startswith(RECORD_PREFIX):
                raise RecordError(f"{where}: field schema is '{schema}', which this version does not read (it reads "
                                  f"{SCHEMA}); update zeropur-bench to read it")
            raise RecordError(f"{where}: not a {SCHEMA} record (field schema is {schema!r})")
        try:
            return cls._parse(raw, path)
        except KeyError as exc:
            raise RecordError(f"{where} is damaged (field {exc} is missing); re-make it with the command in its "
                              "'config', or remove it") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"{where} is damaged ({exc}); re-make it with the command in its 'config', or "
                              "remove it") from None

    @classmethod
    def _parse(cls, raw: dict[str, Any], path: str | os.PathLike | None) -> "RecordView":
        c = raw["config"]
        attacks = tuple(_attack(a) for a in c["attacks"])
        variants = {}
        for k, v in raw["variants"].items():
            variants[str(k)] = _variant(str(k), v, [a.key for a in attacks])
        if not variants:
            raise ValueError("no defense variants")
        mi = (raw.get("provenance") or {}).get("model") or {}
        primary = c.get("primary_variant") or list(variants)[-1]
        return cls(raw=raw, path=str(path) if path is not None else raw.get("_path"),
                   dataset=str(c["dataset"]), threat=str(c["threat"]), eps=float(c["eps"]),
                   eps_str=str(c.get("eps_str") or c["eps"]), setting=str(c["setting"]),
                   split=str(c.get("split") or "test"), model=str(c["model"]),
                   arch=str(c.get("arch") or mi.get("arch") or c["model"]), recipe=_recipe(c, mi),
                   checkpoint=c.get("checkpoint"), n=_check_summary(raw["summary"], "summary"),
                   seed=int(c.get("seed", 0)),
                   batch_size=int(c.get("batch_size", 100)), attacks=attacks, variants=variants, primary=primary,
                   estimator=str(c.get("estimator", "one-shot")), estimator_n=int(c.get("estimator_n", 1)),
                   dtype=str(c.get("dtype", "fp32")), cascade=bool(c.get("cascade", False)))

    @classmethod
    def read(cls, path: str | os.PathLike) -> "RecordView":
        """Read a record file (one-line errors for a missing, unreadable or non-record file)."""
        from ..fsio import check_regular

        p = Path(path)
        if not check_regular(p, "record", "read"):  # a FIFO is never opened: reading it would block
            raise RecordError(f"record '{p}' does not exist")
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"record '{p}' does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"cannot read record '{p}': {exc}") from None
        return cls.from_dict(raw, p)

    # -- what reports ask ----------------------------------------------------------------------------------------
    @property
    def attack_keys(self) -> list[str]:
        return [a.key for a in self.attacks]

    def attack(self, key: str) -> AttackView | None:
        return next((a for a in self.attacks if a.key == key), None)

    def ordered_variants(self) -> list[VariantView]:
        """Variants in display order (:meth:`VariantView.sort_key`, stable)."""
        return sorted(self.variants.values(), key=VariantView.sort_key)

    @property
    def comparison(self) -> dict[str, Any]:
        return (self.raw.get("keys") or {}).get("comparison") or {}

    @property
    def comparison_hash(self) -> str | None:
        return (self.raw.get("keys") or {}).get("comparison_hash")

    @property
    def model_id(self) -> dict[str, Any]:
        """The classifier's identity in the comparison key: arch and checkpoint sha256 (or the zoo name)."""
        return self.comparison.get("model") or {}

    @property
    def model_sha256(self) -> str | None:
        return self.model_id.get("checkpoint_sha256") or None

    @property
    def model_info(self) -> dict[str, Any]:
        return (self.raw.get("provenance") or {}).get("model") or {}

    @property
    def adversarial_training(self) -> str | None:
        """The classifier's adversarial-training method as its checkpoint records it (e.g. ``"fgsm-rs"``), or
        None for a naturally trained one (or one whose checkpoint does not say, such as a zoo model)."""
        recipe = (self.model_info.get("meta") or {}).get("recipe")
        adv = recipe.get("adversarial") if isinstance(recipe, dict) else None
        name = adv.get("name") if isinstance(adv, dict) else adv
        return str(name) if name and str(name) != "none" else None

    @property
    def data_info(self) -> dict[str, Any]:
        return (self.raw.get("provenance") or {}).get("data") or {}

    @property
    def bare(self) -> dict[str, Any] | None:
        return self.raw.get("bare_classifier")

    @property
    def indices(self) -> list[int]:
        return [int(i) for i in self.raw["examples"]["index"]]

    def cost(self, attack: str) -> dict[str, float]:
        """Per-image classifier passes and seconds of ``attack`` (``forward_passes_per_image`` ...)."""
        return dict((self.raw.get("cost") or {}).get(attack) or {})

    @property
    def wall_seconds(self) -> float | None:
        run = (self.raw.get("cost") or {}).get("_run") or {}
        return run.get("wall_seconds_this_call")


def _attack(a: Any) -> AttackView:
    if isinstance(a, str):
        raise ValueError(f"attack entry {a!r} has no resolved settings")
    name = str(a["name"])
    key = str(a["key"])
    return AttackView(key=key, name=name, family=str(a.get("family") or name), params=dict(a["resolved"]),
                      key_without_eps=str(a.get("key_without_eps") or key), label=a.get("label"),
                      given=dict(a.get("params") or {}))


def _variant(key: str, v: dict[str, Any], attack_keys: list[str]) -> VariantView:
    d = dict(v["defense"])
    s = v.get("summary")
    if not isinstance(s, dict) or "defended_clean_acc" not in s or "n" not in s:
        raise ValueError(f"variant {key!r} has no summary")
    _check_summary(s, f"variants.{key}.summary")
    missing = [a for a in attack_keys if a not in (s.get("robust_acc") or {})]
    if missing:
        raise ValueError(f"variant {key!r} has no result for {', '.join(missing)}")
    name = str(d.get("name") or "zeropur")  # the first records wrote no name: they are ZeroPur's
    passes = d.get("forward_passes_per_prediction")
    resolved = dict(d.get("resolved") or {})
    # a variant's settings: its options; a record made before them: the settings its defense resolved
    options = d.get("options")
    if not isinstance(options, dict):
        options = {k: resolved[k] for k in ("profile", "stages", "blur") if k in resolved}
    return VariantView(key=key, name=name, profile=options.get("profile"), stages=options.get("stages"),
                       blur=d.get("blur") or options.get("blur"), options=dict(options),
                       overrides=dict(d.get("overrides") or {}), resolved=resolved,
                       calibration=d.get("calibration"), sweep=d.get("sweep"), deterministic=d.get("deterministic"),
                       passes_per_prediction=float(passes) if isinstance(passes, (int, float)) else None,
                       summary=s, examples=v.get("examples") or {}, defense=d)


_SCALARS = ("clean_acc", "defended_clean_acc", "worst_case_acc", "adv_worst_case_acc")
_BY_ATTACK = ("robust_acc", "robust_final_acc", "adv_acc")


def _is_acc(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1


def _check_summary(s: Any, field: str) -> int:
    """A summary's ``n`` (returned) and accuracies, each a number in [0, 1]: a value that is not (``"high"``,
    NaN) is a ValueError naming its field, never shown as "not measured"."""
    if not isinstance(s, dict):
        raise ValueError(f"field {field} is not an object")
    n = s.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"field {field}.n is {n!r}, not a positive number of examples")
    for name in _SCALARS:
        if name in s and not _is_acc(s[name]):
            raise ValueError(f"field {field}.{name} is {s[name]!r}, not an accuracy in [0, 1]")
    for name in _BY_ATTACK:
        if name not in s:
            continue
        if not isinstance(s[name], dict):
            raise ValueError(f"field {field}.{name} is {s[name]!r}, not an object {{attack: accuracy}}")
        for a, x in s[name].items():
            if not _is_acc(x):
                raise ValueError(f"field {field}.{name}.{a} is {x!r}, not an accuracy in [0, 1]")
    return n


def _recipe(config: dict, model_info: dict) -> str | None:
    r = config.get("recipe") or model_info.get("recipe")
    if not r:
        meta = (model_info.get("meta") or {}).get("recipe")
        if isinstance(meta, dict):
            meta = meta.get("aug") or meta.get("name")
        r = meta if isinstance(meta, str) else None
    return str(r) if r else None


def scan_records(paths: str | os.PathLike | Iterable[str | os.PathLike], *, warn: bool = True) -> list[RecordView]:
    """Every v2 record in the given files / folders (folders recursively, ``*.json``, sorted by path).

    A record of an older or unknown schema, or a damaged one (a missing field, a summary that is not an accuracy),
    is skipped with one warning naming it and the field (never shown as "not measured"); other JSON files
    (sanity reports, calibrations, resume state) are skipped silently; a missing folder gives []."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():  # regular files only: a FIFO named *.json would block the read
            files += sorted(q for q in p.rglob("*.json") if ".partial" not in q.parent.name and q.is_file())
        elif p.is_file():
            files.append(p)
    out = []
    for f in files:
        try:
            raw = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if warn:
                warnings.warn(f"{f} is not readable JSON ({exc}) (skipped)", stacklevel=2)
            continue
        schema = raw.get("schema") if isinstance(raw, dict) else None
        if not (isinstance(schema, str) and schema.startswith(RECORD_PREFIX)):
            continue  # not a run record (a sanity report, a calibration, resume state, another tool's JSON)
        try:
            out.append(RecordView.from_dict(raw, f))
        except RecordError as exc:
            if warn:
                warnings.warn(f"{exc} (skipped)", stacklevel=2)
    return out
