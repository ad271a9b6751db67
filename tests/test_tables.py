"""Table-layout tests for ``zeropur_bench.tables`` (issue 5, item 2).

These use SYNTHETIC record dicts shaped like ``docs/architecture.md``'s record schema (no model is run): they test
which record lands in which table, the layout, the "measured here" section and the round trip of every measured
cell. The round trip with a real record written by the engine lives with the CLI tests.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from zeropur_bench.errors import UserError
from zeropur_bench.tables import (MISSING, infer_format, infer_table_number, load_records, parse_cell,
                                  render_table)

ROOT = Path(__file__).parents[1]
LEADERBOARDS = ROOT / "leaderboards"
RESNET20_CKPT = "../shared/weights/cifar10/resnet20.th"


def _summary(n: int, dclean: float, accs: dict[str, float]) -> dict:
    def ci(a: float) -> list[float]:  # any interval around the value; only its round trip matters here
        return [max(0.0, a - 0.0612), min(1.0, a + 0.0587)]

    return {"n": n, "clean_acc": 0.915, "defended_clean_acc": dclean, "robust_acc": dict(accs),
            "worst_case_acc": min(accs.values()) if accs else dclean,
            "ci95": {"clean_acc": ci(0.915), "defended_clean_acc": ci(dclean),
                     "robust_acc": {k: ci(v) for k, v in accs.items()}, "worst_case_acc": [0.0, 1.0]}}


def make_record(*, dataset: str = "cifar10", threat: str = "linf", eps: float = 8 / 255, setting: str = "transfer",
                model: str = "resnet20", arch: str = "resnet20", recipe: str | None = "standard (pad-crop+flip, akamaster)",
                attacks: list[dict] | None = None, n: int = 200, accs: dict[str, dict[str, float]] | None = None,
                clean: dict[str, float] | None = None, blur: str = "gaussian:1.2") -> dict:
    """A record with variants zeropur-c and zeropur-cf; ``accs[variant][attack_key]`` are robust accuracies."""
    attacks = attacks if attacks is not None else [{"name": "pgd", "params": {"steps": 20}},
                                                   {"name": "autoattack", "params": {"version": "rand"}}]
    keys = [a.get("key", a["name"]) for a in attacks]
    accs = accs or {"zeropur-c": {k: 0.5373 - 0.01 * i for i, k in enumerate(keys)},
                    "zeropur-cf": {k: 0.6952 - 0.01 * i for i, k in enumerate(keys)}}
    clean = clean or {"zeropur-c": 0.8123, "zeropur-cf": 0.7766}
    variants = {v: {"defense": {"name": "zeropur", "profile": "paper", "stages": v.split("-")[-1], "blur": blur},
                    "summary": _summary(n, clean[v], accs[v])} for v in accs}
    return {"schema": "zeropur-bench/record/v1",
            "config": {"dataset": dataset, "threat": threat, "eps": eps, "setting": setting, "model": model,
                       "arch": arch, "recipe": recipe, "checkpoint": RESNET20_CKPT, "attacks": attacks, "n_ex": n},
            "summary": list(variants.values())[-1]["summary"], "variants": variants,
            "provenance": {"model": {"name": model, "arch": arch, "source": "builtin"}},
            "_path": f"results/{dataset}-{threat}-{arch}-{setting}.json"}


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _measured_section(md: str) -> str:
    return md.split("### Measured here", 1)[1]


def _reference_section(md: str) -> str:
    return md.split("### Paper (reference rows)", 1)[1].split("### Measured here", 1)[0]


# ------------------------------------------------------------------------------------------ names and input
@pytest.mark.parametrize("path, n", [("results/table4.md", 4), ("out/Table_2.csv", 2), ("table-6.tex", 6),
                                     ("results/table3.md", 3), ("table5", 5)])
def test_infer_table_number(path: str, n: int) -> None:
    assert infer_table_number(path) == n


@pytest.mark.parametrize("path", ["results/summary.md", "results/table1.md", "results/table7.md", "tables/x.md"])
def test_infer_table_number_rejects(path: str) -> None:
    with pytest.raises(UserError):
        infer_table_number(path)


def test_infer_format() -> None:
    assert [infer_format(p) for p in ("a.md", "a.csv", "a.tex", "a.txt")] == ["markdown", "csv", "latex", "markdown"]


def test_bad_table_or_format() -> None:
    with pytest.raises(UserError, match="table 7"):
        render_table(7, [])
    with pytest.raises(UserError, match="format"):
        render_table(2, [], fmt="html")
    with pytest.raises(UserError, match="reference rows not found"):
        render_table(2, [], leaderboards_dir=ROOT / "no-such-dir")


def test_load_records_skips_non_records(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    rec = make_record()
    rec.pop("_path")
    (tmp_path / "b.json").write_text(json.dumps(rec))
    (tmp_path / "sub" / "deeper" / "a.json").write_text(json.dumps(rec))
    (tmp_path / "baseline.json").write_text(json.dumps({"schema": "zeropur-bench/baseline/v1", "x": 1}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "notes.md").write_text("not json")
    got = load_records(tmp_path)
    assert [Path(r["_path"]).name for r in got] == ["b.json", "a.json"]  # sorted by path; others skipped
    assert all(r["schema"] == "zeropur-bench/record/v1" for r in got)
    assert load_records(tmp_path / "missing") == []
    with pytest.raises(UserError):
        load_records(tmp_path / "notes.md")


# ------------------------------------------------------------------------------------------ reference section
@pytest.mark.parametrize("table", [2, 3, 4, 5, 6])
def test_reference_rows_rendered_in_paper_order(table: int) -> None:
    md = render_table(table, [])
    ref_md = _reference_section(md)
    with open(LEADERBOARDS / f"table{table}.csv", newline="", encoding="utf-8") as f:
        ref = list(csv.DictReader(f))
    numbers = [r[c] for r in ref for c in ("pgd20", "natural", "autoattack", "bpda_eot") if r.get(c)]
    if table == 2:  # two architecture parts side by side: row i of each part on one line
        half = len(ref) // 2
        numbers = [r[c] for a, b in zip(ref[:half], ref[half:]) for r in (a, b) for c in ("pgd20", "autoattack")]
    found = re.findall(r"\d+\.\d\d", ref_md)
    assert found == numbers
    # the paper's CSV output lists every reference row, with its source
    rows = [r for r in _csv_rows(render_table(table, [], fmt="csv")) if r["section"] == "paper"]
    assert len(rows) == len(ref) and all(r["source"].startswith(f"Table {table},") for r in rows)


def test_table2_layout_has_architecture_column_groups() -> None:
    md = render_table(2, [])
    header = _reference_section(md).strip().splitlines()[0]
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["Training Required", "ResNet-18: Method", "ResNet-18: PGD-20", "ResNet-18: AutoAttack",
                    "WideResNet-28-10: Method", "WideResNet-28-10: PGD-20", "WideResNet-28-10: AutoAttack"]
    tex = render_table(2, [], fmt="latex")
    assert r"\multicolumn{3}{c}{ResNet-18}" in tex and r"\multicolumn{3}{c}{WideResNet-28-10}" in tex
    assert "\\begin{tabular}" in tex and "53.73" in tex


def test_table5_and_6_layouts() -> None:
    h5 = _reference_section(render_table(5, [])).strip().splitlines()[0]
    assert [c.strip() for c in h5.strip("|").split("|")] == ["Method", "Model Required", "Training Required",
                                                            "Natural", "AutoAttack"]
    h6 = _reference_section(render_table(6, [])).strip().splitlines()[0]
    assert [c.strip() for c in h6.strip("|").split("|")] == ["Method", "Purification", "BPDA+EOT"]


# ------------------------------------------------------------------------------------------ measured section
def test_resnet20_row_has_its_own_architecture_not_resnet18() -> None:
    md = render_table(2, [make_record()])
    assert "ResNet-20" not in _reference_section(md)
    lines = [ln for ln in _measured_section(md).splitlines() if "ResNet-20" in ln]
    assert len(lines) == 2  # C and C-F
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[1] == "ResNet-20 (CIFAR, 0.27M)"
        assert cells[2] == "standard (pad-crop+flip, akamaster)" and cells[3] == "200"
        assert "ResNet-18" not in ln
    assert "ZeroPur-C (profile paper, blur gaussian:1.2)" in lines[0]
    assert "ZeroPur-C-F (profile paper, blur gaussian:1.2)" in lines[1]
    # The ResNet-20 record fills none of the paper's ResNet-18 / WRN-28-10 ZeroPur cells.
    assert _measured_section(md).count("(paper row; not run here)") == 12


@pytest.mark.parametrize("table, kwargs, attacks", [
    (2, {}, None),
    (3, {"threat": "l2", "eps": 0.5}, None),
    (4, {"dataset": "cifar100"}, None),
    (5, {"dataset": "imagenet", "eps": 4 / 255, "model": "Standard_R50", "arch": "Standard_R50", "recipe": None},
     [{"name": "autoattack", "params": {"version": "rand"}}]),
    (6, {"setting": "adaptive"}, [{"name": "bpda-eot", "params": {"steps": 50}, "key": "bpda-eot-50"},
                                  {"name": "bpda-eot", "params": {"steps": 200}, "key": "bpda-eot-200"}]),
])
def test_round_trip_every_measured_cell_equals_its_record(table: int, kwargs: dict, attacks: list | None) -> None:
    rec = make_record(attacks=attacks, **kwargs)
    others = [make_record(threat="l2", eps=0.5), make_record(dataset="cifar100"), make_record(setting="adaptive"),
              make_record(eps=4 / 255)]
    records = [rec] + [o for o in others if o["config"] != rec["config"]]
    rows = [r for r in _csv_rows(render_table(table, records, fmt="csv")) if r["section"] == "measured"]
    expected_rows = 2 * (2 if table == 6 else 1)  # 2 variants (x 2 BPDA+EOT step counts in Table 6)
    assert len(rows) == expected_rows
    assert {r["source"] for r in rows} == {rec["_path"]}  # no other record leaks into this table
    checked = 0
    for row in rows:
        variant = "zeropur-cf" if row["method"].startswith("ZeroPur-C-F") else "zeropur-c"
        summ = rec["variants"][variant]["summary"]
        assert row["n"] == str(summ["n"])
        for header, value in row.items():
            if header in ("Clean (defended)", "Natural"):
                acc, ci = summ["defended_clean_acc"], summ["ci95"]["defended_clean_acc"]
            elif header in ("PGD-20", "AutoAttack"):
                key = {"PGD-20": "pgd", "AutoAttack": "autoattack"}[header]
                acc, ci = summ["robust_acc"][key], summ["ci95"]["robust_acc"][key]
            elif header == "BPDA+EOT":
                key = "bpda-eot-50" if "steps=50" in row["method"] else "bpda-eot-200"
                acc, ci = summ["robust_acc"][key], summ["ci95"]["robust_acc"][key]
            else:
                continue
            v, lo, hi = parse_cell(value)
            assert v == pytest.approx(100 * acc, abs=0.005)
            assert (lo, hi) == (pytest.approx(100 * ci[0], abs=0.005), pytest.approx(100 * ci[1], abs=0.005))
            checked += 1
    assert checked == len(rows) * (1 if table == 6 else (2 if table == 5 else 3))
    # The markdown shows the same cells.
    md = render_table(table, records)
    for row in rows:
        assert all(row[h] in md for h in ("PGD-20", "AutoAttack", "Natural", "BPDA+EOT") if row.get(h))


def test_records_of_other_settings_stay_out() -> None:
    wrong = [make_record(eps=4 / 255), make_record(setting="adaptive"), make_record(threat="l2", eps=0.5),
             make_record(dataset="cifar100"), make_record(attacks=[{"name": "square", "params": {}}])]
    csv2 = _csv_rows(render_table(2, wrong, fmt="csv"))
    measured = [r for r in csv2 if r["section"] == "measured"]
    assert measured == []
    # Table 6 needs a BPDA+EOT attack: an adaptive record with PGD only stays out.
    assert not [r for r in _csv_rows(render_table(6, wrong, fmt="csv")) if r["section"] == "measured"]


def test_attack_parameters_select_the_column() -> None:
    """PGD-20 needs 20 steps; the AutoAttack column is the paper's RAND version. Omitted params take the
    registered attack's defaults (pgd: 20 steps; autoattack: version 'standard', so not the paper's column)."""
    rec = make_record(attacks=[{"name": "pgd", "params": {"steps": 10}, "key": "pgd-10"},
                               {"name": "autoattack", "params": {"version": "standard"}, "key": "aa-std"},
                               {"name": "pgd", "params": {}, "key": "pgd-default"}])
    rows = [r for r in _csv_rows(render_table(2, [rec], fmt="csv")) if r["section"] == "measured"]
    assert len(rows) == 2
    for row in rows:
        variant = "zeropur-cf" if row["method"].startswith("ZeroPur-C-F") else "zeropur-c"
        acc = rec["variants"][variant]["summary"]["robust_acc"]["pgd-default"]
        assert parse_cell(row["PGD-20"])[0] == pytest.approx(100 * acc, abs=0.005)
        assert row["AutoAttack"] == ""  # standard AutoAttack is not the paper's column
        assert "--attack autoattack:version=rand" in row["command"]


def test_missing_cell_shows_dash_and_footnote_command() -> None:
    rec = make_record(attacks=[{"name": "pgd", "params": {"steps": 20}}])
    md = render_table(2, [rec])
    line = next(ln for ln in _measured_section(md).splitlines() if ln.startswith("| ZeroPur-C-F (profile"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    m = re.fullmatch(rf"{MISSING} \[(\d+)\]", cells[6])  # AutoAttack cell
    assert m, cells
    footnote = next(ln for ln in md.splitlines() if ln.startswith(f"[{m.group(1)}] "))
    assert footnote == (f"[{m.group(1)}] `zeropur-bench run --dataset cifar10 --threat linf --model resnet20 "
                        f"--checkpoint {RESNET20_CKPT} --stages cf --profile paper --blur gaussian:1.2 "
                        "--attack autoattack:version=rand --n-ex 200`")
    assert parse_cell(cells[5]) is not None  # PGD-20 measured


def test_paper_cells_filled_by_matching_records() -> None:
    """A ResNet-18 'standard' record fills the paper's ZeroPur-B-C / B-C-F ResNet-18 cells (and only those)."""
    rec = make_record(model="resnet18", arch="resnet18", recipe="standard (random resized crop + flip)")
    md = render_table(2, [rec])
    meas = _measured_section(md)
    assert meas.count("(paper row; not run here)") == 10
    assert "| ResNet-18 (11.2M)" in meas
    missing = [r for r in _csv_rows(render_table(2, [rec], fmt="csv")) if r["section"] == "missing"]
    assert sorted((r["method"].split(" ")[0], r["architecture"]) for r in missing if r["architecture"] == "ResNet-18") \
        == [("ZeroPur-S-C", "ResNet-18"), ("ZeroPur-S-C-F", "ResNet-18"), ("ZeroPur-V-C", "ResNet-18"),
            ("ZeroPur-V-C-F", "ResNet-18")]
    wrn_sc = next(r for r in missing if r["method"].startswith("ZeroPur-S-C ") and r["architecture"] == "WideResNet-28-10")
    assert wrn_sc["command"] == ("zeropur-bench run --dataset cifar10 --threat linf --model wrn-28-10 "
                                 "--checkpoint PATH/TO/wrn-28-10-strong.pt --stages c --profile authors "
                                 "--blur gaussian:1.2 --attack pgd --attack autoattack:version=rand")
    assert all(r[h] == "" for r in missing for h in ("PGD-20", "AutoAttack"))


def test_record_without_variants_and_no_defense_row() -> None:
    rec = make_record()
    cfg_def = {"name": "zeropur", "profile": "authors", "stages": "cf", "blur": "gaussian:1.8"}
    rec["config"]["defense"] = cfg_def
    del rec["variants"]
    none_rec = make_record(accs={"none": {"pgd": 0.0, "autoattack": 0.0}}, clean={"none": 0.915})
    none_rec["variants"]["none"]["defense"] = {"name": "none"}
    none_rec["_path"] = "results/none.json"
    rows = [r for r in _csv_rows(render_table(2, [rec, none_rec], fmt="csv")) if r["section"] == "measured"]
    assert [r["method"] for r in rows] == ["ZeroPur-C-F (profile authors, blur gaussian:1.8)", "No defense"]
    assert parse_cell(rows[0]["PGD-20"])[0] == pytest.approx(100 * rec["summary"]["robust_acc"]["pgd"], abs=0.005)
    assert rows[1]["PGD-20"] == "0.00 [0.00, 5.87]"


def test_table5_imagenet_row_and_cell() -> None:
    rec = make_record(dataset="imagenet", eps=4 / 255, model="Standard_R50", arch="Standard_R50", recipe=None,
                      attacks=[{"name": "autoattack", "params": {"version": "rand"}}])
    rec["provenance"]["model"]["source"] = "robustbench"
    md = render_table(5, [rec])
    meas = _measured_section(md)
    assert "Standard_R50 (RobustBench zoo)" in meas and "not recorded" in meas
    assert "(paper row; not run here)" not in meas  # the ImageNet ZeroPur cell is filled
    assert "81.23 [75.11, 87.10]" in meas  # Natural = defended clean accuracy, with its CI
