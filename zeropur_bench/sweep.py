"""Purification-parameter sweeps (issue 15), the library behind ``zeropur-bench sweep --param fine_steps
--values 0,10,20,50 ...`` (the command is :mod:`zeropur_bench.cli.sweep`).

The records behind ``zeropur-bench plot steps`` (paper Fig. 5) and ``plot grid`` (Fig. 6), made with the usual
``run`` options (``--out`` becomes ``--out-dir``):

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

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import UserError
from .parsing import parse_value
from .profile_names import DEFAULT_PROFILE

if TYPE_CHECKING:
    from .config import EvalConfig
    from .evaluate import Evaluator


def parse_values(text: str, option: str) -> list[tuple[str, Any]]:
    """``'0,10,20,50'`` → ``[('0', 0), ('10', 10), ...]`` (the typed text names the variant)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"{option} needs at least one value, e.g. {option} 0,10,20,50")
    vals = [(t, parse_value(t, option)) for t in items]
    seen = set()
    for t, v in vals:
        k = json.dumps(v, sort_keys=True, default=str)
        if k in seen:
            raise UserError(f"{option}: value {t} is given twice")
        seen.add(k)
    return vals


def _check_param(param: str, profile: str, stages: Sequence[str], overrides: dict, option: str) -> None:
    from .defense import PROFILES
    from .defenses import RUN_OWNED

    known = sorted(set(PROFILES[profile]) | {"surrogate"})
    if param in RUN_OWNED:
        raise UserError(f"{option} {param} is set for the whole run ({RUN_OWNED[param]}); sweep a "
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
                  blurs: Sequence[str] = ("median:3",), profile: str = DEFAULT_PROFILE,
                  overrides: dict | None = None, calibration: dict | None = None) -> list[EvalConfig]:
    """The sweep's :class:`EvalConfig` s: one (transfer) holding a variant per value, or one per value (adaptive).
    ``base``: the EvalConfig keyword arguments other than ``defenses``."""
    from .config import DefenseSpec, EvalConfig

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
                                       overrides={**overrides, **{p: v for p, _, v in cell}},
                                       sweep={p: v for p, _, v in cell}, calibration=calibration))
        return out

    if base.get("setting", "transfer") == "transfer":
        return [EvalConfig(**base, defenses=[d for cell in cells for d in variants(cell)])]
    return [EvalConfig(**base, defenses=variants(cell)) for cell in cells]


def run_sweep(configs: Sequence[EvalConfig], out_dir: str | os.PathLike = "results/", *,
              data_dir: str | os.PathLike | None = None, progress: bool = True,
              echo: Callable[[str], None] | None = None) -> list[dict]:
    """Run each config into ``out_dir`` under its default name; a finished record of the same configuration is
    skipped, an unfinished one resumes. Returns ``[{"path", "status": "computed" | "skipped", "record"}]``."""
    from .evaluate import Evaluator, resolve_out

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
        if not shared:  # one classifier for every record
            shared = {"classifier": ev.classifier, "model_info": ev.model_info}
        evaluators.append((ev, resolve_out(folder, ev.default_name())))
    for ev, path in evaluators:
        if path.is_file():
            old = _finished_record(path, ev)
            if old is None:
                raise UserError(f"'{path}' exists but is not this sweep's finished record; move it away or choose "
                                "another --out-dir")
            echo(f"{path}: finished earlier, skipped")
            done.append({"path": str(path), "status": "skipped", "record": old})
            continue
        record = ev.run(out=path, progress=progress)
        resumed = f" (resumed {ev.batches_resumed} finished batches)" if ev.batches_resumed else ""
        echo(f"{record['_path']}: written{resumed}")
        done.append({"path": record["_path"], "status": "computed", "record": record})
    return done


def _finished_record(path: Path, ev: Evaluator) -> dict | None:
    """The record at ``path`` (with ``_path``) if it is the finished record of ``ev``'s configuration (same
    comparison key and batch size, as its name promises), else None."""
    from .keys import digest
    from .records import RecordError, RecordView

    try:
        view = RecordView.read(path)
    except RecordError:
        return None
    if view.comparison_hash != digest(ev.comparison) or view.batch_size != ev.config.batch_size:
        return None
    return {**view.raw, "_path": str(path)}


def sweep_table(done: Sequence[dict]) -> str:
    """Robust accuracy per variant and attack over the sweep's records (percent, 95% Wilson interval)."""
    import pandas as pd

    from .fmt import pct_ci

    rows = []
    for d in done:
        for k, v in d["record"]["variants"].items():
            s = v["summary"]
            row = {"variant": k,
                   "defended clean": pct_ci(s["defended_clean_acc"], s["ci95"]["defended_clean_acc"], 1)}
            for a, acc in s["robust_acc"].items():
                row[a] = pct_ci(acc, s["ci95"]["robust_acc"][a], 1)
            rows.append(row)
    c = done[0]["record"]["config"]
    head = (f"{c['dataset']} {c['threat']} eps={c['eps_str']} {c['setting']} | model {c['model']} | "
            f"n={done[0]['record']['summary']['n']} | robust accuracy % [95% Wilson CI]"
            + (" (any step)" if c["setting"] == "adaptive" else ""))
    return head + "\n" + pd.DataFrame(rows).to_markdown(index=False)
