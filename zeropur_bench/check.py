"""Regression checks on robust accuracy: re-run a baseline's configuration and compare per example.

A robust-accuracy number moves with sampling noise, so the check is paired and statistical: for every
(defense variant × cell) on the same examples, two exact one-sided McNemar tests, one for a drop and one for a
rise, with Holm's correction across all of them, plus an absolute floor per cell. A drop means the defense got
weaker; a rise in robust accuracy means the *attack* may have got weaker (a broken attack looks like a stronger
defense), so both fail the check. Cells are robust accuracy (clean ∧ adversarial, schema v2) and defended clean
accuracy.

It compares like with like: a record whose comparison key (:mod:`zeropur_bench.keys`: dataset, threat, eps,
setting, attacks and their resolved parameters, resolved defense parameters, data and checkpoint sha256, seed,
estimator, dtype) differs from the baseline's is refused with one line. The deliberate what-if mode
(``overrides``, ``check --zp``), which changes the defense on purpose, is exempt.

A baseline file is a run record (``zeropur-bench/record/v2``) with a ``baseline`` block:
``{"alpha": 0.05, "floor_margin": 0.05, "floors": {variant: {attack: floor}}, "note": ...}``.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .config import LEGACY_DEFENSE_FIELDS, AttackSpec, DefenseSpec, EvalConfig
from .evaluate import evaluate
from .fsio import write_json_atomic
from .keys import describe_diff
from .records import OLD_SCHEMAS, SCHEMA, RecordError, RecordView
from .stats import holm, mcnemar_one_sided

DEFAULT_ALPHA = 0.05
DEFAULT_FLOOR_MARGIN = 0.05  # the floor sits this far (absolute) under the baseline accuracy


def config_from_record(cfg: dict, schema: str = SCHEMA) -> EvalConfig:
    """Rebuild the :class:`EvalConfig` stored in a record's ``config`` block (a v1 record's free-form attack
    labels are dropped: columns are now named by their settings)."""
    names = {f.name for f in fields(EvalConfig)}
    kw = {k: copy.deepcopy(v) for k, v in cfg.items() if k in names}
    kw["attacks"] = [AttackSpec(name=a["name"], params=a.get("params", {}),
                                label=None if schema in OLD_SCHEMAS else a.get("label"))
                     for a in cfg["attacks"]]
    spec_fields = {"name", "options", "label", "sweep", *LEGACY_DEFENSE_FIELDS}
    kw["defenses"] = [DefenseSpec(**{k: copy.deepcopy(v) for k, v in d.items() if k in spec_fields})
                      for d in cfg["defenses"]]
    return EvalConfig(**kw)


@dataclass
class Comparison:
    variant: str
    attack: str
    base_acc: float
    now_acc: float
    p_value: float  # one-sided exact McNemar, H1: now is worse (a drop)
    floor: float
    p_rise: float = 1.0  # one-sided exact McNemar, H1: now is better (a rise)
    significant: bool = False  # the drop, after Holm
    significant_rise: bool = False  # the rise, after Holm

    @property
    def below_floor(self) -> bool:
        return self.now_acc < self.floor - 1e-12

    @property
    def verdict(self) -> str:
        if self.significant_rise:
            if self.attack == "clean":
                return "FAIL (significant rise in clean accuracy: the defense changed; --update if deliberate)"
            return "FAIL (significant rise: the attack may have been weakened)"
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


BARE = "none (bare classifier)"


def _cells(record: dict) -> dict[tuple[str, str], list[bool]]:
    """(variant, cell) → per-example vector. In the transfer setting the bare classifier under each attack is a
    cell too: that is where a weakened attack shows most (a purifier can hide it)."""
    out = {}
    bare = (record.get("bare_classifier") or {}).get("examples")
    if bare:
        for a, vec in bare["robust_correct"].items():
            out[(BARE, a)] = vec
    for v, block in record["variants"].items():
        ex = block["examples"]
        out[(v, "clean")] = ex["defended_clean_correct"]
        for a, vec in ex["robust_correct"].items():
            out[(v, a)] = vec
    return out


def _refuse_if_different(base: dict, now: dict, same_config: bool = True) -> None:
    """Refuse unlike comparisons: different data or checkpoint always; any other difference of the comparison
    key unless ``same_config`` is False (the what-if mode changes the defense on purpose)."""
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
    if same_config:
        bk, nk = (base.get("keys") or {}).get("comparison"), (now.get("keys") or {}).get("comparison")
        if bk is None or nk is None:
            raise UserError("refusing to compare: a record has no comparison key (made by an older version); "
                            "re-make it with the same command")
        if bk != nk:
            raise UserError(f"refusing to compare: the configuration differs from the baseline's "
                            f"({describe_diff(bk, nk)}); compare records made with the same configuration")


def compare(base: dict, now: dict, same_config: bool = True) -> list[Comparison]:
    """Paired comparison of every (variant, cell), both directions, Holm-corrected across all tests."""
    _refuse_if_different(base, now, same_config)
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
        rows.append(Comparison(v, a, b_acc, n_acc, mcnemar_one_sided(bvec, nvec), floor,
                               p_rise=mcnemar_one_sided(nvec, bvec)))
    rejected = holm([r.p_value for r in rows] + [r.p_rise for r in rows], alpha)
    for i, row in enumerate(rows):
        row.significant, row.significant_rise = rejected[i], rejected[len(rows) + i]
    return rows


def report(rows: list[Comparison]) -> str:
    import pandas as pd

    df = pd.DataFrame([{"variant": r.variant, "cell": r.attack, "baseline %": f"{100 * r.base_acc:.1f}",
                        "now %": f"{100 * r.now_acc:.1f}", "diff (pp)": f"{100 * (r.now_acc - r.base_acc):+.1f}",
                        "p drop": f"{r.p_value:.3g}", "p rise": f"{r.p_rise:.3g}",
                        "floor %": f"{100 * r.floor:.1f}", "verdict": r.verdict} for r in rows])
    return df.to_markdown(index=False)


def make_baseline(record: dict, alpha: float = DEFAULT_ALPHA, floor_margin: float = DEFAULT_FLOOR_MARGIN,
                  note: str | None = None) -> dict:
    """A baseline = the record plus its decision settings (floors default to baseline − margin)."""
    rec = {k: v for k, v in record.items() if not k.startswith("_")}
    cells = _cells(rec)
    floors = {v: {a: round(max(0.0, sum(vec) / len(vec) - floor_margin), 4)
                  for (vv, a), vec in cells.items() if vv == v} for v in dict.fromkeys(vv for vv, _ in cells)}
    rec["baseline"] = {"alpha": alpha, "floor_margin": floor_margin, "floors": floors, "note": note}
    return rec


def _read_baseline(path: Path, update: bool) -> tuple[dict, str]:
    """The baseline record (as a dict) and its schema. A v2 record is read by :meth:`RecordView.read` (one-line
    :class:`RecordError` for anything else); a v1 baseline only with ``update``, which re-makes it from its
    stored configuration."""
    try:
        return RecordView.read(path).raw, SCHEMA
    except RecordError:
        old = _old_record(path)
        if old is None:
            raise
    schema = old["schema"]
    if update:
        return old, schema
    raise UserError(f"'{path}' is a {schema} baseline (robust accuracy then ignored the clean result); "
                    f"re-make it: zeropur-bench check --baseline {path} --update")


def _old_record(path: Path) -> dict | None:
    """The file as a dict if it is a record of an older schema (:data:`OLD_SCHEMAS`), else None."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return raw if isinstance(raw, dict) and raw.get("schema") in OLD_SCHEMAS else None


def run_check(baseline_path: str | os.PathLike, *, record_path: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
              update: bool = False, progress: bool = False) -> tuple[list[Comparison], dict]:
    """Re-run the baseline's configuration (or take the run at ``record_path``) and compare with the baseline.

    ``overrides`` change ZeroPur knobs of every variant (the what-if mode that shows the check's power; exempt from
    the configuration refusal). ``update`` rewrites the baseline from the new run after a deliberate change (with
    ``record_path`` it also creates a new baseline; a v1 baseline is re-made from its stored configuration).
    """
    path = Path(baseline_path)
    base, schema = None, SCHEMA
    if path.is_file():
        base, schema = _read_baseline(path, update)
    elif not (update and record_path is not None):
        raise UserError(f"baseline '{path}' does not exist; create it from a run record with "
                        f"`zeropur-bench check --baseline {path} --record RESULTS.json --update`")
    if update and record_path is None and path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot rewrite baseline '{path}': no write permission")
    overrides = dict(overrides or {})
    if record_path is not None:
        if overrides:
            raise UserError("--zp changes the defense before re-running; it cannot apply to a given --record")
        now = RecordView.read(record_path).raw
    else:
        config = config_from_record(base["config"], schema)
        blur = overrides.pop("blur", None)  # e.g. blur=identity: the gross break the check must catch
        changes = {**overrides, **({"blur": blur} if blur else {})}
        for d in config.defenses:  # every variant that takes these options (not the bare classifier)
            if d.entry.open_options or set(changes) <= set(d.entry.option_specs):
                d.options = {**d.options, **changes}
        if blur:
            overrides["blur"] = blur
        now = evaluate(config, data_dir=data_dir, write=False, progress=progress)
    rows = compare(base, now, same_config=not overrides) if base is not None and not update else []
    if update:
        settings = (base or {}).get("baseline") or {}
        write_json_atomic(path, make_baseline(now, settings.get("alpha", DEFAULT_ALPHA),
                                              settings.get("floor_margin", DEFAULT_FLOOR_MARGIN),
                                              settings.get("note")))
    return rows, now
