"""The reference rows in leaderboards/ are the paper's numbers, copied from the paper's text (issue 5, item 3)."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LEADERBOARDS = ROOT / "leaderboards"
# Rows per paper table (Table 2 counts both architecture parts: 12 rows each).
ROW_COUNTS = {2: 24, 3: 16, 4: 16, 5: 8, 6: 6, 7: 6, 9: 6}
METRICS = {
    2: ["pgd20", "autoattack"],
    3: ["pgd20", "autoattack"],
    4: ["pgd20", "autoattack"],
    5: ["natural", "autoattack"],
    6: ["bpda_eot"],
    7: ["pgd_blur", "pgd_tv", "difgsm_blur", "difgsm_tv"],
    9: ["median_3x3", "median_5x5", "median_7x7", "gaussian_0_6", "gaussian_1_2", "gaussian_1_8"],
}
NUMBER = re.compile(r"\d+\.\d\d")


def _paper_text() -> str:
    path = Path(os.environ.get("ZEROPUR_BENCH_PAPER", ROOT.parent / "shared" / "docs" / "zeropur-paper.txt"))
    if not path.is_file():
        pytest.skip(f"paper text not found at {path}; set ZEROPUR_BENCH_PAPER")
    return path.read_text(encoding="utf-8")


def _rows(table: int) -> list[dict[str, str]]:
    with open(LEADERBOARDS / f"table{table}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("table", sorted(ROW_COUNTS))
def test_row_counts_match_paper(table: int) -> None:
    rows = _rows(table)
    assert len(rows) == ROW_COUNTS[table]
    assert all(r["table"] == str(table) for r in rows)


@pytest.mark.parametrize("table", sorted(ROW_COUNTS))
def test_every_number_is_in_the_paper(table: int) -> None:
    """Each reference number occurs in the paper's text, formatted exactly as the paper prints it, and in a
    text line that also names the row's method (so a number cannot pass by matching some other cell)."""
    lines = _paper_text().splitlines()
    checked = 0
    for r in _rows(table):
        method = r["method"]
        # Table 9 stacks the method names into one cell; Table 3 row 5 has a glued check mark: match a prefix.
        key = method.split(" [")[0][:18]
        for col in METRICS[table]:
            value = r[col]
            if value == "":
                continue
            assert NUMBER.fullmatch(value), f"{r['source']}: {col}={value!r} is not formatted like the paper"
            hits = [ln for ln in lines if key in ln and re.search(rf"(?<![\d.]){re.escape(value)}(?![\d])", ln)]
            assert hits, f"{r['source']}: {col}={value} not found in a paper line naming {key!r}"
            checked += 1
    assert checked >= ROW_COUNTS[table]


@pytest.mark.parametrize("table", sorted(ROW_COUNTS))
def test_every_row_has_a_source(table: int) -> None:
    for r in _rows(table):
        assert r["source"].startswith(f"Table {table},"), r
        assert r["method"] and r["method"] in r["source"]


def test_tables_2_to_6_exist_with_expected_columns() -> None:
    for table in range(2, 7):
        rows = _rows(table)
        for col in ["method", "citation", "architecture", "source", *METRICS[table]]:
            assert col in rows[0], (table, col)


def test_spot_values_and_flags() -> None:
    """A few cells checked by hand against the paper (guards against column shifts in the side-by-side text)."""
    t2 = {(r["architecture"], r["method"]): r for r in _rows(2)}
    assert (t2["ResNet-18", "ZeroPur-V-C"]["pgd20"], t2["ResNet-18", "ZeroPur-V-C"]["autoattack"]) == ("53.73", "55.58")
    assert t2["WideResNet-28-10", "(Pang et al., 2022)"]["autoattack"] == "61.47"
    assert t2["ResNet-18", "ZeroPur-B-C-F"]["training_required"] == "false"
    assert t2["ResNet-18", "ZeroPur-S-C-F"]["training_required"] == "true"
    assert t2["ResNet-18", "ZeroPur-B-C-F"]["classifier_recipe"] == "standard"
    t3, t4 = _rows(3), _rows(4)
    assert (t3[4]["method"], t3[4]["architecture"], t3[4]["pgd20"]) == ("(Augustin et al., 2020)", "WRN-34-10", "81.35")
    assert t3[6]["pgd20"] == "" and t3[6]["autoattack"] == "74.33"  # Sun et al. 2019: '-' in the paper
    assert (t4[5]["method"], t4[5]["pgd20"], t4[5]["autoattack"]) == ("(Jia et al., 2022)", "36.45", "32.17")
    t5 = _rows(5)
    assert t5[3]["purification_model"] == "LIIF" and t5[6]["natural"] == ""
    assert _rows(6)[4]["bpda_eot"] == "35.60"


def test_zeropur_rows_are_described() -> None:
    for table in (2, 3, 4, 6):
        for r in _rows(table):
            if r["method"].startswith("ZeroPur-"):
                assert r["classifier_recipe"] in {"vanilla", "standard", "strong"}
                assert r["stages"] == ("cf" if r["method"].endswith("-C-F") else "c")
                assert r["blur"] == ("median:3" if r["classifier_recipe"] == "vanilla" else "gaussian:1.2")
            else:
                assert r["classifier_recipe"] == "" and r["stages"] == ""
