"""Record assembly: the engine's finished batches + what it knows of the run → one v2 record.

Layout (``docs/architecture.md``): ``schema``, ``config``, ``keys``, ``summary``, ``examples``, ``variants``,
``bare_classifier``, ``estimator``, ``attack_notes``, ``provenance``, ``cost``, ``environment``, ``model_info``
(RobustBench's view of the record, :mod:`.model_info`).
Semantics of the vectors: :mod:`zeropur_bench.records.semantics`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..keys import code_version, digest
from .batch import BatchResult, VariantBatch
from .meta import environment
from .model_info import model_info_block  # noqa: F401 (re-exported: the engine's name for it)
from .semantics import per_example, step_curves, summarize
from .view import SCHEMA


@dataclass
class RunFacts:
    """What the engine knows of a run besides its batches. ``config`` is the run's ``EvalConfig``."""

    config: Any
    attack_keys: list[str]
    key_without_eps: dict[str, str]
    defense_configs: dict[str, dict]
    calibrations: dict[str, Any]
    deterministic: dict[str, bool]
    bare_deterministic: bool
    comparison: dict
    resume: dict
    model_info: dict | None
    data_info: dict
    batches_computed: int
    batches_resumed: int
    recipe: str | None = None  # how the classifier was trained (the config's, else the registry's)


def _cat(batches: list[BatchResult], get: Callable[[BatchResult], list]) -> list:
    return [v for b in batches for v in get(b)]


def _variant_block(facts: RunFacts, d: Any, batches: list[BatchResult]) -> dict:
    """``variants[k]``: the defense as run, its summary and its per-example vectors."""
    k = d.key
    akeys = facts.attack_keys
    vb: Callable[[BatchResult], VariantBatch] = lambda b: b.variants[k]  # noqa: E731
    index = [int(i) for i in _cat(batches, lambda b: b.index)]
    clean = _cat(batches, lambda b: b.clean_correct)
    dclean = _cat(batches, lambda b: vb(b).defended_clean_correct)
    adv = {a: _cat(batches, lambda b: vb(b).adv_correct[a]) for a in akeys}
    final_keys = [a for a in akeys if a in vb(batches[0]).adv_final_correct]
    adv_final = {a: _cat(batches, lambda b: vb(b).adv_final_correct[a]) for a in final_keys}
    examples = {"index": index, **per_example(clean, dclean, adv, adv_final or None)}
    summary = summarize(examples)
    curve_keys = [a for a in akeys if a in vb(batches[0]).first_broken_step]
    if curve_keys:
        examples["first_broken_step"] = {}
        summary["curves"] = {}
        for a in curve_keys:
            first = _cat(batches, lambda b: vb(b).first_broken_step[a])
            counts = [vb(b).final_counts[a] for b in batches]
            sum_at = lambda which: [sum(cnt[which][t] for cnt in counts)  # noqa: E731
                                    for t in range(len(counts[0][which]))]
            examples["first_broken_step"][a] = first
            summary["curves"][a] = step_curves(dclean, first, sum_at("robust"), sum_at("adv"))
    if vb(batches[0]).attacked is not None:
        _cascade_fields(examples, summary, akeys, {a: _cat(batches, lambda b: vb(b).attacked[a]) for a in akeys})
    passes = sum(vb(b).forward_passes_per_prediction * len(b.index) for b in batches) / max(1, len(index))
    cal = facts.calibrations.get(k)
    return {"defense": {**d.record_fields(), "key": k, "resolved": jsonable(facts.defense_configs[k]),
                        "calibration": jsonable(cal.to_dict()) if cal is not None else None,
                        "deterministic": facts.deterministic[k], "forward_passes_per_prediction": passes},
            "summary": summary, "examples": examples}


def _cascade_fields(examples: dict, summary: dict, akeys: list[str], attacked: dict[str, list[bool]]) -> None:
    """A cascade's per-example account: which examples each attack saw (``attacked``), and which attack broke
    each example first (``broken_by``, None if none did) at which of its steps (``broken_at_step``)."""
    examples["attacked"] = attacked
    summary["attacked_n"] = {a: sum(v) for a, v in attacked.items()}
    first = examples.get("first_broken_step") or {}
    by, at = [], []
    for i in range(len(examples["index"])):
        a = next((a for a in akeys if not examples["adv_correct"][a][i]), None)
        by.append(a)
        at.append(first[a][i] if a is not None and a in first else None)
    examples["broken_by"], examples["broken_at_step"] = by, at


def _cost(facts: RunFacts, batches: list[BatchResult], wall: float, n: int) -> dict:
    import torch

    c = facts.config
    cost: dict[str, Any] = {
        a: {"forward_passes_per_image": sum(b.cost[a]["forward_passes"] for b in batches) / max(n, 1),
            "backward_passes_per_image": sum(b.cost[a]["backward_passes"] for b in batches) / max(n, 1),
            "seconds_per_image": sum(b.cost[a]["seconds"] for b in batches) / max(n, 1)}
        for a in facts.attack_keys}
    cost["_run"] = {"wall_seconds_this_call": wall, "batches_computed": facts.batches_computed,
                    "batches_resumed": facts.batches_resumed, "device": c.device, "dtype": c.dtype,
                    "channels_last": c.channels_last, "threads": torch.get_num_threads(),
                    "computed_by": [(b.computed_by or {}).get("worker") for b in batches]}
    return cost


def _verification(facts: RunFacts, notes: dict[str, list]) -> dict:
    """Who decided each example: the judge always; an attack's own verification where it marked a break."""
    c = facts.config
    out = {}
    for i, spec in enumerate(c.attacks):
        params = spec.resolved(c.eps, c.threat)
        if c.setting != "adaptive" or not ("verify_estimator" in params or "judge_reps" in params):
            continue
        key = facts.attack_keys[i]
        used = {}
        for k in facts.deterministic:
            reps = {nb.get(k, {}).get("verify_reps", nb.get(k, {}).get("judge_reps")) for nb in notes[key] if nb}
            used[k] = sorted(r for r in reps if r is not None)
        out[key] = {"estimator": params.get("verify_estimator", "logit-avg"),
                    "reps_requested": params.get("verify_reps", params.get("judge_reps")), "reps_used": used,
                    "decides": "breaks the attack marked at its iterates (any-step column); the judge re-judges "
                               "the returned and the last iterate"}
    return out


def assemble_record(facts: RunFacts, batches: list[BatchResult], wall: float) -> dict:
    """The record of a run from its batches (in plan order) and :class:`RunFacts`."""
    c = facts.config
    akeys = facts.attack_keys
    index = [int(i) for i in _cat(batches, lambda b: b.index)]
    clean = _cat(batches, lambda b: b.clean_correct)
    variants = {d.key: _variant_block(facts, d, batches) for d in c.defenses}
    bare = None
    if c.setting == "transfer":
        bare_adv = {a: _cat(batches, lambda b: b.bare_adv_correct[a]) for a in akeys}
        bare_ex = {"index": index, **per_example(clean, clean, bare_adv)}
        bare = {**summarize(bare_ex), "deterministic": facts.bare_deterministic, "examples": bare_ex}
    primary = c.defenses[-1].key
    notes = {a: [b.notes.get(a) for b in batches] for a in akeys}
    cfg = c.to_dict()
    cfg["recipe"] = facts.recipe if facts.recipe is not None else cfg.get("recipe")
    for i, a in enumerate(cfg["attacks"]):
        a["key"] = akeys[i]
        a["key_without_eps"] = facts.key_without_eps.get(akeys[i], akeys[i])
    record = {
        "schema": SCHEMA,
        "config": {**cfg, "primary_variant": primary, "arch": (facts.model_info or {}).get("arch", c.model)},
        "keys": {"comparison": facts.comparison, "comparison_hash": digest(facts.comparison),
                 "batch_size": c.batch_size, "code_version": code_version(), "resume_hash": digest(facts.resume)},
        "summary": variants[primary]["summary"],
        "examples": variants[primary]["examples"],
        "variants": variants,
        "bare_classifier": bare,
        "estimator": {"judge": {"estimator": c.estimator, "n_requested": c.estimator_n,
                                "n_used": {k: (1 if (det or c.estimator == "one-shot") else c.estimator_n)
                                           for k, det in facts.deterministic.items()}},
                      "attack_verification": _verification(facts, notes),
                      "adaptive_headline": "any-step" if c.setting == "adaptive" else None},
        "attack_notes": notes,
        "provenance": {"data": facts.data_info, "model": _portable_model_info(facts.model_info)},
        "cost": _cost(facts, batches, wall, len(index)),
        "environment": environment(),
    }
    record["model_info"] = model_info_block(record)
    return record


def _portable_model_info(info: dict | None) -> dict | None:
    if not info or not info.get("checkpoint"):
        return info
    from ..data import portable_path

    return {**info, "checkpoint": portable_path(info["checkpoint"])}


def attack_notes(info: dict) -> dict:
    """An attack's ``last_info`` without per-example tensors (those live in the record's vectors)."""
    import torch

    out = {}
    for k, v in info.items():
        if k in ("x_final", "broken_per_step"):
            continue
        if k in ("broken_any_step", "broken_final") and torch.is_tensor(v):
            out[k + "_count"] = int(v.sum())
            continue
        out[k] = jsonable(v)
    return out


def jsonable(obj: Any) -> Any:
    """Plain JSON values from tensors, tuples and non-finite floats (null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "numel"):  # a tensor
        return obj.tolist() if obj.numel() > 1 or obj.dim() > 0 else obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
