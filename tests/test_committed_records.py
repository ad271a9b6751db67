"""Every committed record keeps the record's own promises, per example (records.semantics, issue 23):
robust ≤ defended clean, worst case = clean ∧ every attack, any step ≤ final only, and in a cascade each attack
saw exactly the survivors of the ones before it. Reads JSON only: no model, no attack."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _records() -> list[Path]:
    out = []
    for p in sorted(RESULTS.rglob("*.json")):
        try:
            schema = json.loads(p.read_text()).get("schema", "")
        except (ValueError, AttributeError):
            continue
        if isinstance(schema, str) and schema.startswith("zeropur-bench/record/"):
            out.append(p)
    return out


RECORDS = _records()


def test_the_committed_records_are_found() -> None:
    # Table 6 alone cites ten records; a scan that found none would make every test below vacuous.
    assert len(RECORDS) >= 20
    assert sum("adaptive" in p.name for p in RECORDS) >= 10


def _and(*vs: list[bool]) -> list[bool]:
    return [all(t) for t in zip(*vs)]


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_record_keeps_its_promises_per_example(path: Path) -> None:
    rec = json.loads(path.read_text())
    cascade = bool(rec["config"].get("cascade"))
    for name, v in rec["variants"].items():
        ex, s = v["examples"], v["summary"]
        dclean, adv = ex["defended_clean_correct"], ex["adv_correct"]
        n = len(dclean)
        assert s["n"] == n and all(len(a) == n for a in adv.values()), (name, "lengths")
        for a, a_ok in adv.items():
            robust = ex["robust_correct"][a]
            assert robust == _and(dclean, a_ok), (name, a)  # robust = clean ∧ adversarial
            assert all(d or not r for r, d in zip(robust, dclean)), (name, a)  # robust ≤ clean, per example
            assert abs(s["robust_acc"][a] - sum(robust) / n) < 1e-12, (name, a)
        worst = ex["worst_case_correct"]
        assert worst == _and(dclean, *adv.values()), name
        assert abs(s["worst_case_acc"] - sum(worst) / n) < 1e-12, name
        for a, fin in (ex.get("robust_final_correct") or {}).items():
            # an image no step broke is not broken by the last step either: any step ≤ final only
            assert all(f or not r for r, f in zip(ex["robust_correct"][a], fin)), (name, a)
            assert all(d or not f for f, d in zip(fin, dclean)), (name, a)
        if cascade:
            order = list(adv)
            for k, a in enumerate(order):
                survived = _and(*(adv[b] for b in order[:k])) if k else [True] * n
                assert ex["attacked"][a] == survived, (name, a, "attacked the survivors only")
                assert all(att or not ok for att, ok in zip(ex["attacked"][a], adv[a])), (name, a)
            first = [next((a for a in order if not adv[a][i]), None) for i in range(n)]
            assert ex["broken_by"] == first, (name, "broken_by")
