"""The defense interface changed how defenses are built (a registry, purifiers, gradient wrappers), not what they
compute: every committed record's and baseline's configuration, rebuilt today, has the comparison key it was made
under, byte for byte, so every committed baseline and partial run still matches (issue 31)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from zeropur_bench.check import config_from_record
from zeropur_bench.inputs import RunInputs
from zeropur_bench.keys import canon, digest

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _with_keys() -> list[Path]:
    out = []
    for p in sorted(RESULTS.rglob("*.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("keys"), dict) and "comparison" in d["keys"] \
                and isinstance(d.get("config"), dict):
            out.append(p)
    return out


FILES = _with_keys()


def test_records_and_baselines_are_found() -> None:
    assert len(FILES) >= 30 and any("baselines" in str(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_comparison_key_is_unchanged(path: Path, data_dir: str) -> None:
    rec = json.loads(path.read_text())
    config = config_from_record(rec["config"], rec.get("schema", ""))
    key = RunInputs(config, data_dir=data_dir, echo=lambda m: None).load_keys()  # no model or attack is run
    now = canon(json.loads(json.dumps(key, default=str)))
    want = rec["keys"]["comparison"]
    if (rec.get("provenance") or {}).get("model") is None:
        # a study's record (benchmarks/calibration_study.py: a training slice and the classifier passed in memory):
        # its config names neither, so only the classifier and data fields differ; the rest must not
        assert {k: v for k, v in now.items() if k not in ("model", "data_sha256")} == \
            {k: v for k, v in want.items() if k not in ("model", "data_sha256")}
        return
    assert now == want
    assert digest(key) == rec["keys"]["comparison_hash"]
