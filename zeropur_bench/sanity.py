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
import time
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .evaluate import THREATS, AttackSpec, DefenseSpec, EvalConfig, eps_str, evaluate
from .keys import strip_eps
from .records import write_json_atomic
from .stats import mcnemar_one_sided, wilson

DEFAULT_EPS_GRID = (8 / 255, 16 / 255, 32 / 255, 64 / 255)
DEFAULT_ATTACK = AttackSpec("bpda-eot", {"steps": 10})
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


def _with_steps(spec: AttackSpec, steps: int) -> AttackSpec:
    key = _steps_key(spec)
    label = f"{spec.label}@{key}={steps}" if spec.label else None
    return AttackSpec(spec.name, {**spec.params, key: int(steps)}, label)


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


def run_sanity(config: EvalConfig, *, data_dir: str | os.PathLike | None = None,
               eps_grid: Sequence[float] = DEFAULT_EPS_GRID, attack: AttackSpec | None = None,
               steps_factor: int = 2, square_queries: int = DEFAULT_SQUARE_QUERIES,
               extra_attacks: Sequence[AttackSpec] = (), max_acc_at_largest_eps: float = 0.05,
               alpha: float = 0.05, out: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """Run the four sanity checks (module docstring) on the primary defense variant of ``config``.

    ``attack``: the adaptive gradient attack (default ``bpda-eot`` with 10 steps; its step count is read from
    ``steps``/``n_iter`` or the attack's default). ``extra_attacks``: more adaptive gradient attacks run at the
    config's eps and counted in the gradient side of checks 3–4 (e.g. ``defense-aware``). Returns a JSON-able
    report ``{"checks": [...], "flags": [...], "n", "config", ...}``, also written to ``out`` if given.
    """
    from .attacks import ATTACKS
    from .classifiers import load_classifier

    attack = attack if attack is not None else DEFAULT_ATTACK
    if isinstance(attack, dict):
        attack = AttackSpec(**attack)
    extra_attacks = [a if isinstance(a, AttackSpec) else AttackSpec(**a) for a in extra_attacks]
    if not isinstance(steps_factor, int) or steps_factor < 2:
        raise UserError(f"steps_factor must be an integer >= 2, got {steps_factor!r}")
    if not isinstance(square_queries, int) or square_queries < 1:
        raise UserError(f"square_queries must be a positive integer, got {square_queries!r}")
    eps_grid = sorted(float(e) for e in eps_grid)
    if not eps_grid:
        raise UserError("eps_grid must hold at least one eps")
    primary = config.defenses[-1]
    if primary.name == "none":
        raise UserError("the sanity checks attack a defended model; the primary (last) defense is 'none'")
    key = _steps_key(attack)
    steps = int(attack.params.get(key, ATTACKS[attack.name].defaults[key]))
    if steps < 1:
        raise UserError(f"the attack needs at least one step, got {key}={steps}")
    base, more = _with_steps(attack, steps), _with_steps(attack, steps * steps_factor)
    square = AttackSpec("square", {"n_queries": square_queries})
    gradient = [base, more, *extra_attacks]
    eps0 = float(config.eps)
    keys = [a.key_for(eps0, config.threat) for a in gradient]
    if len(set(keys)) != len(keys):
        raise UserError(f"the sanity attacks share a name ({keys}); give extra_attacks distinct labels")

    t0 = time.perf_counter()
    # One classifier for every sub-run (the engine would otherwise reload and re-hash the checkpoint each time).
    clf, minfo = load_classifier(config.model, config.dataset, THREATS[config.threat], checkpoint=config.checkpoint,
                                 model_dir=config.model_dir, device=config.device, return_info=True)
    common = dict(data_dir=data_dir, write=False, progress=progress, classifier=clf, model_info=minfo.to_dict())

    def run(setting: str, eps: float, attacks: list[AttackSpec], defense: DefenseSpec = primary) -> dict:
        sub = dataclasses.replace(config, setting=setting, eps=eps, attacks=attacks, defenses=[defense])
        rec = evaluate(sub, **common)
        return rec["variants"][defense.key]

    main = run("adaptive", eps0, [*gradient, square])
    sweep, bare_sweep = {}, {}
    bare_attack = AttackSpec("pgd", {"steps": steps})  # the bare classifier at each eps, as many steps
    for e in eps_grid:
        sweep[e] = main if _same_eps(e, eps0) else run("adaptive", e, [base])
        bare_sweep[e] = run("transfer", e, [bare_attack], DefenseSpec(name="none"))
    transfer = run("transfer", eps0, [TRANSFER_ATTACK])
    bkey = {e: base.key_for(e, config.threat) for e in eps_grid}
    square_key = square.key_for(eps0, config.threat)
    bare_key = {e: bare_attack.key_for(e, config.threat) for e in eps_grid}

    s, ex = main["summary"], main["examples"]
    n = s["n"]
    checks: list[dict[str, Any]] = []

    # 1. eps sweep
    accs = [sweep[e]["summary"]["robust_acc"][bkey[e]] for e in eps_grid]
    d1 = decide_eps_sweep(eps_grid, accs, n, max_acc=max_acc_at_largest_eps)
    d1["rises"] = [[eps_str(a, config.threat), eps_str(b, config.threat)] for a, b in d1["rises"]]
    d1["sweep"] = [{"eps": e, "eps_str": eps_str(e, config.threat),
                    "robust_acc": sweep[e]["summary"]["robust_acc"][bkey[e]],
                    "robust_final_acc": sweep[e]["summary"].get("robust_final_acc", {}).get(bkey[e]),
                    "adv_acc": sweep[e]["summary"]["adv_acc"][bkey[e]],
                    "ci95": sweep[e]["summary"]["ci95"]["robust_acc"][bkey[e]],
                    "bare_attack": bare_key[e],
                    "bare_robust_acc": bare_sweep[e]["summary"]["robust_acc"][bare_key[e]],
                    "bare_ci95": bare_sweep[e]["summary"]["ci95"]["robust_acc"][bare_key[e]]}
                   for e in eps_grid]
    last = eps_str(eps_grid[-1], config.threat)
    msg1 = (f"{bkey[eps_grid[-1]]}: robust accuracy {100 * d1['acc_at_largest_eps']:.1f}% at eps {last}"
            f" ({'≤' if d1['reaches_zero'] else '>'} {100 * max_acc_at_largest_eps:g}%)"
            + ("" if d1["monotone"] else f"; rises with eps between {d1['rises']}"))
    checks.append({"name": "eps-sweep", "passed": d1["passed"], "details": d1, "message": msg1})

    # 2. convergence
    base_key, more_key = keys[0], keys[1]
    k0, k1 = sum(ex["robust_correct"][base_key]), sum(ex["robust_correct"][more_key])
    d2 = decide_convergence(k0, k1, n)
    d2.update(steps=steps, more_steps=steps * steps_factor, attack_steps=base_key, attack_more_steps=more_key)
    msg2 = (f"{steps} → {steps * steps_factor} steps: {100 * d2['acc_steps']:.1f}% → "
            f"{100 * d2['acc_more_steps']:.1f}%"
            f" (change {100 * abs(d2['difference']):.1f} pt {'≤' if d2['passed'] else '>'} CI half-width "
            f"{100 * d2['ci95_half_width']:.1f} pt)")
    checks.append({"name": "convergence", "passed": d2["passed"], "details": d2, "message": msg2})

    # 3. gradient-free vs gradient
    grad_vecs = [ex["robust_correct"][k] for k in keys]
    grad_worst = [all(v[i] for v in grad_vecs) for i in range(n)]
    d3 = decide_gradient_free(grad_worst, ex["robust_correct"][square_key], alpha=alpha)
    d3.update(square_attack=square_key, gradient_attacks=keys,
              gradient_acc_per_attack={k: s["robust_acc"][k] for k in keys})
    msg3 = (f"Square ({square_queries} queries) {100 * d3['square_acc']:.1f}% vs gradient attacks "
            f"{100 * d3['gradient_acc']:.1f}%; Square alone breaks {d3['square_only_breaks']}, gradient alone "
            f"{d3['gradient_only_breaks']} (McNemar p={d3['mcnemar_p']:.3g})"
            + ("; gradient masking suspected" if d3["masking_suspected"] else ""))
    checks.append({"name": "gradient-free", "passed": d3["passed"], "details": d3, "message": msg3})

    # 4. adaptive <= transfer
    tkey = TRANSFER_ATTACK.key_for(eps0, config.threat)
    if transfer["examples"]["index"] != ex["index"]:
        raise RuntimeError("transfer and adaptive runs saw different examples")  # internal invariant
    d4 = decide_adaptive_vs_transfer(grad_worst, transfer["examples"]["robust_correct"][tkey])
    d4.update(transfer_attack=f"{tkey} (crafted on the bare classifier, then purified)", adaptive_attacks=keys)
    msg4 = (f"adaptive (any-step, worst case) {100 * d4['adaptive_acc']:.1f}% "
            f"{'≤' if d4['passed'] else '>'} transfer {tkey} {100 * d4['transfer_acc']:.1f}%")
    checks.append({"name": "adaptive-vs-transfer", "passed": d4["passed"], "details": d4, "message": msg4})

    flag_text = {"eps-sweep": "attack does not drive robust accuracy to ~0 at large eps (or it rises with eps)",
                 "convergence": "attack not converged: more steps change robust accuracy beyond the 95% CI",
                 "gradient-free": "gradient masking suspected: Square (gradient-free) beats the gradient attacks",
                 "adaptive-vs-transfer": "adaptive attack weaker than the transfer attack on the same examples"}
    flags = [f"{c['name']}: {flag_text[c['name']]}" for c in checks if not c["passed"]]
    report = {
        "schema": "zeropur-bench/sanity/v2",
        "semantics": "robust accuracy = defended clean AND adversarial (records schema v2)",
        "checks": checks,
        "flags": flags,
        "passed": not flags,
        "n": n,
        "variant": primary.key,
        "eps": eps0,
        "eps_str": eps_str(eps0, config.threat),
        "clean_acc": s["clean_acc"],
        "defended_clean_acc": s["defended_clean_acc"],
        "params": {"eps_grid": eps_grid, "attack": {**dataclasses.asdict(attack), "key": base_key},
                   "steps": steps, "steps_factor": steps_factor, "square_queries": square_queries,
                   "extra_attacks": [dataclasses.asdict(a) for a in extra_attacks],
                   "max_acc_at_largest_eps": max_acc_at_largest_eps, "alpha": alpha,
                   "transfer_attack": dataclasses.asdict(TRANSFER_ATTACK)},
        "config": config.to_dict(),
        "provenance": {"model": _portable(minfo.to_dict())},
        "wall_seconds": time.perf_counter() - t0,
    }
    if out is not None:
        write_json_atomic(out, report)
        report["_path"] = str(out)
    return report


def _portable(info: dict) -> dict:
    from .data import portable_path

    return {**info, "checkpoint": portable_path(info["checkpoint"])} if info.get("checkpoint") else info


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
                 **({f"bare classifier ({strip_eps(r['bare_attack'])}) %": 100 * r["bare_robust_acc"]}
                    if "bare_robust_acc" in r else {})} for r in sweep]
        text += "\n\n### eps sweep\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f")
    text += "\n\n" + ("**Flags:**\n" + "\n".join(f"- {f}" for f in report["flags"]) if report["flags"]
                      else "No flags.")
    return text + "\n"
