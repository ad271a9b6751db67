"""Evaluation sanity checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness", Sec. 5; Tramèr et al.
2020), run against the defended model of an :class:`~zeropur_bench.evaluate.EvalConfig`.

Four checks, each recorded with its numbers, a pass/fail and a message; every failed check adds a flag:

1. ``eps-sweep``: the adaptive gradient attack at each eps of a grid (default 8, 16, 32, 64 /255). Robust
   accuracy must not increase with eps (slack: one example) and must fall to ≤ ``max_acc_at_largest_eps``
   (default 5%) at the largest eps; otherwise the attack, not the defense, is what stops.
2. ``convergence``: the same attack with ``steps`` and ``steps * steps_factor`` at the config's eps. Passes iff
   |acc(k·steps) − acc(steps)| ≤ the half-width of the Wilson 95% interval of acc(steps) (half of its length).
3. ``gradient-free``: Square (score-based, pyautoattack) against the defended model at the config's eps versus the
   gradient attacks on the same examples. The gradient side is the per-example worst case over the adaptive
   gradient attacks run (steps, steps·factor, and any ``extra_attacks``). Flag "gradient masking suspected" iff
   Square's accuracy is lower AND Square breaks significantly more examples than it leaves: exact one-sided
   McNemar on the paired vectors (Square wrong & gradient right vs the reverse), p < ``alpha`` (0.05).
4. ``adaptive-vs-transfer``: transfer PGD-20 (crafted on the bare classifier, then purified) versus the adaptive
   gradient attacks' per-example worst case (any-step) on the same examples. Flag iff adaptive accuracy >
   transfer accuracy (strict: an adaptive attacker knows everything the transfer attacker knows).

Each row of the eps sweep (``checks[0].details.sweep``) names its attacks: ``attack`` / ``bare_attack`` (the
adaptive and the bare classifier's columns at that eps) and ``attack_without_eps`` / ``bare_attack_without_eps``
(the same without the eps they ran at: the series of an eps plot); ``params.attack.key_without_eps`` likewise.

Only the primary ZeroPur variant (the last in ``config.defenses``, as in records) is checked: every check
re-attacks the defended model, so each extra variant would multiply the cost. ``config.attacks`` and
``config.setting`` are ignored; the model, data slice, defense, threat model, eps, seeds, estimator, batch size and
device are taken from ``config``.

Defaults are sized for a CPU (100 CIFAR-10 images, ResNet-20, ZeroPur "c": a few minutes on 2 cores):
``bpda-eot`` with 10 steps (step eps/4, random start; EOT 15 / verification 150, which collapse to 1 for a
deterministic defense such as the authors' profile), convergence at 20 steps, Square with 100 queries (AutoAttack
uses 5000; raise ``square_queries`` for a paper-scale check), transfer PGD-20 (App. A.2).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .config import AttackSpec, DefenseSpec, EvalConfig, eps_str
from .evaluate import evaluate
from .fsio import refuse_foreign, write_json_atomic
from .records import RecordView, VariantView
from .stats import mcnemar_one_sided, wilson
from .threats import THREATS

DEFAULT_EPS_GRID = (8 / 255, 16 / 255, 32 / 255, 64 / 255)
DEFAULT_ATTACK = AttackSpec("bpda-eot", {"steps": 10})
FULL_GRADIENT_ATTACK = AttackSpec("pgd-eot", {"steps": 10})  # the default where a defense offers no BPDA
DEFAULT_SQUARE_QUERIES = 100
TRANSFER_ATTACK = AttackSpec("pgd")  # PGD-20, step eps/4 (paper App. A.2)


# -- decisions: small pure functions on per-example vectors or accuracies ------------------------------------------
def _vec(v: Sequence[bool]) -> np.ndarray:
    return np.asarray(list(v), dtype=bool)


def half_width(k: int, n: int) -> float:
    """Half the length of the Wilson 95% interval of k/n."""
    lo, hi = wilson(k, n)
    return (hi - lo) / 2


def decide_eps_sweep(eps: Sequence[float], acc: Sequence[float], n: int, *, max_acc: float = 0.05,
                     slack_examples: int = 1) -> dict[str, Any]:
    """Check 1. ``acc[i]`` is the robust accuracy at ``eps[i]``. Monotone: no rise by more than
    ``slack_examples / n`` between consecutive eps (in increasing order); converged: ≤ ``max_acc`` at the
    largest eps."""
    if len(eps) != len(acc) or not eps:
        raise UserError("eps sweep: give one accuracy per eps (at least one)")
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    e, a = [float(eps[i]) for i in order], [float(acc[i]) for i in order]
    tol = slack_examples / n + 1e-12
    rises = [(e[i], e[i + 1]) for i in range(len(a) - 1) if a[i + 1] > a[i] + tol]
    monotone = not rises
    reaches = a[-1] <= max_acc + 1e-12
    return {"passed": monotone and reaches, "monotone": monotone, "reaches_zero": reaches,
            "acc_at_largest_eps": a[-1], "max_acc_at_largest_eps": max_acc, "rises": rises}


def decide_convergence(k_base: int, k_more: int, n: int) -> dict[str, Any]:
    """Check 2. ``k_base`` / ``k_more``: robust-correct counts with ``steps`` and ``steps * factor``. Passes iff
    the accuracy changes by no more than the half-width of the base run's Wilson 95% interval."""
    a0, a1 = k_base / n, k_more / n
    hw = half_width(k_base, n)
    diff = a1 - a0
    return {"passed": abs(diff) <= hw + 1e-12, "acc_steps": a0, "acc_more_steps": a1, "difference": diff,
            "ci95_half_width": hw, "ci95_steps": list(wilson(k_base, n)), "ci95_more_steps": list(wilson(k_more, n))}


def decide_gradient_free(gradient_correct: Sequence[bool], square_correct: Sequence[bool], *,
                         alpha: float = 0.05) -> dict[str, Any]:
    """Check 3. Per-example robust-correct vectors on the same examples: the gradient attacks' worst case and
    Square's. Gradient masking is suspected iff Square's accuracy is lower and, by an exact one-sided McNemar test,
    Square breaks significantly more examples the gradient attacks missed than the reverse (p < ``alpha``)."""
    g, s = _vec(gradient_correct), _vec(square_correct)
    if g.shape != s.shape or g.size == 0:
        raise UserError(f"gradient-free check: vectors must be non-empty and of equal length ({g.size} vs {s.size})")
    n = g.size
    p = mcnemar_one_sided(g, s)  # H1: Square (new) is "worse" for the defense = breaks more
    masked = bool(s.mean() < g.mean() and p < alpha)
    return {"passed": not masked, "masking_suspected": masked, "gradient_acc": float(g.mean()),
            "square_acc": float(s.mean()), "square_only_breaks": int(np.sum(g & ~s)),
            "gradient_only_breaks": int(np.sum(~g & s)), "mcnemar_p": p, "alpha": alpha, "n": n,
            "gradient_ci95": list(wilson(int(g.sum()), n)), "square_ci95": list(wilson(int(s.sum()), n))}


def decide_adaptive_vs_transfer(adaptive_correct: Sequence[bool], transfer_correct: Sequence[bool]) -> dict[str, Any]:
    """Check 4. Per-example robust-correct vectors on the same examples. Flag iff the adaptive accuracy exceeds
    the transfer accuracy (strict: an adaptive attack that is weaker than a transfer attack is a broken
    evaluation, whatever the noise). The McNemar p-value is recorded beside it."""
    a, t = _vec(adaptive_correct), _vec(transfer_correct)
    if a.shape != t.shape or a.size == 0:
        raise UserError(f"adaptive-vs-transfer check: vectors must be non-empty and of equal length "
                        f"({a.size} vs {t.size})")
    weaker = bool(a.mean() > t.mean())
    return {"passed": not weaker, "adaptive_acc": float(a.mean()), "transfer_acc": float(t.mean()),
            "transfer_only_breaks": int(np.sum(a & ~t)), "adaptive_only_breaks": int(np.sum(~a & t)),
            "mcnemar_p_adaptive_weaker": mcnemar_one_sided(t, a), "n": int(a.size)}


# -- running the attacks ---------------------------------------------------------------------------------------------
def _steps_key(spec: AttackSpec) -> str:
    from .attacks import ATTACKS

    if spec.name not in ATTACKS:
        raise UserError(f"unknown attack '{spec.name}'; known: {', '.join(sorted(ATTACKS))}")
    for key in ("steps", "n_iter"):
        if key in ATTACKS[spec.name].defaults:
            return key
    raise UserError(f"attack '{spec.name}' has no step count; the sanity checks need an iterative gradient attack "
                    "(e.g. bpda-eot, pgd-eot, defense-aware, autoattack-bpda)")


def attack_steps(spec: AttackSpec) -> int:
    """The step count ``spec`` runs with (its ``steps`` / ``n_iter``, else the attack's default)."""
    from .attacks import ATTACKS

    key = _steps_key(spec)
    value = spec.params.get(key, ATTACKS[spec.name].defaults[key])
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value)):
        raise UserError(f"attack '{spec.name}': {key} must be an integer, got {value!r}")
    return int(value)


def with_steps(spec: AttackSpec, steps: int) -> AttackSpec:
    """``spec`` with ``steps`` steps (a label gets ``@steps=N``)."""
    key = _steps_key(spec)
    label = f"{spec.label}@{key}={steps}" if spec.label else None
    return AttackSpec(spec.name, {**spec.params, key: int(steps)}, label)


def bare_sweep_attack(steps: int) -> AttackSpec:
    """The attack on the bare classifier at each eps of the sweep: PGD with as many steps as the adaptive one."""
    return AttackSpec("pgd", {"steps": steps})


def sweep_row_names(attack: AttackSpec, bare_attack: AttackSpec, eps: float, threat: str) -> dict[str, str]:
    """The fields an eps-sweep row adds to name its attacks: the adaptive attack's column at ``eps``, and both
    attacks' column names without the eps they ran at (the series of an eps plot)."""
    return {"attack": attack.key_for(eps, threat), "attack_without_eps": attack.key_for(eps, threat, with_eps=False),
            "bare_attack_without_eps": bare_attack.key_for(eps, threat, with_eps=False)}


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


@dataclass
class _Plan:
    """What :func:`run_sanity` runs: the primary variant, the adaptive attack at two step counts, Square, the
    extra attacks, and the eps grid (``keys``: the gradient attacks' columns at the config's eps)."""

    config: EvalConfig
    primary: DefenseSpec
    attack: AttackSpec
    steps: int
    steps_factor: int
    base: AttackSpec
    more: AttackSpec
    square: AttackSpec
    extra: list[AttackSpec]
    eps0: float
    eps_grid: list[float]
    keys: list[str]

    @property
    def gradient(self) -> list[AttackSpec]:
        return [self.base, self.more, *self.extra]

    @property
    def bare_attack(self) -> AttackSpec:
        return bare_sweep_attack(self.steps)


def default_attack(defense: DefenseSpec) -> AttackSpec:
    """The sanity checks' gradient attack when none is given: BPDA+EOT (10 steps), or PGD-EOT through the full
    gradient (10 steps) for a defense that offers no BPDA (random resize-and-pad, Mixup Inference)."""
    gradients = defense.entry.gradients
    return FULL_GRADIENT_ATTACK if gradients is not None and "bpda" not in gradients else DEFAULT_ATTACK


def _plan(config: EvalConfig, attack: AttackSpec | dict | None, eps_grid: Sequence[float], steps_factor: int,
          square_queries: int, extra_attacks: Sequence[AttackSpec | dict]) -> _Plan:
    """Validate the arguments of :func:`run_sanity` (a :class:`UserError` before any work)."""
    attack = attack if attack is not None else default_attack(config.defenses[-1])
    if isinstance(attack, dict):
        attack = AttackSpec(**attack)
    extra = [a if isinstance(a, AttackSpec) else AttackSpec(**a) for a in extra_attacks]
    if not isinstance(steps_factor, int) or steps_factor < 2:
        raise UserError(f"steps_factor must be an integer >= 2, got {steps_factor!r}")
    if not isinstance(square_queries, int) or square_queries < 1:
        raise UserError(f"square_queries must be a positive integer, got {square_queries!r}")
    grid = sorted(float(e) for e in eps_grid)
    if not grid:
        raise UserError("eps_grid must hold at least one eps")
    primary = config.defenses[-1]
    if primary.name == "none":
        raise UserError("the sanity checks attack a defended model; the primary (last) defense is 'none'")
    steps = attack_steps(attack)
    if steps < 1:
        raise UserError(f"the attack needs at least one step, got {_steps_key(attack)}={steps}")
    eps0 = float(config.eps)
    base, more = with_steps(attack, steps), with_steps(attack, steps * steps_factor)
    keys = [a.key_for(eps0, config.threat) for a in (base, more, *extra)]
    if len(set(keys)) != len(keys):
        raise UserError(f"the sanity attacks share a name ({keys}); give extra_attacks distinct labels")
    return _Plan(config, primary, attack, steps, steps_factor, base, more,
                 AttackSpec("square", {"n_queries": square_queries}), extra, eps0, grid, keys)


@dataclass
class _Runs:
    """The defended variant under every run of the plan, read through :class:`~zeropur_bench.records.RecordView`:
    ``main`` (the gradient attacks and Square at the config's eps), ``sweep`` / ``bare_sweep`` per eps, and
    ``transfer`` (PGD-20 crafted on the bare classifier)."""

    main: VariantView
    sweep: dict[float, VariantView]
    bare_sweep: dict[float, VariantView]
    transfer: VariantView
    model_info: dict


def _run_all(plan: _Plan, data_dir: str | os.PathLike | None, progress: bool) -> _Runs:
    from .classifiers import load_classifier

    config = plan.config
    # One classifier for every sub-run (the engine would otherwise reload and re-hash the checkpoint each time).
    clf, minfo = load_classifier(config.model, config.dataset, THREATS[config.threat], checkpoint=config.checkpoint,
                                 model_dir=config.model_dir, device=config.device, return_info=True)
    common = dict(data_dir=data_dir, write=False, progress=progress, classifier=clf, model_info=minfo.to_dict())

    def run(setting: str, eps: float, attacks: list[AttackSpec], defense: DefenseSpec = plan.primary) -> VariantView:
        sub = dataclasses.replace(config, setting=setting, eps=eps, attacks=attacks, defenses=[defense])
        return RecordView.from_dict(evaluate(sub, **common)).variants[defense.key]

    main = run("adaptive", plan.eps0, [*plan.gradient, plan.square])
    sweep, bare_sweep = {}, {}
    for e in plan.eps_grid:
        sweep[e] = main if _same_eps(e, plan.eps0) else run("adaptive", e, [plan.base])
        bare_sweep[e] = run("transfer", e, [plan.bare_attack], DefenseSpec(name="none"))
    transfer = run("transfer", plan.eps0, [TRANSFER_ATTACK])
    if transfer.examples["index"] != main.examples["index"]:
        raise RuntimeError("transfer and adaptive runs saw different examples")  # internal invariant
    return _Runs(main, sweep, bare_sweep, transfer, minfo.to_dict())


# -- the four checks -------------------------------------------------------------------------------------------------
def _check_eps_sweep(plan: _Plan, runs: _Runs, max_acc: float) -> dict[str, Any]:
    threat = plan.config.threat
    bkey = {e: plan.base.key_for(e, threat) for e in plan.eps_grid}
    bare_key = {e: plan.bare_attack.key_for(e, threat) for e in plan.eps_grid}
    accs = [runs.sweep[e].metric("robust_acc", bkey[e]).acc for e in plan.eps_grid]
    d = decide_eps_sweep(plan.eps_grid, accs, runs.main.n, max_acc=max_acc)
    d["rises"] = [[eps_str(a, threat), eps_str(b, threat)] for a, b in d["rises"]]
    rows = []
    for e in plan.eps_grid:
        v, b = runs.sweep[e], runs.bare_sweep[e]
        robust, bare = v.metric("robust_acc", bkey[e]), b.metric("robust_acc", bare_key[e])
        rows.append({"eps": e, "eps_str": eps_str(e, threat), "robust_acc": robust.acc,
                     "robust_final_acc": v.metric("robust_final_acc", bkey[e]).acc,
                     "adv_acc": v.metric("adv_acc", bkey[e]).acc, "ci95": list(robust.ci),
                     "bare_attack": bare_key[e], "bare_robust_acc": bare.acc, "bare_ci95": list(bare.ci),
                     **sweep_row_names(plan.base, plan.bare_attack, e, threat)})
    d["sweep"] = rows
    last = eps_str(plan.eps_grid[-1], threat)
    msg = (f"{bkey[plan.eps_grid[-1]]}: robust accuracy {100 * d['acc_at_largest_eps']:.1f}% at eps {last}"
           f" ({'≤' if d['reaches_zero'] else '>'} {100 * max_acc:g}%)"
           + ("" if d["monotone"] else f"; rises with eps between {d['rises']}"))
    return {"name": "eps-sweep", "passed": d["passed"], "details": d, "message": msg}


def _check_convergence(plan: _Plan, runs: _Runs) -> dict[str, Any]:
    base_key, more_key = plan.keys[0], plan.keys[1]
    robust = runs.main.examples["robust_correct"]
    d = decide_convergence(sum(robust[base_key]), sum(robust[more_key]), runs.main.n)
    more = plan.steps * plan.steps_factor
    d.update(steps=plan.steps, more_steps=more, attack_steps=base_key, attack_more_steps=more_key)
    msg = (f"{plan.steps} → {more} steps: {100 * d['acc_steps']:.1f}% → {100 * d['acc_more_steps']:.1f}%"
           f" (change {100 * abs(d['difference']):.1f} pt {'≤' if d['passed'] else '>'} CI half-width "
           f"{100 * d['ci95_half_width']:.1f} pt)")
    return {"name": "convergence", "passed": d["passed"], "details": d, "message": msg}


def _gradient_worst(plan: _Plan, runs: _Runs) -> list[bool]:
    """Per example: robust-correct under every gradient attack (their per-example worst case)."""
    vecs = [runs.main.examples["robust_correct"][k] for k in plan.keys]
    return [all(v[i] for v in vecs) for i in range(runs.main.n)]


def _check_gradient_free(plan: _Plan, runs: _Runs, alpha: float) -> dict[str, Any]:
    square_key = plan.square.key_for(plan.eps0, plan.config.threat)
    d = decide_gradient_free(_gradient_worst(plan, runs), runs.main.examples["robust_correct"][square_key],
                             alpha=alpha)
    d.update(square_attack=square_key, gradient_attacks=plan.keys,
             gradient_acc_per_attack={k: runs.main.metric("robust_acc", k).acc for k in plan.keys})
    msg = (f"Square ({plan.square.params['n_queries']} queries) {100 * d['square_acc']:.1f}% vs gradient attacks "
           f"{100 * d['gradient_acc']:.1f}%; Square alone breaks {d['square_only_breaks']}, gradient alone "
           f"{d['gradient_only_breaks']} (one-sided McNemar, H1 Square breaks more: p={d['mcnemar_p']:.3g})"
           + ("; gradient masking suspected" if d["masking_suspected"] else ""))
    return {"name": "gradient-free", "passed": d["passed"], "details": d, "message": msg}


def _check_adaptive_vs_transfer(plan: _Plan, runs: _Runs) -> dict[str, Any]:
    tkey = TRANSFER_ATTACK.key_for(plan.eps0, plan.config.threat)
    d = decide_adaptive_vs_transfer(_gradient_worst(plan, runs), runs.transfer.examples["robust_correct"][tkey])
    d.update(transfer_attack=f"{tkey} (crafted on the bare classifier, then purified)", adaptive_attacks=plan.keys)
    msg = (f"adaptive (any-step, worst case) {100 * d['adaptive_acc']:.1f}% "
           f"{'≤' if d['passed'] else '>'} transfer {tkey} {100 * d['transfer_acc']:.1f}%")
    return {"name": "adaptive-vs-transfer", "passed": d["passed"], "details": d, "message": msg}


FLAG_TEXT = {"eps-sweep": "attack does not drive robust accuracy to ~0 at large eps (or it rises with eps)",
             "convergence": "attack not converged: more steps change robust accuracy beyond the 95% CI",
             "gradient-free": "gradient masking suspected: Square (gradient-free) beats the gradient attacks",
             "adaptive-vs-transfer": "adaptive attack weaker than the transfer attack on the same examples"}


def _check_out(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"--out '{path}' is a folder; give a file name such as {path / 'sanity.json'}")
    refuse_foreign(path, lambda d: d.get("schema") == "zeropur-bench/sanity/v2", "a sanity report")


def run_sanity(config: EvalConfig, *, data_dir: str | os.PathLike | None = None,
               eps_grid: Sequence[float] = DEFAULT_EPS_GRID, attack: AttackSpec | None = None,
               steps_factor: int = 2, square_queries: int = DEFAULT_SQUARE_QUERIES,
               extra_attacks: Sequence[AttackSpec] = (), max_acc_at_largest_eps: float = 0.05,
               alpha: float = 0.05, out: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """Run the four sanity checks (module docstring) on the primary defense variant of ``config``.

    ``attack``: the adaptive gradient attack (default ``bpda-eot`` with 10 steps, ``pgd-eot`` with 10 steps for a
    defense that offers no BPDA: :func:`default_attack`; its step count is read from
    ``steps``/``n_iter`` or the attack's default). ``extra_attacks``: more adaptive gradient attacks run at the
    config's eps and counted in the gradient side of checks 3–4 (e.g. ``defense-aware``). Returns a JSON-able
    report ``{"checks": [...], "flags": [...], "n", "config", ...}``, also written to ``out`` if given.
    """
    if out is not None:
        _check_out(Path(out))  # before minutes of attacks, never over a file that is not a sanity report
    plan = _plan(config, attack, eps_grid, steps_factor, square_queries, extra_attacks)
    t0 = time.perf_counter()
    runs = _run_all(plan, data_dir, progress)
    checks = [_check_eps_sweep(plan, runs, max_acc_at_largest_eps), _check_convergence(plan, runs),
              _check_gradient_free(plan, runs, alpha), _check_adaptive_vs_transfer(plan, runs)]
    flags = [f"{c['name']}: {FLAG_TEXT[c['name']]}" for c in checks if not c["passed"]]
    s = runs.main.summary
    report = {
        "schema": "zeropur-bench/sanity/v2",
        "semantics": "robust accuracy = defended clean AND adversarial (records schema v2)",
        "checks": checks,
        "flags": flags,
        "passed": not flags,
        "n": runs.main.n,
        "variant": plan.primary.key,
        "eps": plan.eps0,
        "eps_str": eps_str(plan.eps0, config.threat),
        "clean_acc": s["clean_acc"],
        "defended_clean_acc": s["defended_clean_acc"],
        "params": {"eps_grid": plan.eps_grid,
                   "attack": {**dataclasses.asdict(plan.attack), "key": plan.keys[0],
                              "key_without_eps": plan.base.key_for(plan.eps0, config.threat, with_eps=False)},
                   "steps": plan.steps, "steps_factor": steps_factor, "square_queries": square_queries,
                   "extra_attacks": [dataclasses.asdict(a) for a in plan.extra],
                   "max_acc_at_largest_eps": max_acc_at_largest_eps, "alpha": alpha,
                   "transfer_attack": dataclasses.asdict(TRANSFER_ATTACK)},
        "config": config.to_dict(),
        "provenance": {"model": _portable(runs.model_info)},
        "wall_seconds": time.perf_counter() - t0,
    }
    if out is not None:
        write_json_atomic(out, report)
        report["_path"] = str(out)
    return report


def _portable(info: dict) -> dict:
    from .data import portable_path

    return {**info, "checkpoint": portable_path(info["checkpoint"])} if info.get("checkpoint") else info


def _bare_without_eps(report: dict, row: dict) -> str:
    """An eps-sweep row's bare attack without its eps: the row's field, else (a report made before the field
    existed) rebuilt from the report's step count."""
    if "bare_attack_without_eps" in row:
        return row["bare_attack_without_eps"]
    steps = (report.get("params") or {}).get("steps")
    if not isinstance(steps, int):
        return row["bare_attack"]
    return bare_sweep_attack(steps).key_for(row["eps"], report["config"]["threat"], with_eps=False)


def sanity_report_text(report: dict) -> str:
    """The report as markdown: one row per check, the eps sweep, and the flags."""
    import pandas as pd

    head = (f"## Sanity checks: {report.get('variant')} on {report['config'].get('model')}, "
            f"{report['config'].get('dataset')}, n={report['n']}, eps {report.get('eps_str')}\n\n"
            f"Clean accuracy {100 * report['clean_acc']:.1f}% (bare), {100 * report['defended_clean_acc']:.1f}% "
            f"(defended).\n\n")
    checks = pd.DataFrame([{"check": c["name"], "passed": "yes" if c["passed"] else "NO", "result": c["message"]}
                           for c in report["checks"]])
    text = head + checks.to_markdown(index=False)
    sweep = next((c["details"].get("sweep") for c in report["checks"] if c["name"] == "eps-sweep"), None)
    if sweep:
        rows = [{"eps": r["eps_str"], "robust acc (any step) %": 100 * r["robust_acc"],
                 "95% CI %": f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]",
                 **({f"bare classifier ({_bare_without_eps(report, r)}) %": 100 * r["bare_robust_acc"]}
                    if "bare_robust_acc" in r else {})} for r in sweep]
        text += "\n\n### eps sweep\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f")
    text += "\n\n" + ("**Flags:**\n" + "\n".join(f"- {f}" for f in report["flags"]) if report["flags"]
                      else "No flags.")
    return text + "\n"
