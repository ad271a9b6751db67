"""Purification-parameter sweeps (issue 15): ``zeropur-bench sweep --param fine_steps --values 0,10,20,50 ...``.

The records behind ``zeropur-bench plot steps`` (paper Fig. 5) and ``plot grid`` (Fig. 6), made with the usual
``run`` options (borrowed from ``zeropur-bench run``; ``--out`` becomes ``--out-dir``):

* **transfer** setting: ONE record. The attacks are crafted once on the bare classifier and the same adversarial
  set is purified by one defense variant per value, labelled ``zeropur-cf[fine_steps=10]`` (two axes:
  ``zeropur-cf[coarse_steps=5,fine_steps=25]``).
* **adaptive** setting: each value needs its own attack, so one record per value (per grid cell), with the same
  labels.

Each record goes to ``<out-dir>/<the engine's default name>`` (a hash of its configuration), so rerunning the same
command resumes: a finished record is skipped, a killed one resumes from its last finished batch
(``<record>.partial/``, the engine's resume).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from .errors import UserError, friendly as _friendly

# run's options that a sweep does not take (it writes several records into --out-dir; the defense is ZeroPur).
NOT_BORROWED = ("out", "shard", "merge_only", "defenses")
# run's options this command understands; any other option borrowed from run must be left at its default.
HANDLED = ("dataset", "threat", "model", "checkpoint", "model_dir", "data_dir", "stages", "profiles",
           "calibration_file", "blur",
           "zp_overrides", "attacks", "setting", "eps", "n_ex", "batch_size", "device", "dtype", "channels_last",
           "seed", "data_seed", "estimator", "estimator_n", "recipe", "no_progress")


def parse_values(text: str, option: str) -> list[tuple[str, Any]]:
    """``'0,10,20,50'`` → ``[('0', 0), ('10', 10), ...]`` (the typed text names the variant)."""
    from .cli import parse_value

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"{option} needs at least one value, e.g. {option} 0,10,20,50")
    vals = [(t, parse_value(t)) for t in items]
    seen = set()
    for t, v in vals:
        k = json.dumps(v, sort_keys=True, default=str)
        if k in seen:
            raise UserError(f"{option}: value {t} is given twice")
        seen.add(k)
    return vals


def _check_param(param: str, profile: str, stages: Sequence[str], overrides: dict, option: str) -> None:
    from .defense import PROFILES
    from .evaluate import RUN_OWNED_DEFENSE_KEYS

    known = sorted(set(PROFILES[profile]) | {"surrogate"})
    if param in RUN_OWNED_DEFENSE_KEYS:
        raise UserError(f"{option} {param} is set for the whole run ({RUN_OWNED_DEFENSE_KEYS[param]}); sweep a "
                        f"ZeroPur setting: {', '.join(known)}")
    if param not in known:
        raise UserError(f"{option} {param!r} is not a ZeroPur setting; known: {', '.join(known)}")
    if param in overrides:
        raise UserError(f"{param} is both swept ({option}) and fixed with --zp; drop it from --zp")
    fine_only = param.startswith("fine_") or param in ("ila_weight", "ila_reduce", "lpips_weight", "lpips_layers")
    if fine_only and "c" in stages:
        raise UserError(f"{param} has no effect on stages c (coarse shifting only); sweep it with --stages cf")


def sweep_configs(base: dict, *, param: str, values: Sequence[tuple[str, Any]], param2: str | None = None,
                  values2: Sequence[tuple[str, Any]] | None = None, stages: Sequence[str] = ("cf",),
                  blurs: Sequence[str] = ("median:3",), profile: str = "authors",
                  overrides: dict | None = None) -> list:
    """The sweep's :class:`EvalConfig` s: one (transfer) holding a variant per value, or one per value (adaptive).
    ``base``: the EvalConfig keyword arguments other than ``defenses``."""
    from .evaluate import DefenseSpec, EvalConfig

    overrides = dict(overrides or {})
    stages, blurs = list(dict.fromkeys(stages)) or ["cf"], list(dict.fromkeys(blurs)) or ["median:3"]
    _check_param(param, profile, stages, overrides, "--param")
    if param2 is not None:
        if param2 == param:
            raise UserError(f"--param and --param2 are both {param}; sweep two different settings")
        if not values2:
            raise UserError("--param2 needs --values2")
        _check_param(param2, profile, stages, overrides, "--param2")
    elif values2:
        raise UserError("--values2 needs --param2")
    cells = [((param, t, v),) for t, v in values] if param2 is None else \
        [((param, t, v), (param2, t2, v2)) for t, v in values for t2, v2 in values2]

    def variants(cell: tuple) -> list:
        out = []
        for b in blurs:
            for s in stages:
                name = f"zeropur-{s}" if len(blurs) == 1 else f"zeropur-{s}-{b}"
                label = f"{name}[{','.join(f'{p}={t}' for p, t, _ in cell)}]"
                out.append(DefenseSpec(profile=profile, stages=s, blur=b, label=label,
                                       overrides={**overrides, **{p: v for p, _, v in cell}}))
        return out

    if base.get("setting", "transfer") == "transfer":
        return [EvalConfig(**base, defenses=[d for cell in cells for d in variants(cell)])]
    return [EvalConfig(**base, defenses=variants(cell)) for cell in cells]


def run_sweep(configs: Sequence, out_dir: str | os.PathLike = "results/", *, data_dir: str | os.PathLike | None = None,
              progress: bool = True, echo: Callable[[str], None] | None = None) -> list[dict]:
    """Run each config into ``out_dir`` under its default name; a finished record of the same configuration is
    skipped, an unfinished one resumes. Returns ``[{"path", "status": "computed" | "skipped", "record"}]``."""
    from .evaluate import Evaluator, resolve_out
    from .keys import digest
    from .records import SCHEMA

    echo = echo or (lambda s: None)
    folder = os.fspath(out_dir)
    folder = folder if folder.endswith(("/", os.sep)) else folder + "/"
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UserError(f"--out-dir '{out_dir}' is a file; give a folder")
    done: list[dict] = []
    shared: dict[str, Any] = {}
    evaluators = []
    for cfg in configs:  # validate and name every record before computing any
        ev = Evaluator(cfg, data_dir=data_dir, **shared)
        ev.prepare()
        if not shared:
            shared = {"classifier": ev._classifier, "model_info": ev._model_info}
        evaluators.append((ev, resolve_out(folder, ev.default_name())))
    for ev, path in evaluators:
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            keys = old.get("keys") or {}
            if (old.get("schema") == SCHEMA and keys.get("comparison_hash") == digest(ev.comparison)
                    and keys.get("batch_size") == ev.config.batch_size):
                echo(f"{path}: finished earlier, skipped")
                old["_path"] = str(path)
                done.append({"path": str(path), "status": "skipped", "record": old})
                continue
            raise UserError(f"'{path}' exists but is not this sweep's finished record; move it away or choose "
                            "another --out-dir")
        record = ev.run(out=path, progress=progress)
        resumed = f" (resumed {ev.batches_resumed} finished batches)" if ev.batches_resumed else ""
        echo(f"{record['_path']}: written{resumed}")
        done.append({"path": record["_path"], "status": "computed", "record": record})
    return done


def sweep_table(done: Sequence[dict]) -> str:
    """Robust accuracy per variant and attack over the sweep's records (percent, 95% Wilson interval)."""
    import pandas as pd

    pct = lambda a, ci: f"{100 * a:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"  # noqa: E731
    rows = []
    for d in done:
        for k, v in d["record"]["variants"].items():
            s = v["summary"]
            row = {"variant": k, "defended clean": pct(s["defended_clean_acc"], s["ci95"]["defended_clean_acc"])}
            for a, acc in s["robust_acc"].items():
                row[a] = pct(acc, s["ci95"]["robust_acc"][a])
            rows.append(row)
    c = done[0]["record"]["config"]
    head = (f"{c['dataset']} {c['threat']} eps={c['eps_str']} {c['setting']} | model {c['model']} | "
            f"n={done[0]['record']['summary']['n']} | robust accuracy % [95% Wilson CI]"
            + (" (any step)" if c["setting"] == "adaptive" else ""))
    return head + "\n" + pd.DataFrame(rows).to_markdown(index=False)


# -- the command ----------------------------------------------------------------------------------------------------------
class _BorrowingCommand(click.Command):
    """A command that takes ``zeropur-bench run``'s options (but those in ``NOT_BORROWED``) besides its own.
    They are copied at first use: cli.py imports this module while it is still being defined."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._borrowed = False

    def borrow(self) -> None:
        if self._borrowed:
            return
        from .cli import run_cmd

        own = {p.name for p in self.params}
        taken = []
        for p in run_cmd.params:
            if p.name in NOT_BORROWED or p.name in own:
                continue
            q = copy.copy(p)
            if p.name == "stages":
                q.help = ("Coarse only (c) and/or coarse + fine (cf); repeat for several variants per value. "
                          "Default: cf.")
            taken.append(q)
        self.params = taken + self.params
        self._borrowed = True

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self.borrow()
        return super().get_params(ctx)


@click.command("sweep", cls=_BorrowingCommand)
@click.option("--param", required=True, help="ZeroPur setting to sweep, e.g. fine_steps or coarse_steps.")
@click.option("--values", required=True, help="Its values, comma-separated, e.g. 0,10,20,50.")
@click.option("--param2", default=None, help="A second setting for a grid (e.g. fine_steps with --param "
              "coarse_steps): every combination is run.")
@click.option("--values2", default=None, help="The second setting's values, e.g. 0,25,50.")
@click.option("--out-dir", default="results/", show_default=True,
              help="Folder for the record(s), each under the engine's default name (reruns resume or skip).")
@_friendly
def sweep_cmd(param: str, values: str, param2: str | None, values2: str | None, out_dir: str, **run: Any) -> None:
    """Sweep a ZeroPur setting: the records behind `plot steps` (and, with --param2, `plot grid`). Takes
    `run`'s options (see `zeropur-bench run --help`).

    \b
    transfer (default): ONE record, the adversarial set crafted once and purified by one variant per value
    (zeropur-cf[fine_steps=10], ...); adaptive: one record per value (each value needs its own attack).
    Rerunning the command skips finished records and resumes unfinished ones.

    \b
    Examples:
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param fine_steps --values 0,10,25,50 --out-dir results/sweeps/
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param coarse_steps --values 0,5,10 --param2 fine_steps --values2 0,25,50 --out-dir results/grid/
      zeropur-bench plot steps --results results/sweeps/ --out results/figures/steps.png
    """
    from . import distributed, registry
    from .archs import ARCHS
    from .cli import (DEFAULT_PROFILE, attach_calibrations, default_blur, default_model, parse_attack, parse_kv,
                      parse_number, summary_text)
    from .defense.blur import make_blur
    from .evaluate import AttackSpec

    ctx = click.get_current_context()
    for p in ctx.command.get_params(ctx):  # a run option this command does not know must stay at its default
        if p.name in run and p.name not in HANDLED and run[p.name] != p.default and run[p.name] not in ((), None, False):
            raise UserError(f"--{p.name.replace('_', '-')} is not supported by sweep")
    g = lambda k, d=None: run.get(k, d)  # noqa: E731
    dataset = g("dataset", "cifar10")
    model = g("model")
    if model is None:
        model, msg = default_model(dataset)
        click.echo(msg, err=True)
    n_ex = g("n_ex")
    if n_ex is None:
        arch = registry.get(model).arch if registry.get(model) else model
        n_ex = 100 if arch in ARCHS and arch.startswith("resnet") and arch != "resnet18" else 10
    attack_specs = [parse_attack(a) for a in g("attacks", ())] or [
        AttackSpec("pgd"), AttackSpec("autoattack", {"version": "rand"})]
    profiles = list(dict.fromkeys(g("profiles", ()))) or [DEFAULT_PROFILE]
    if len(profiles) > 1:
        raise UserError("a sweep takes one --profile (its variants differ by the swept setting)")
    blurs = list(dict.fromkeys(g("blur", ()))) or [default_blur(model, g("checkpoint"), g("recipe"))]
    for b in blurs:
        make_blur(b)
    eps = g("eps")
    base = dict(model=model, dataset=dataset, threat=g("threat", "linf"), setting=g("setting", "transfer"),
                eps=parse_number(eps, "--eps") if eps is not None else None, attacks=attack_specs,
                checkpoint=g("checkpoint"), model_dir=g("model_dir"), n_ex=n_ex, data_seed=g("data_seed"),
                seed=g("seed", 0), estimator=g("estimator", "one-shot"), estimator_n=g("estimator_n", 1),
                batch_size=g("batch_size", 100), device=distributed.resolve_device(g("device", "cpu")),
                dtype=g("dtype", "fp32"), channels_last=bool(g("channels_last", False)), recipe=g("recipe"))
    configs = sweep_configs(base, param=param, values=parse_values(values, "--values"), param2=param2,
                            values2=parse_values(values2, "--values2") if values2 else None,
                            stages=list(g("stages", ())) or ["cf"], blurs=blurs, profile=profiles[0],
                            overrides=parse_kv(g("zp_overrides", ""), "--zp"))
    attach_calibrations([d for c in configs for d in c.defenses], model, dataset, g("threat", "linf"),
                        g("checkpoint"), g("model_dir"), base["device"], g("calibration_file"), g("data_dir"))
    done = run_sweep(configs, out_dir, data_dir=g("data_dir"), progress=not g("no_progress", False),
                     echo=lambda s: click.echo(s, err=True))
    if len(done) == 1:
        click.echo(summary_text(done[0]["record"]))
    else:
        click.echo(sweep_table(done))
    computed = sum(d["status"] == "computed" for d in done)
    click.echo(f"sweep: {len(done)} record(s) in {out_dir} ({computed} computed, {len(done) - computed} skipped); "
               f"plot with `zeropur-bench plot {'grid' if param2 else 'steps'} --results {out_dir} --out FIG.png`")
