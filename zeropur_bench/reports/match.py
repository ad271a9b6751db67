"""Which records fill which table, and which paper row each measured defense variant stands under.

A measured variant of the table's method (ZeroPur) stands under the paper's row of that method with the same
training recipe and stages, on the same architecture when the paper has it, else on the paper's first
architecture (the row names its own). The blur alone, the bare classifier, recipes the paper does not have, an
adversarially trained classifier (the paper's rows are naturally trained) and other purifiers (``Measured
purifiers``) stand under no paper row.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..profile_names import SAME_C_PROFILES
from ..records.view import DISPLAY_NAMES, AttackView, Metric, RecordView, VariantView
from .paper import PaperRow, TableSpec, arch_key

_EPS_TOL = 1e-6
_ARCH_FALLBACK = {"resnet18": ("ResNet-18", 11.2), "preactresnet18": ("PreAct ResNet-18", 11.2),
                  "wrn2810": ("WideResNet-28-10", 36.5), "resnet50": ("ResNet-50", None)}
# Resolved ZeroPur settings that do not change what the defended model computes (numerics and gradients aside).
_DEFENSE_IGNORED = ("dtype", "channels_last", "seed", "grad_mode", "surrogate")
_DEFENSE_ESSENTIAL = ("profile", "stages", "blur")


@dataclass(frozen=True)
class Arch:
    label: str  # "ResNet-20 (CIFAR, 0.27M)"
    short: str  # "ResNet-20"
    key: str  # "resnet20"


@dataclass
class Adaptive:
    """Tables 2 and 3's adaptive column: robust accuracy under BPDA+EOT (any step) from an adaptive record."""

    metric: Metric
    attack: AttackView
    record: RecordView


@dataclass
class MeasuredRow:
    """One defense variant of one record (Table 6: per BPDA+EOT attack too), placed under ``paper``."""

    rid: str
    record: RecordView
    variant: VariantView
    arch: Arch
    paper: PaperRow | None
    same_arch: bool
    attack: AttackView | None = None  # Table 6: the row's BPDA+EOT attack
    adaptive: Adaptive | None = None
    show_dataset: bool = False  # Table 6 takes records of any dataset
    of_method: bool = False  # a variant of the table's method (ZeroPur): it may stand under a paper row

    @property
    def purifier(self) -> bool:
        """A variant of another purifier (a plugin's): no paper row of this table can match it."""
        return not self.of_method and self.variant.name not in ("none", "blur")

    @property
    def label(self) -> str:
        """"ZeroPur-C-F (calibrated)", "Blur only (gaussian:1.2)", "No defense", a plugin's variant by its name;
        a sweep's or overridden setting is named."""
        v = self.variant
        if v.name == "none":
            return "No defense"
        if v.name == "blur":
            return f"Blur only ({v.blur})"
        if v.stages is None:
            return v.key
        shown = DISPLAY_NAMES.get(v.name, v.name)
        text = {"c": f"{shown}-C", "cf": f"{shown}-C-F"}.get(str(v.stages), f"{shown} ({v.key})")
        extra = [str(v.profile)] if v.profile else []
        from ..fmt import fmt_value

        extra += [f"{k}={fmt_value(x)}" for k, x in sorted(v.overrides.items())]
        return text + (f" ({', '.join(extra)})" if extra else "")

    @property
    def named_model(self) -> str | None:
        """The classifier's name where it says more than its augmentation recipe (the fast-AT ResNet-20 is
        'standard' augmentation, adversarially trained), so that its row is not read as the recipe's model."""
        model, recipe = str(self.record.model), self.record.recipe
        if recipe and "-" in model and not model.endswith((f"-{recipe}", "-public")):
            return model
        return None

    @property
    def recipe(self) -> str:
        """"standard", or "standard + adversarial training (fgsm-rs)" for an adversarially trained classifier."""
        adv = self.record.adversarial_training
        text = self.record.recipe or "recipe not recorded"
        return text + (f" + adversarial training ({adv})" if adv else "")

    @property
    def classifier(self) -> str:
        """"ResNet-20 standard" (and the classifier's name where :attr:`named_model` gives one)."""
        text = f"{self.arch.short} {self.recipe if self.record.recipe else ''}".rstrip()
        return text + (f" ({self.named_model})" if self.named_model else "")

    @property
    def where(self) -> str:
        """"ResNet-20, vanilla, blur median:3, n=1000"."""
        parts = [self.arch.short, self.recipe]
        if self.named_model:
            parts.append(self.named_model)
        if self.of_method and (self.paper is None or self.variant.blur != self.paper.blur):
            parts.append(f"blur {self.variant.blur}")
        if self.show_dataset:
            parts.append(self.record.dataset)
        return ", ".join(parts) + f", n={self.variant.n}"


def arch_of(rec: RecordView) -> Arch:
    """The classifier's architecture as a table states it, e.g. ("ResNet-20 (CIFAR, 0.27M)", "ResNet-20")."""
    key = arch_key(rec.arch)
    try:
        from ..archs import ARCHS
    except Exception:  # pragma: no cover - the table must render even if the model stack cannot import
        ARCHS = {}
    spec = next((s for n, s in ARCHS.items() if arch_key(n) == key), None)
    m = re.fullmatch(r"resnet(\d+)", key)
    if spec is not None and m and int(m.group(1)) not in (18, 34, 50):
        return Arch(f"ResNet-{m.group(1)} (CIFAR, {spec.params_m:g}M)", f"ResNet-{m.group(1)}", key)
    if spec is not None:
        base = _ARCH_FALLBACK.get(key, (spec.name, None))[0]
        return Arch(f"{base} ({spec.params_m:g}M)", base, key)
    if key in _ARCH_FALLBACK:
        base, p = _ARCH_FALLBACK[key]
        return Arch(f"{base} ({p:g}M)" if p else base, base, key)
    label = f"{rec.arch} (RobustBench zoo)" if rec.model_info.get("source") == "robustbench" else rec.arch
    return Arch(label, rec.arch, key)


def recipe_key(recipe: str | None) -> str:
    """"standard" / "vanilla" / "strong" as the leaderboard spells them; "standard-padcrop" stays distinct."""
    return str(recipe or "").split(" ")[0].strip().lower()


def in_table(spec: TableSpec, rec: RecordView) -> bool:
    """The record's dataset, threat, eps and setting are the table's (and its images are test images)."""
    if rec.split != "test":
        return False  # e.g. the calibration study's training-slice records
    return ((spec.dataset is None or rec.dataset == spec.dataset) and rec.threat == spec.threat
            and abs(rec.eps - spec.eps) < _EPS_TOL and rec.setting == spec.setting)


def match_paper(spec: TableSpec, prows: list[PaperRow], v: VariantView, arch: Arch, recipe: str,
                dataset: str, adversarial: str | None = None) -> tuple[PaperRow | None, bool]:
    """(the paper's row of the table's method a variant stands under, whether the architecture is the paper's).
    The paper's rows are naturally trained classifiers: an adversarially trained one (``adversarial``, e.g. the
    fast-AT ResNet-20 with the 'standard' augmentation) stands under none of them, so no Δ vs paper is shown."""
    if v.name != spec.method or adversarial:
        return None, False
    zp = [p for p in prows if p.zeropur]
    if not spec.match_recipe:  # the paper's one row of the method (Table 5: recipe and stages not stated)
        cands = zp
    else:
        if spec.dataset is None and dataset != spec.default_dataset:
            return None, False  # Table 6's ZeroPur rows are CIFAR-10
        cands = [p for p in zp if p.recipe and p.recipe == recipe and p.stages == v.stages]
    if not cands:
        return None, False
    same = [p for p in cands if p.arch_key == arch.key]
    if same:
        return same[0], True
    return min(cands, key=lambda p: p.group), False


def measured_rows(spec: TableSpec, prows: list[PaperRow], records: list[RecordView]) -> list[MeasuredRow]:
    """Every measured row of the table, numbered m1, m2, ... in the order they will be shown."""
    family = {f for m in spec.metrics for f in m.family}
    rows: list[MeasuredRow] = []
    for rec in records:
        if not in_table(spec, rec):
            continue
        if spec.row_per_family:
            groups: list[AttackView | None] = [a for a in rec.attacks if a.family == spec.row_per_family]
        else:
            groups = [None] if any(a.family in family for a in rec.attacks) else []
        arch = arch_of(rec)
        for v in rec.ordered_variants():
            if v.sweep is not None:
                continue  # a sweep's variants are figures (zeropur-bench plot steps|grid), not table rows
            paper, same = match_paper(spec, prows, v, arch, recipe_key(rec.recipe), rec.dataset,
                                      rec.adversarial_training)
            for a in groups:
                row = MeasuredRow("", rec, v, arch, paper, same, attack=a, show_dataset=spec.dataset is None,
                                  of_method=v.name == spec.method)
                if spec.adaptive_column and row.of_method:
                    row.adaptive = adaptive_bpda(rec, v, records)
                rows.append(row)
    if spec.drop_superseded:
        rows = [r for i, r in enumerate(rows) if not any(_supersedes(o, r, j < i) for j, o in enumerate(rows) if j != i)]
    # Display order: a grouped table pairs its architecture groups by row position, the others list rows in order.
    order = {id(p): ((p.position, p.group) if spec.grouped else (i, 0)) for i, p in enumerate(prows)}
    rows.sort(key=lambda r: (*(order[id(r.paper)] if r.paper is not None else (len(prows), 0)),
                             0 if r.same_arch else 1))
    for i, r in enumerate(rows, 1):
        r.rid = f"m{i}"
    return rows


def _first_n(rec: RecordView) -> bool:
    return rec.raw["config"].get("data_seed") is None  # the first n test images: a smaller n is a prefix


def _supersedes(o: MeasuredRow, r: MeasuredRow, earlier: bool) -> bool:
    """``o`` measured what ``r`` measured, on a superset of its examples: the same classifier, defense and
    BPDA+EOT settings on the first n images, more of them (or as many, and the full suite as a cascade; or the
    same, and ``o`` comes first)."""
    if not (o.attack is not None and r.attack is not None and _first_n(o.record) and _first_n(r.record)
            and o.record.dataset == r.record.dataset and abs(o.record.eps - r.record.eps) < _EPS_TOL
            and same_model(o.record, r.record) and same_defense(o.variant, r.variant)
            and _same_value(o.attack.params, r.attack.params)):
        return False
    if o.variant.n != r.variant.n:
        return o.variant.n > r.variant.n
    return (o.record.cascade, earlier) > (r.record.cascade, False)


# -- the same defended model (Tables 2 and 3's adaptive column) ------------------------------------------------------------
def same_model(a: RecordView, b: RecordView) -> bool:
    """Same classifier: the same checkpoint sha256; where either lacks one, the same ``config.checkpoint``; for
    zoo models without a file, the same comparison model entry."""
    sa, sb = a.model_sha256, b.model_sha256
    if sa and sb:
        return sa == sb
    ca, cb = a.checkpoint, b.checkpoint
    if ca and cb:
        return os.path.normpath(str(ca)) == os.path.normpath(str(cb))
    if not ca and not cb and not sa and not sb:
        return bool(a.model_id) and a.model_id == b.model_id
    return False


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


# ZeroPur-C runs no fine stage: its calibration (which sets only the fine stage's ILA weight) and the profile that
# carries it change nothing it computes, so C under 'calibrated' is C under 'authors' (as the run options make it).
_FINE_ONLY = ("profile", "calibration", "ila_weight", "ila_reduce", "ila_norm", "lpips_weight")


def same_defense(a: VariantView, b: VariantView) -> bool:
    """The same defense: the same registered defense, and for ZeroPur profile, stages, blur and every step / eps
    setting of the resolved configs (dtype, channels_last, seed, gradient mode ignored; for C, the fine stage's
    settings too). Without resolved configs: profile, stages, blur, overrides."""
    if a.name != b.name or a.stages is None or b.stages is None:
        return False
    ra, rb = a.resolved, b.resolved
    if a.stages == b.stages == "c" and ra and rb and {ra.get("profile"), rb.get("profile")} <= set(SAME_C_PROFILES):
        ra = {k: v for k, v in ra.items() if k not in _FINE_ONLY}
        rb = {k: v for k, v in rb.items() if k not in _FINE_ONLY}
    if ra and rb:
        essential = [k for k in _DEFENSE_ESSENTIAL if k in ra or k not in _FINE_ONLY]
        if not all(_same_value(ra.get(k, a.defense.get(k)), rb.get(k, b.defense.get(k))) for k in essential):
            return False
        return all(_same_value(ra[k], rb[k]) for k in (set(ra) & set(rb)) - set(_DEFENSE_IGNORED))
    return all(_same_value(a.defense.get(k), b.defense.get(k)) for k in _DEFENSE_ESSENTIAL) and \
        _same_value(a.overrides, b.overrides)


def adaptive_bpda(rec: RecordView, v: VariantView, records: list[RecordView]) -> Adaptive | None:
    """BPDA+EOT robust accuracy (any step) of the same classifier and defense from an adaptive record of the same
    dataset / threat / eps: the attack with the most steps, then the largest n."""
    best, rank_best = None, None
    for other in records:
        if not (other.setting == "adaptive" and other.dataset == rec.dataset and other.threat == rec.threat
                and abs(other.eps - rec.eps) < _EPS_TOL and same_model(rec, other)):
            continue
        bpda = [a for a in other.attacks if a.family == "bpda-eot"]
        for ov in other.ordered_variants():
            if not same_defense(v, ov):
                continue
            for a in bpda:
                m = ov.metric("robust_acc", a.key)
                if not m.measured:
                    continue
                steps = a.params.get("steps")
                rank = (int(steps) if isinstance(steps, int) else -1, ov.n)
                if rank_best is None or rank > rank_best:
                    best, rank_best = Adaptive(m, a, other), rank
    return best
