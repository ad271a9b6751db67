"""What a record's per-example vectors and summaries mean, and how they are computed (schema v2).

Per example and per defense variant:

* ``defended_clean_correct``: the defended model is right on the unperturbed image;
* ``adv_correct[a]``: right on attack ``a``'s input, clean result ignored: the paper's protocol (adaptive
  iterative attacks: not broken at any step, Hill et al.'s count);
* ``robust_correct[a] = defended_clean_correct AND adv_correct[a]``: the unperturbed image lies inside every
  threat model, so an image the defense gets wrong unattacked is never robust (RobustBench, AutoAttack);
* ``robust_final_correct[a]``: adaptive iterative attacks only, ``defended_clean_correct AND`` the judgement of
  the attack's *last* iterate ("final only"; any-step ≤ final-only);
* ``worst_case_correct``: ``defended_clean_correct AND`` every ``adv_correct``.

Hence ``robust_acc[a] ≤ defended_clean_acc`` and ``worst_case_acc ≤ min robust_acc`` by construction.
"""
from __future__ import annotations

from typing import Any

from ..stats import wilson


# -- summaries ---------------------------------------------------------------------------------------------------
def _acc_ci(v: list[bool]) -> tuple[float, list[float]]:
    n = len(v)
    if not n:
        return float("nan"), [float("nan"), float("nan")]
    return sum(v) / n, list(wilson(sum(v), n))


def _and(*vecs: list[bool]) -> list[bool]:
    return [all(t) for t in zip(*vecs)]


def per_example(clean: list[bool], defended_clean: list[bool], adv: dict[str, list[bool]],
                adv_final: dict[str, list[bool]] | None = None) -> dict[str, Any]:
    """The per-example vectors of one variant (module docstring) from the raw judgements."""
    robust = {a: _and(defended_clean, v) for a, v in adv.items()}
    ex: dict[str, Any] = {"clean_correct": clean, "defended_clean_correct": defended_clean, "adv_correct": adv,
                          "robust_correct": robust,
                          "worst_case_correct": _and(defended_clean, *adv.values()) if adv else list(defended_clean)}
    if adv_final:
        ex["robust_final_correct"] = {a: _and(defended_clean, v) for a, v in adv_final.items()}
    return ex


def summarize(ex: dict[str, Any]) -> dict[str, Any]:
    """Accuracies (fractions) with Wilson 95% intervals from a variant's per-example vectors."""
    s: dict[str, Any] = {"n": len(ex["defended_clean_correct"])}
    ci: dict[str, Any] = {}
    for name, key in (("clean_acc", "clean_correct"), ("defended_clean_acc", "defended_clean_correct"),
                      ("worst_case_acc", "worst_case_correct")):
        s[name], ci[name] = _acc_ci(ex[key])
    for name, key in (("robust_acc", "robust_correct"), ("robust_final_acc", "robust_final_correct"),
                      ("adv_acc", "adv_correct")):
        if key in ex:
            s[name], ci[name] = {}, {}
            for a, v in ex[key].items():
                s[name][a], ci[name][a] = _acc_ci(v)
    adv = ex.get("adv_correct") or {}
    if adv:
        s["adv_worst_case_acc"], ci["adv_worst_case_acc"] = _acc_ci(_and(*adv.values()))
    s["ci95"] = ci
    return s


def step_curves(defended_clean: list[bool], first_broken: list[int | None], final_counts: list[int],
                adv_final_counts: list[int]) -> dict[str, list[float]]:
    """Per attack step t = 0..T (t = 0: the start): ``robust_any_step`` (clean ∧ not broken at any step ≤ t),
    ``robust_final`` (clean ∧ iterate t itself not broken), and the paper-protocol ``adv_any_step`` /
    ``adv_final`` (without the clean ∧). ``final_counts`` / ``adv_final_counts``: per step, how many examples
    were (clean ∧) not broken at that iterate, summed over batches."""
    n = len(defended_clean)
    steps = len(final_counts)
    any_r, any_a = [], []
    for t in range(steps):
        alive = [fb is None or fb > t for fb in first_broken]
        any_a.append(sum(alive) / n)
        any_r.append(sum(a and c for a, c in zip(alive, defended_clean)) / n)
    return {"robust_any_step": any_r, "robust_final": [k / n for k in final_counts],
            "adv_any_step": any_a, "adv_final": [k / n for k in adv_final_counts]}
