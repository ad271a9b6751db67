"""Paired comparisons of defense variants measured on the same examples (issue 20, item 3): ZeroPur-C-F vs
ZeroPur-C under each profile, and the calibrated C-F vs the authors' C-F, per attack of a table, on the paper's
protocol (accuracy on the adversarial input) and on robust accuracy (clean ∧ adversarial). Exact two-sided
McNemar p-values on the per-example vectors of one record (one adversarial set purified by every variant)."""
from __future__ import annotations

from typing import Any, Iterable

from .records import RecordView, VariantView
from .stats import mcnemar_two_sided

# (label, the variant that should win, the variant it is compared with): matched on profile, stages and blur.
COMPARISONS = (
    ("C-F vs C (authors)", ("authors", "cf"), ("authors", "c")),
    ("C-F vs C (calibrated)", ("calibrated", "cf"), ("authors", "c")),  # C is the same under both profiles
    ("C-F vs C (paper)", ("paper", "cf"), ("paper", "c")),
    ("C-F calibrated vs authors", ("calibrated", "cf"), ("authors", "cf")),
)


def _find(variants: Iterable[VariantView], profile: str, stages: str, blur: str) -> list[VariantView]:
    """The variants with these profile, stages and blur (the view has stages and a profile only for a defense
    whose options hold them)."""
    variants = list(variants)
    out = [v for v in variants if v.profile == profile and v.stages == stages and v.blur == blur]
    if not out and profile == "authors" and stages == "c":  # a run of the calibrated profile alone has its own C
        return _find(variants, "calibrated", "c", blur)
    return out


def _pair(wins: list[VariantView], bases: list[VariantView]) -> tuple[VariantView, VariantView] | None:
    """The first two variants with the same --zp overrides (a sweep's variants differ by them)."""
    for a in wins:
        for b in bases:
            if a is not b and a.overrides == b.overrides:
                return a, b
    return None


def compare(record: RecordView | dict, attack_keys: Iterable[str]) -> list[dict[str, Any]]:
    """One entry per comparison that the record's variants allow (a :class:`RecordView` or a record dict):
    ``{"comparison", "blur", "n", "cells": {(attack, "adv"|"robust"): (delta in points, p, b, c)}}``; b/c count the
    examples only the first/second variant gets right."""
    if isinstance(record, dict):
        record = RecordView.from_dict(record)
    variants = list(record.variants.values())
    blurs = sorted({v.blur for v in variants if v.stages is not None} - {None})
    out = []
    for blur in blurs:
        for label, win, base in COMPARISONS:
            pair = _pair(_find(variants, *win, blur), _find(variants, *base, blur))
            if pair is None:
                continue
            a, b = pair
            cells = {}
            for key in attack_keys:
                for kind, field in (("adv", "adv_correct"), ("robust", "robust_correct")):
                    va = (a.examples.get(field) or {}).get(key)
                    vb = (b.examples.get(field) or {}).get(key)
                    if va is None or vb is None or len(va) != len(vb) or not va:
                        continue
                    p, only_b, only_a = mcnemar_two_sided(vb, va)
                    cells[(key, kind)] = (100 * (sum(va) - sum(vb)) / len(va), p, only_a, only_b)
            if cells:
                n = len(a.examples.get("defended_clean_correct") or [])
                out.append({"comparison": label, "blur": blur, "n": n, "cells": cells})
    return out


def fmt_cell(cell: tuple[float, float, int, int] | None) -> str:
    """``+12.3 (p=4.1e-05)``."""
    if cell is None:
        return "–"
    d, p, _, _ = cell
    return f"{d:+.1f} (p={p:.2g})"
