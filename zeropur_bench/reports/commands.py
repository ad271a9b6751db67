"""What a table lacks, and the exact command that fills it (only commands that work today).

Every value taken from a record is shell-quoted (``shlex.quote``): a path with a space stays one argument and a
record's field can never become shell syntax when a reader copies the command.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from ..fmt import fmt_value
from .match import MeasuredRow, recipe_key
from .paper import PaperRow, TableSpec

FILL_N_EX = 1000  # examples in the commands that fill a paper row (the paper: the full 10,000)
_TOL = 1e-6


@dataclass
class Missing:
    """One item of the missing list: what is not measured, and the command(s) that measure it."""

    what: str
    commands: list[str] = field(default_factory=list)
    note: str = ""


def _q(v: Any) -> str:
    return shlex.quote(str(v))


def _zp_opts(overrides: dict) -> str:
    def v(x: Any) -> str:
        if isinstance(x, bool):
            return "true" if x else "false"
        if x is None:
            return "none"
        if isinstance(x, (list, tuple)):
            return "|".join(v(t) for t in x)
        return repr(x) if isinstance(x, float) else str(x)

    return ",".join(f"{k}={v(x)}" for k, x in sorted(overrides.items()))


def run_command(*, dataset: str, threat: str, model: str, checkpoint: str | None = None, recipe: str | None = None,
                eps: float | None = None, defense: str | None = None, stages: list[str] | tuple[str, ...] = (),
                profiles: list[str] | tuple[str, ...] = (), blur: str | None = None,
                overrides: dict | None = None, setting: str = "transfer", cascade: bool = False,
                attacks: list[str] | tuple[str, ...] = (), n_ex: int | None = None, batch_size: int | None = None,
                seed: int | None = None, data_seed: int | None = None, dtype: str | None = None,
                estimator: str | None = None, estimator_n: int | None = None, out: str | None = None) -> str:
    """A ``zeropur-bench run`` command line, every value quoted (``defense`` None: the command line's default;
    each of the later keywords left out: its default — seed 0, fp32, the one-shot estimator)."""
    from ..config import default_eps

    parts = ["zeropur-bench run", f"--dataset {_q(dataset)}", f"--threat {_q(threat)}", f"--model {_q(model)}"]
    if checkpoint:
        parts.append(f"--checkpoint {_q(checkpoint)}")
    if recipe:
        parts.append(f"--recipe {_q(recipe)}")
    if eps is not None and abs(eps - default_eps(dataset, threat)) > _TOL:
        parts.append(f"--eps {_q(fmt_value(float(eps)))}")
    if defense:
        parts.append(f"--defense {_q(defense)}")
    parts += [f"--stages {_q(s)}" for s in stages] + [f"--profile {_q(p)}" for p in profiles]
    if blur:
        parts.append(f"--blur {_q(blur)}")
    if overrides:
        parts.append(f"--zp {_q(_zp_opts(overrides))}")
    if setting != "transfer":
        parts.append(f"--setting {_q(setting)}")
    if cascade:
        parts.append("--cascade")
    parts += [f"--attack {_q(a)}" for a in attacks]
    if n_ex:
        parts.append(f"--n-ex {int(n_ex)}")
    if batch_size is not None:
        parts.append(f"--batch-size {int(batch_size)}")
    if seed not in (None, 0):
        parts.append(f"--seed {int(seed)}")
    if data_seed is not None:
        parts.append(f"--data-seed {int(data_seed)}")
    if dtype not in (None, "fp32"):
        parts.append(f"--dtype {_q(dtype)}")
    if estimator not in (None, "one-shot"):
        parts.append(f"--estimator {_q(estimator)} --estimator-n {int(estimator_n or 1)}")
    if out:
        parts.append(f"--out {_q(out)}")
    return " ".join(parts)


def _row_command(spec: TableSpec, r: MeasuredRow, setting: str, attacks: list[str], stages: list[str],
                 profiles: list[str], cascade: bool = False) -> str:
    rec, v = r.record, r.variant
    ckpt = rec.checkpoint
    return run_command(dataset=rec.dataset, threat=spec.threat, model=rec.model, checkpoint=ckpt,
                       recipe=rec.recipe if ckpt and rec.recipe else None, eps=rec.eps,
                       defense=None if r.of_method else v.name, stages=stages, profiles=profiles, blur=v.blur,
                       overrides=v.overrides if r.of_method else None, setting=setting, cascade=cascade,
                       attacks=attacks, n_ex=rec.n)


def _zeropur_variants(rows: list[MeasuredRow]) -> tuple[list[str], list[str]]:
    """The stages and profiles of the ZeroPur variants among ``rows``, for a command that re-makes all of them
    (stated: the CLI's default profile is not necessarily theirs)."""
    return (sorted({str(r.variant.stages) for r in rows if r.of_method}),
            sorted({str(r.variant.profile) for r in rows if r.of_method}))


def missing_attacks(spec: TableSpec, rows: list[MeasuredRow]) -> list[Missing]:
    """Records that lack one of the table's attacks (or ran it with other settings): one command per record
    that runs every attack of the table with the record's settings and every ZeroPur variant of it."""
    if spec.row_per_family:  # its rows are the attacks themselves
        return []
    by_record: dict[str, list[MeasuredRow]] = {}
    for r in rows:
        by_record.setdefault(r.record.path or r.rid, []).append(r)
    out = []
    for rs in by_record.values():
        r = rs[-1]
        keys = {a.key for a in r.record.attacks}
        lacking = [m for m in spec.metrics if m.kind == "attack" and m.key not in keys]
        if not lacking:
            continue
        near = [a.key for m in lacking for a in r.record.attacks if a.family in m.family]
        cmd = _row_command(spec, r, spec.setting, spec.attack_args, *_zeropur_variants(rs))
        out.append(Missing(
            f"{', '.join(m.name for m in lacking)} for {r.record.model} ({r.record.path})", [cmd],
            (f"the record's {', '.join(near)} {'is' if len(near) == 1 else 'are'} not "
             f"{' / '.join(m.settings for m in lacking)}") if near else ""))
    return out


def missing_adaptive(spec: TableSpec, rows: list[MeasuredRow]) -> list[Missing]:
    """Tables 2 and 3's adaptive column: one command per classifier that makes the adaptive record of every ZeroPur
    variant of it that has none."""
    if not spec.adaptive_column:
        return []
    groups: dict[tuple, list[MeasuredRow]] = {}
    for r in rows:
        if r.of_method and r.adaptive is None:
            key = (r.record.model, r.record.checkpoint, r.variant.blur, tuple(sorted(r.variant.overrides.items())))
            groups.setdefault(key, []).append(r)
    out = []
    for rs in groups.values():
        cmd = _row_command(spec, rs[0], "adaptive", ["bpda-eot"], *_zeropur_variants(rs))
        out.append(Missing(f"BPDA+EOT column for {', '.join(r.rid for r in rs)}", [cmd]))
    return out


def missing_paper_rows(spec: TableSpec, prows: list[PaperRow], rows: list[MeasuredRow]) -> list[Missing]:
    """The paper's ZeroPur rows not measured on their own architecture (one item per architecture and recipe:
    train the classifier, then run it), and rows of the paper's first architecture with no measured row beneath
    at all (the project's shipped ResNet-20 of that recipe, where one is shipped)."""
    from .. import registry

    stand_ins: dict[str, list[PaperRow]] = {}
    own: dict[tuple[str, str], list[PaperRow]] = {}
    zp = [p for p in prows if p.zeropur]
    first = min((p.group for p in zp), default=0)  # the architecture group stand-ins stand under
    for p in zp:
        beneath = [r for r in rows if r.paper is p]
        if not any(r.same_arch for r in beneath):
            own.setdefault((p.arch, p.recipe), []).append(p)
        if (not beneath and p.group == first and p.recipe
                and registry.get(f"resnet20-{spec.default_dataset}-{p.recipe}") is not None):
            stand_ins.setdefault(p.recipe, []).append(p)
    out: list[Missing] = []
    for recipe, ps in stand_ins.items():
        cmd = run_command(dataset=spec.default_dataset, threat=spec.threat,
                          model=f"resnet20-{spec.default_dataset}-{recipe}", stages=sorted({p.stages for p in ps}),
                          setting=spec.setting, attacks=spec.attack_args, n_ex=FILL_N_EX)
        out.append(Missing(f"{', '.join(p.method for p in ps)} on the shipped ResNet-20 ({recipe})", [cmd]))
    by_arch: dict[str, list[PaperRow]] = {}
    for (arch, _), ps in own.items():
        by_arch.setdefault(arch, []).extend(ps)
    for arch, ps in by_arch.items():
        out.extend(_train_then_run(spec, arch, ps))
    return out


def _train_then_run(spec: TableSpec, arch: str, ps: list[PaperRow]) -> list[Missing]:
    """The paper's rows on one of its own architectures: run the shipped classifier of a recipe where there is one
    (``<arch>-<dataset>-<recipe>`` in the registry), else train each recipe's classifier, then run it."""
    from .. import registry

    methods = ", ".join(dict.fromkeys(p.method for p in ps))
    name = {"resnet18": "resnet18", "wrn2810": "wrn-28-10"}.get(ps[0].arch_key)
    recipes = list(dict.fromkeys(p.recipe for p in ps if p.recipe))
    if name is None or spec.default_dataset not in ("cifar10", "cifar100") or not recipes:
        return [Missing(f"{methods} on {arch or 'the paper’s classifier'}", [],
                        "needs data or a classifier this repository does not ship")]
    out = []
    shipped = [r for r in recipes if registry.get(f"{name}-{spec.default_dataset}-{r}") is not None]
    for r in shipped:
        model = f"{name}-{spec.default_dataset}-{r}"
        rps = [p for p in ps if p.recipe == r]
        cmd = run_command(dataset=spec.default_dataset, threat=spec.threat, model=model,
                          stages=sorted({p.stages for p in rps if p.stages}), setting=spec.setting,
                          attacks=spec.attack_args, n_ex=FILL_N_EX)
        out.append(Missing(f"{', '.join(dict.fromkeys(p.method for p in rps))} on the shipped {model}", [cmd]))
    recipes = [r for r in recipes if r not in shipped]
    if not recipes:
        return out
    methods = ", ".join(dict.fromkeys(p.method for p in ps if p.recipe in recipes))
    run_dir = f"runs/{name}-{spec.default_dataset}-$r"
    run = run_command(dataset=spec.default_dataset, threat=spec.threat, model=name, checkpoint="CKPT",
                      recipe="RECIPE", stages=sorted({p.stages for p in ps if p.stages and p.recipe in recipes}),
                      setting=spec.setting,
                      attacks=spec.attack_args, n_ex=FILL_N_EX)
    run = run.replace("CKPT", f"{run_dir}/model.pt").replace("RECIPE", "$r")
    loop = (f"for r in {' '.join(recipes)}; do zeropur-bench train --dataset {spec.default_dataset} --arch {name} "
            f"--aug $r --epochs 120 --out {run_dir} && {run}; done")
    return out + [Missing(f"{methods} on the paper's {arch}", [loop],
                          "no classifier of this architecture and recipe is shipped yet; training checkpoints every "
                          "epoch and resumes, so a CPU gets there across sessions and a GPU job sooner")]


def missing_suite(spec: TableSpec, rows: list[MeasuredRow]) -> list[Missing]:
    """Table 6: a ZeroPur row that something survived, with no gradient-free attack: BPDA+EOT then Square (1,000
    queries) as a cascade, the least a worst case needs (a gradient attack alone can be masked)."""
    if not spec.suite:
        return []
    out = []
    for r in rows:
        worst = r.variant.metric("worst_case_acc")
        if not r.of_method or not worst.measured or worst.acc == 0:
            continue
        if any(a.family == "square" for a in r.record.attacks):
            continue
        cmd = _row_command(spec, r, "adaptive", ["bpda-eot", "square:n_queries=1000"], [str(r.variant.stages)],
                           [str(r.variant.profile)], cascade=True)
        out.append(Missing(f"a gradient-free attack for {r.rid}", [cmd]))
    return out


def missing_list(spec: TableSpec, prows: list[PaperRow], rows: list[MeasuredRow]) -> list[Missing]:
    return (missing_paper_rows(spec, prows, rows) + missing_attacks(spec, rows) + missing_adaptive(spec, rows)
            + missing_suite(spec, rows))


__all__ = ["FILL_N_EX", "Missing", "missing_list", "recipe_key", "run_command"]
