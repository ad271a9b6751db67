"""Copy the calibrations fitted by benchmarks/calibration_study.py (results/calibration/<name>.json, both rules)
into zeropur_bench/weights/registry.json (each entry's ``calibrations``), so that ``--profile calibrated`` needs no
calibration step for a shipped classifier. Numbers are copied, never recomputed.

    python benchmarks/ship_calibrations.py results/calibration
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REGISTRY = Path(__file__).resolve().parents[1] / "zeropur_bench" / "weights" / "registry.json"


def main(folder: str) -> int:
    reg = json.loads(REGISTRY.read_text())
    shipped = 0
    for e in reg["classifiers"]:
        f = Path(folder) / f"{e['name']}.json"
        if not f.is_file():
            print(f"{e['name']}: no calibration in {folder}", file=sys.stderr)
            continue
        cals = json.loads(f.read_text())
        keep = []
        for rule in ("scale", "clean-guard"):
            c = dict(cals[rule])
            c.pop("format", None)
            c["source"] = "registry"
            keep.append(c)
        old = [c for c in e.get("calibrations", []) if (c["rule"], c.get("blur")) not in
               {(k["rule"], k.get("blur")) for k in keep}]
        e["calibrations"] = old + keep
        shipped += 1
        print(f"{e['name']}: " + ", ".join(f"{c['rule']} {c['ila_weight']:.4g} ({c.get('blur') or 'any blur'})"
                                           for c in e["calibrations"]))
    tmp = REGISTRY.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(reg, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(REGISTRY)
    print(f"{shipped} classifier(s) calibrated in {REGISTRY}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results/calibration"))
