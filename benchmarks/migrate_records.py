"""Add the record fields that replaced name sniffing to existing v2 records; no number changes.

Fields added (never renamed): ``config.attacks[i].family`` and ``.key_without_eps``;
``variants[k].defense.sweep`` and ``config.defenses[i].sweep`` (a sweep's ``{parameter: value}``, read once here
from the variant's label and typed from its overrides); ``calibration: null`` where a pre-calibration record lacks
it. Sanity reports (``zeropur-bench/sanity/v2``) get the eps-free attack names of their eps sweep:
``params.attack.key_without_eps`` and, per row of ``checks[eps-sweep].details.sweep``, ``attack``,
``attack_without_eps`` and ``bare_attack_without_eps`` (:func:`zeropur_bench.sanity.sweep_row_names`). A record
that already has a field keeps it. The script then checks that every original value is unchanged.

    python benchmarks/migrate_records.py results/        # rewrite in place (atomically)
    python benchmarks/migrate_records.py --check results/  # exit 1 if a record still lacks a field

``--model-info`` (issue 32) rewrites only each record's ``model_info`` block, RobustBench's view of the record,
re-derived from the record itself (:func:`zeropur_bench.records.model_info.model_info_block`): the script refuses if
anything outside that block would differ, so no measured number (summaries, per-example vectors) changes.

    python benchmarks/migrate_records.py --model-info results/
    python benchmarks/migrate_records.py --model-info --check results/  # exit 1 if a block is stale
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from zeropur_bench.attacks import ATTACKS
from zeropur_bench.config import AttackSpec
from zeropur_bench.fsio import write_json_atomic
from zeropur_bench.records import SCHEMA
from zeropur_bench.records.model_info import model_info_block
from zeropur_bench.sanity import bare_sweep_attack, sweep_row_names, with_steps

SANITY_SCHEMA = "zeropur-bench/sanity/v2"

_SWEEP_LABEL = re.compile(r"\[([^\]]*)\]$")


def _attack_fields(a: dict, cfg: dict, determinism: set) -> None:
    cls = ATTACKS[a["name"]]
    a.setdefault("family", cls.family_name())
    if "key_without_eps" in a:
        return
    spec = AttackSpec(a["name"], dict(a.get("params") or {}), a.get("label"))
    eps, threat = float(cfg["eps"]), cfg["threat"]
    for det in (None, *sorted(determinism)):
        if spec.key_for(eps, threat, det) == a["key"]:
            a["key_without_eps"] = spec.key_for(eps, threat, det, with_eps=False)
            return
    a["key_without_eps"] = a["key"]  # a mixed-target or hand-labelled column: no eps in it to leave out


def _sweep(defense: dict, name: str) -> dict | None:
    m = _SWEEP_LABEL.search(name)
    if not m:
        return None
    params = [item.split("=", 1)[0] for item in m.group(1).split(",")]
    overrides = defense.get("overrides") or {}
    if not params or any(p not in overrides for p in params):
        raise ValueError(f"variant {name!r}: swept setting(s) {params} not all in its overrides")
    return {p: overrides[p] for p in params}


def migrate(rec: dict) -> dict:
    out = copy.deepcopy(rec)
    cfg = out["config"]
    determinism = {bool(v["defense"].get("deterministic")) for v in out["variants"].values()
                   if v["defense"].get("deterministic") is not None}
    for a in cfg["attacks"]:
        _attack_fields(a, cfg, determinism)
    for d in cfg["defenses"]:
        d.setdefault("calibration", None)
        d.setdefault("sweep", _sweep(d, d.get("key") or d.get("label") or ""))
    for k, v in out["variants"].items():
        v["defense"].setdefault("calibration", None)
        v["defense"].setdefault("sweep", _sweep(v["defense"], k))
    return out


def migrate_sanity(report: dict) -> dict:
    """A sanity report with the eps-free attack names of its eps sweep (names rebuilt from the report's own
    attack settings, and checked against the names it already holds)."""
    out = copy.deepcopy(report)
    threat, params = out["config"]["threat"], out["params"]
    a = params["attack"]
    attack = with_steps(AttackSpec(a["name"], dict(a.get("params") or {}), a.get("label")), params["steps"])
    if attack.key_for(out["eps"], threat) != a["key"]:
        raise ValueError(f"attack {a['key']!r} is not what its settings make ({attack.key_for(out['eps'], threat)})")
    a.setdefault("key_without_eps", attack.key_for(out["eps"], threat, with_eps=False))
    bare = bare_sweep_attack(params["steps"])
    for check in out["checks"]:
        rows = check["details"].get("sweep") if check["name"] == "eps-sweep" else None
        if not rows:
            continue
        names = [sweep_row_names(attack, bare, r["eps"], threat) for r in rows]
        if not check["message"].startswith(names[-1]["attack"] + ":"):
            raise ValueError(f"the eps sweep's message does not name {names[-1]['attack']!r}")
        for r, n in zip(rows, names):
            if "bare_attack" in r and r["bare_attack"] != bare.key_for(r["eps"], threat):
                raise ValueError(f"bare attack {r['bare_attack']!r} is not what its settings make")
            for k, v in n.items():
                if k != "bare_attack_without_eps" or "bare_attack" in r:
                    r.setdefault(k, v)
    return out


def migrate_model_info(rec: dict) -> dict:
    """The record with its ``model_info`` block re-derived; every other field the same object."""
    return {**rec, "model_info": model_info_block(rec)}


def _outside_model_info(old: dict, new: dict) -> list[str]:
    """Paths outside ``model_info`` where ``new`` differs from ``old`` at all (an added key counts too)."""
    keys = (set(old) | set(new)) - {"model_info"}
    return [f".{k}" for k in sorted(keys) if k not in old or k not in new or old[k] != new[k]]


def _unchanged(old: object, new: object, path: str = "") -> list[str]:
    """Paths where ``new`` differs from ``old`` other than by added dict keys."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [p for k in old for p in (_unchanged(old[k], new[k], f"{path}.{k}") if k in new else [f"{path}.{k}"])]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in _unchanged(a, b, f"{path}[{i}]")]
    return [] if old == new else [path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--check", action="store_true", help="only report records that lack a field")
    ap.add_argument("--model-info", action="store_true", help="re-derive only the model_info block of each record")
    args = ap.parse_args(argv)
    files = [f for p in map(Path, args.paths) for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]
    stale = changed = 0
    for f in files:
        rec = json.loads(f.read_text())
        schema = rec.get("schema") if isinstance(rec, dict) else None
        if schema not in (SCHEMA, SANITY_SCHEMA):
            continue
        if args.model_info:
            if schema != SCHEMA:
                continue
            new = migrate_model_info(rec)
            diff = _outside_model_info(rec, new)
        else:
            new = migrate(rec) if schema == SCHEMA else migrate_sanity(rec)
            diff = _unchanged(rec, new)
        if diff:
            raise SystemExit(f"{f}: migration would change {diff[:3]}")
        if new == rec:
            continue
        stale += 1
        if not args.check:
            write_json_atomic(f, new)
            changed += 1
            print(f"{f}: {'model_info re-derived' if args.model_info else 'fields added'}")
    if args.check and stale:
        fix = "--model-info " if args.model_info else ""
        print(f"{stale} record(s) {'have a stale model_info block' if args.model_info else 'lack fields'}; run "
              f"benchmarks/migrate_records.py {fix}on them", file=sys.stderr)
        return 1
    print(f"{changed} record(s) migrated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
