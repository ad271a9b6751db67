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
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .config import LEGACY_DEFENSE_FIELDS, AttackSpec, DefenseSpec, EvalConfig
from .evaluate import evaluate
from .fsio import check_regular, write_json_atomic
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
REMAKE = "remove the file and re-make it (`zeropur-bench check --baseline FILE --record RECORD --update`)"


def _damaged(where: str, field: str, what: str, got: Any) -> UserError:
    shown = repr(got) if not isinstance(got, (list, dict)) else type(got).__name__ + (" (empty)" if not got else "")
    return UserError(f"{where} is damaged: {field} {what}, got {shown}; fix that field or {REMAKE}")


def _get(record: dict, where: str, *path: str) -> Any:
    """``record[path[0]][path[1]]...``; a missing or non-object step is a :class:`UserError` naming the field."""
    obj: Any = record
    for i, key in enumerate(path):
        if not isinstance(obj, dict) or key not in obj:
            raise UserError(f"{where} is damaged: field {'.'.join(path[:i + 1])} is missing; {REMAKE}")
        obj = obj[key]
    return obj


def _fraction(value: Any, where: str, field: str, open_ends: bool = False) -> float:
    """A number in [0, 1] (``open_ends``: in (0, 1)), else a :class:`UserError` naming ``field``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0 < value < 1 if open_ends else 0 <= value <= 1)
    if not ok:
        raise _damaged(where, field, f"must be a number in {'(0, 1)' if open_ends else '[0, 1]'}", value)
    return float(value)


def _settings(base: dict, where: str) -> tuple[float, float, dict[str, dict[str, float]]]:
    """The baseline block's alpha, floor margin and floors ``{variant: {cell: floor}}``, each checked."""
    s = base.get("baseline")
    s = {} if s is None else s
    if not isinstance(s, dict):
        raise _damaged(where, "baseline", "must be an object {alpha, floor_margin, floors, note}", s)
    alpha = _fraction(s["alpha"], where, "baseline.alpha", open_ends=True) if s.get("alpha") is not None \
        else DEFAULT_ALPHA
    margin = _fraction(s["floor_margin"], where, "baseline.floor_margin") if s.get("floor_margin") is not None \
        else DEFAULT_FLOOR_MARGIN
    floors = s.get("floors") or {}
    if not isinstance(floors, dict):
        raise _damaged(where, "baseline.floors", "must be an object {variant: {cell: floor}}", floors)
    for v, cells in floors.items():
        if not isinstance(cells, dict):
            raise _damaged(where, f"baseline.floors.{v}", "must be an object {cell: floor}", cells)
        for a, f in cells.items():
            _fraction(f, where, f"baseline.floors.{v}.{a}")
    return alpha, margin, floors


def _vector(vec: Any, n: int, where: str, field: str) -> list[bool]:
    if not isinstance(vec, list) or not vec or len(vec) != n or not all(isinstance(b, bool) for b in vec):
        raise _damaged(where, field, f"must be a list of {n} true/false values (one per example)", vec)
    return vec


def _cells(record: dict, where: str = "the record") -> dict[tuple[str, str], list[bool]]:
    """(variant, cell) → per-example vector, each checked (a list of booleans, one per example). In the transfer
    setting the bare classifier under each attack is a cell too: that is where a weakened attack shows most (a
    purifier can hide it)."""
    index = _get(record, where, "examples", "index")
    if not isinstance(index, list) or not index:
        raise _damaged(where, "examples.index", "must be a non-empty list of example indices", index)
    n = len(index)
    out = {}
    bare = (record.get("bare_classifier") or {}).get("examples")
    if bare:
        for a, vec in _get(bare, where, "robust_correct").items():
            out[(BARE, a)] = _vector(vec, n, where, f"bare_classifier.examples.robust_correct.{a}")
    variants = _get(record, where, "variants")
    if not isinstance(variants, dict) or not variants:
        raise _damaged(where, "variants", "must be an object of defense variants", variants)
    for v, block in variants.items():
        ex = _get(record, where, "variants", v, "examples")
        out[(v, "clean")] = _vector(_get(ex, where, "defended_clean_correct"), n, where,
                                    f"variants.{v}.examples.defended_clean_correct")
        robust = _get(ex, where, "robust_correct")
        if not isinstance(robust, dict):
            raise _damaged(where, f"variants.{v}.examples.robust_correct", "must be an object {attack: [...]}",
                           robust)
        for a, vec in robust.items():
            out[(v, a)] = _vector(vec, n, where, f"variants.{v}.examples.robust_correct.{a}")
    return out


def _refuse_if_different(base: dict, now: dict, same_config: bool = True, base_name: str = "the baseline",
                         now_name: str = "the new run") -> None:
    """Refuse unlike comparisons: different data or checkpoint always; any other difference of the comparison
    key unless ``same_config`` is False (the what-if mode changes the defense on purpose)."""
    bd, nd = _get(base, base_name, "provenance", "data"), _get(now, now_name, "provenance", "data")
    if not isinstance(bd, dict) or not isinstance(nd, dict):
        raise _damaged(base_name if not isinstance(bd, dict) else now_name, "provenance.data", "must be an object",
                       bd if not isinstance(bd, dict) else nd)
    if bd.get("sha256") != nd.get("sha256"):
        raise UserError(f"refusing to compare: the data slice differs from the baseline's (sha256 "
                        f"{str(bd.get('sha256'))[:12]} vs {str(nd.get('sha256'))[:12]}); use the same data and n")
    bm, nm = base["provenance"].get("model") or {}, now["provenance"].get("model") or {}
    bm, nm = bm if isinstance(bm, dict) else {}, nm if isinstance(nm, dict) else {}
    if bm.get("checkpoint_sha256") != nm.get("checkpoint_sha256"):
        raise UserError(f"refusing to compare: the checkpoint differs from the baseline's (sha256 "
                        f"{str(bm.get('checkpoint_sha256'))[:12]} vs {str(nm.get('checkpoint_sha256'))[:12]})")
    if _get(base, base_name, "examples", "index") != _get(now, now_name, "examples", "index"):
        raise UserError("refusing to compare: the runs cover different examples")
    if same_config:
        bk, nk = (base.get("keys") or {}).get("comparison"), (now.get("keys") or {}).get("comparison")
        if bk is None or nk is None:
            raise UserError("refusing to compare: a record has no comparison key (made by an older version); "
                            "re-make it with the same command")
        if bk != nk:
            raise UserError(f"refusing to compare: the configuration differs from the baseline's "
                            f"({describe_diff(bk, nk)}); compare records made with the same configuration")


def compare(base: dict, now: dict, same_config: bool = True, base_name: str = "the baseline",
            now_name: str = "the new run") -> list[Comparison]:
    """Paired comparison of every (variant, cell), both directions, Holm-corrected across all tests. A damaged
    baseline (or record) is a :class:`UserError` naming the field (``base_name`` / ``now_name`` name the files)."""
    alpha, margin, floors = _settings(base, base_name)
    bc, nc = _cells(base, base_name), _cells(now, now_name)
    _refuse_if_different(base, now, same_config, base_name, now_name)
    missing = sorted(set(bc) - set(nc))
    if missing:
        raise UserError(f"the new run lacks baseline cells {missing[:3]}; rerun with the baseline's configuration")
    rows = []
    for (v, a), bvec in bc.items():
        nvec = nc[(v, a)]
        b_acc, n_acc = sum(bvec) / len(bvec), sum(nvec) / len(nvec)
        floor = float(floors.get(v, {}).get(a, max(0.0, b_acc - margin)))  # checked by _settings
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
                  note: str | None = None, where: str = "the record") -> dict:
    """A baseline = the record plus its decision settings (floors default to baseline − margin)."""
    rec = {k: v for k, v in record.items() if not k.startswith("_")}
    cells = _cells(rec, where)
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


def load_baseline(baseline_path: str | os.PathLike, *, update: bool = False,
                  creating: bool = False) -> tuple[dict | None, str]:
    """The baseline (as a dict, None when ``creating`` one that does not exist yet) and its schema, checked
    before any work: a device or a FIFO is never opened, a damaged baseline block or per-example vector is one
    line naming the field. ``update``: it is about to be rewritten (its vectors are not needed)."""
    path = Path(baseline_path)
    where = f"baseline '{path}'"
    if check_regular(path, "--baseline", "write" if update else "read"):
        base, schema = _read_baseline(path, update)
        _settings(base, where)
        if not update:
            _cells(base, where)
        return base, schema
    if creating:
        return None, SCHEMA
    raise UserError(f"baseline '{path}' does not exist; create it from a run record with "
                    f"`zeropur-bench check --baseline {path} --record RESULTS.json --update`")


def run_check(baseline_path: str | os.PathLike, *, record_path: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
              update: bool = False, progress: bool = False) -> tuple[list[Comparison], dict]:
    """Re-run the baseline's configuration (or take the run at ``record_path``) and compare with the baseline.

    ``overrides`` change ZeroPur knobs of every variant (the what-if mode that shows the check's power; exempt from
    the configuration refusal). ``update`` rewrites the baseline from the new run after a deliberate change (with
    ``record_path`` it also creates a new baseline; a v1 baseline is re-made from its stored configuration).
    """
    path = Path(baseline_path)
    where = f"baseline '{path}'"
    base, schema = load_baseline(path, update=update, creating=update and record_path is not None)
    if update and record_path is None and path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot rewrite baseline '{path}': no write permission")
    overrides = dict(overrides or {})
    if record_path is not None:
        if overrides:
            raise UserError("--zp changes the defense before re-running; it cannot apply to a given --record")
        now = RecordView.read(record_path).raw
        _cells(now, f"record '{record_path}'")
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
    now_name = f"record '{record_path}'" if record_path is not None else "the new run"
    rows = compare(base, now, same_config=not overrides, base_name=where, now_name=now_name) \
        if base is not None and not update else []
    if update:
        alpha, margin, _ = _settings(base or {}, where)
        note = ((base or {}).get("baseline") or {}).get("note")
        write_json_atomic(path, make_baseline(now, alpha, margin, note, where=now_name))
    return rows, now
