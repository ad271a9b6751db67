"""Regression checks on robust accuracy: re-run a baseline's configuration and compare per example.

A robust-accuracy number moves with sampling noise, so the check is paired and statistical: for every
(defense variant × attack) cell, an exact one-sided McNemar test on the same examples (H1: "now" is worse),
Holm's correction across the cells, plus an absolute floor per cell. It refuses to compare when the data slice or
the checkpoint differ from the baseline's (their sha256 are in the records).

A baseline file is a run record (``zeropur-bench/record/v1``) with a ``baseline`` block:
``{"alpha": 0.05, "floor_margin": 0.05, "floors": {variant: {attack: floor}}, "note": ...}``.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .evaluate import AttackSpec, DefenseSpec, EvalConfig, evaluate
from .records import SCHEMA, load_record, write_json_atomic
from .stats import holm, mcnemar_one_sided

DEFAULT_ALPHA = 0.05
DEFAULT_FLOOR_MARGIN = 0.05  # the floor sits this far (absolute) under the baseline accuracy


def config_from_record(cfg: dict) -> EvalConfig:
    """Rebuild the :class:`EvalConfig` stored in a record's ``config`` block."""
    names = {f.name for f in fields(EvalConfig)}
    kw = {k: copy.deepcopy(v) for k, v in cfg.items() if k in names}
    kw["attacks"] = [AttackSpec(name=a["name"], params=a.get("params", {}), label=a.get("label"))
                     for a in cfg["attacks"]]
    kw["defenses"] = [DefenseSpec(**{k: v for k, v in d.items() if k in {f.name for f in fields(DefenseSpec)}})
                      for d in cfg["defenses"]]
    return EvalConfig(**kw)


@dataclass
class Comparison:
    variant: str
    attack: str
    base_acc: float
    now_acc: float
    p_value: float
    floor: float
    significant: bool = False

    @property
    def below_floor(self) -> bool:
        return self.now_acc < self.floor - 1e-12

    @property
    def verdict(self) -> str:
        if self.significant and self.below_floor:
            return "FAIL (significant drop, below floor)"
        if self.significant:
            return "FAIL (significant drop)"
        if self.below_floor:
            return "FAIL (below floor)"
        return "ok"

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"


def _cells(record: dict) -> dict[tuple[str, str], list[bool]]:
    out = {}
    for v, block in record["variants"].items():
        ex = block["examples"]
        out[(v, "clean")] = ex["defended_clean_correct"]
        for a, vec in ex["robust_correct"].items():
            out[(v, a)] = vec
    return out


def _refuse_if_different(base: dict, now: dict) -> None:
    bd, nd = base["provenance"]["data"], now["provenance"]["data"]
    if bd.get("sha256") != nd.get("sha256"):
        raise UserError(f"refusing to compare: the data slice differs from the baseline's (sha256 "
                        f"{str(bd.get('sha256'))[:12]} vs {str(nd.get('sha256'))[:12]}); use the same data and n")
    bm, nm = base["provenance"].get("model") or {}, now["provenance"].get("model") or {}
    if bm.get("checkpoint_sha256") != nm.get("checkpoint_sha256"):
        raise UserError(f"refusing to compare: the checkpoint differs from the baseline's (sha256 "
                        f"{str(bm.get('checkpoint_sha256'))[:12]} vs {str(nm.get('checkpoint_sha256'))[:12]})")
    if base["examples"]["index"] != now["examples"]["index"]:
        raise UserError("refusing to compare: the runs cover different examples")


def compare(base: dict, now: dict) -> list[Comparison]:
    """Paired comparison of every (variant, attack) cell, Holm-corrected across cells."""
    _refuse_if_different(base, now)
    settings = base.get("baseline") or {}
    alpha = float(settings.get("alpha", DEFAULT_ALPHA))
    margin = float(settings.get("floor_margin", DEFAULT_FLOOR_MARGIN))
    floors = settings.get("floors") or {}
    bc, nc = _cells(base), _cells(now)
    missing = sorted(set(bc) - set(nc))
    if missing:
        raise UserError(f"the new run lacks baseline cells {missing[:3]}; rerun with the baseline's configuration")
    rows = []
    for (v, a), bvec in bc.items():
        nvec = nc[(v, a)]
        b_acc, n_acc = sum(bvec) / len(bvec), sum(nvec) / len(nvec)
        floor = float(floors.get(v, {}).get(a, max(0.0, b_acc - margin)))
        rows.append(Comparison(v, a, b_acc, n_acc, mcnemar_one_sided(bvec, nvec), floor))
    for row, rej in zip(rows, holm([r.p_value for r in rows], alpha)):
        row.significant = rej
    return rows


def report(rows: list[Comparison]) -> str:
    import pandas as pd

    df = pd.DataFrame([{"variant": r.variant, "attack": r.attack, "baseline %": f"{100 * r.base_acc:.1f}",
                        "now %": f"{100 * r.now_acc:.1f}", "diff (pp)": f"{100 * (r.now_acc - r.base_acc):+.1f}",
                        "p (one-sided McNemar)": f"{r.p_value:.3g}", "floor %": f"{100 * r.floor:.1f}",
                        "verdict": r.verdict} for r in rows])
    return df.to_markdown(index=False)


def make_baseline(record: dict, alpha: float = DEFAULT_ALPHA, floor_margin: float = DEFAULT_FLOOR_MARGIN,
                  note: str | None = None) -> dict:
    """A baseline = the record plus its decision settings (floors default to baseline − margin)."""
    rec = {k: v for k, v in record.items() if not k.startswith("_")}
    floors = {v: {a: round(max(0.0, sum(vec) / len(vec) - floor_margin), 4)
                  for (vv, a), vec in _cells(rec).items() if vv == v} for v in rec["variants"]}
    rec["baseline"] = {"alpha": alpha, "floor_margin": floor_margin, "floors": floors, "note": note}
    return rec


def run_check(baseline_path: str | os.PathLike, *, record_path: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
              update: bool = False, progress: bool = False) -> tuple[list[Comparison], dict]:
    """Re-run the baseline's configuration (or take the run at ``record_path``) and compare with the baseline.

    ``overrides`` change ZeroPur knobs of every variant (used to show the check's power). ``update`` rewrites the
    baseline from the new run after a deliberate change (with ``record_path`` it also creates a new baseline).
    """
    path = Path(baseline_path)
    base = None
    if path.is_file():
        try:
            base = load_record(path)
        except (ValueError, OSError) as exc:
            raise UserError(f"'{path}' is not a {SCHEMA} baseline record ({exc})") from None
    elif not (update and record_path is not None):
        raise UserError(f"baseline '{path}' does not exist; create it from a run record with "
                        f"`zeropur-bench check --baseline {path} --record RESULTS.json --update`")
    if record_path is not None:
        try:
            now = load_record(record_path)
        except (ValueError, OSError) as exc:
            raise UserError(f"cannot read record '{record_path}' ({exc})") from None
    else:
        config = config_from_record(base["config"])
        overrides = dict(overrides or {})
        blur = overrides.pop("blur", None)  # e.g. blur=identity: the gross break the check must catch
        for d in config.defenses:
            d.overrides = {**d.overrides, **overrides}
            d.blur = blur or d.blur
        now = evaluate(config, data_dir=data_dir, write=False, progress=progress)
    rows = compare(base, now) if base is not None and not update else []
    if update:
        settings = (base or {}).get("baseline") or {}
        write_json_atomic(path, make_baseline(now, settings.get("alpha", DEFAULT_ALPHA),
                                              settings.get("floor_margin", DEFAULT_FLOOR_MARGIN),
                                              settings.get("note")))
    return rows, now
