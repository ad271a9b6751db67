"""Table-layout tests for ``zeropur_bench.tables`` (issues 5, 11 and 13).

These use SYNTHETIC record dicts of schema ``zeropur-bench/record/v2`` (``zeropur_bench.records``: robust =
defended clean ∧ adversarial ≤ defended clean; ``adv_acc`` = the paper's protocol, adversarial input alone), with
counts chosen so that ``adv_acc`` and ``robust_acc`` differ everywhere: a cell that shows the wrong one fails. No
model is run. They test which record lands in which table and column (paper names only with the paper's
settings), the side-by-side comparison with the paper (paper row, paper number, paper protocol, Δ, in-CI, robust),
the adaptive column, the "–" rows and their commands, and the round trip of every measured cell. The round trip
with a real record written by the engine lives with the CLI tests.
"""
from __future__ import annotations

import csv
import io
import json
import re
import warnings
from pathlib import Path

import pytest

from zeropur_bench.errors import UserError
from zeropur_bench.records import SCHEMA
from zeropur_bench.stats import wilson
from zeropur_bench.tables import (ADAPTIVE_COL, CLEAN_COL, MISSING, infer_format, infer_table_number, load_records,
                                  measured_columns, parse_cell, render_table)

ROOT = Path(__file__).parents[1]
LEADERBOARDS = ROOT / "leaderboards"
RESNET20_CKPT = "../shared/weights/cifar10/resnet20.th"
SHA_A = "a" * 64
SHA_B = "b" * 64

PGD20 = ("pgd", {"steps": 20}, "PGD-20")
AA_RAND = ("autoattack", {"version": "rand"}, "AutoAttack-rand")
BPDA50 = ("bpda-eot", {"steps": 50}, "bpda-eot[steps=50]")
BPDA200 = ("bpda-eot", {"steps": 200}, "bpda-eot[steps=200]")

# Per variant: defended-clean count, and per attack position i: (adv count, robust count) (adv > robust always).
DEFAULT_COUNTS = {"zeropur-c": (162, [(120, 100), (116, 97)]), "zeropur-cf": (155, [(150, 131), (146, 127)])}


def _resolved_defense(profile: str, stages: str, blur: str, **over) -> dict:
    return {"method": "zeropur", "profile": profile, "stages": stages, "blur": blur, "grad_mode": "bpda",
            "surrogate": None, "seed": 0, "dtype": "fp32", "channels_last": False, "coarse_steps": 10,
            "coarse_eps": 10 / 255, "coarse_step": 1 / 255, "momentum": 1.0, "random_start": False,
            "blur_target_detached": True, "fine_steps": 50 if stages == "cf" else 0, "fine_eps": 10 / 255,
            "fine_step": 0.2 / 255, "ila_weight": 1e-4, "ila_reduce": "mean", "lpips_weight": 1.0,
            "layers": {"embedding": "net.linear", "stages": ["net.layer1", "net.layer2", "net.layer3"],
                       "fine": ["net.layer2", "net.layer3"], "lpips": ["net.layer1", "net.layer2", "net.layer3"]},
            **over}


def _acc(k: int, n: int) -> tuple[float, list[float]]:
    return k / n, list(wilson(k, n))


def _variant_summary(n: int, dclean: int, keys: list[str], counts: list[tuple[int, int]], final: bool) -> dict:
    s = {"n": n}
    ci = {}
    s["clean_acc"], ci["clean_acc"] = _acc(round(0.915 * n), n)
    s["defended_clean_acc"], ci["defended_clean_acc"] = _acc(dclean, n)
    names = ["adv_acc", "robust_acc"] + (["robust_final_acc"] if final else [])
    for name in names:
        s[name], ci[name] = {}, {}
    for k, (adv, rob) in zip(keys, counts):
        assert rob <= dclean and rob <= adv and adv != rob
        s["adv_acc"][k], ci["adv_acc"][k] = _acc(adv, n)
        s["robust_acc"][k], ci["robust_acc"][k] = _acc(rob, n)
        if final:
            s["robust_final_acc"][k], ci["robust_final_acc"][k] = _acc(rob + 7, n)
    worst = min([r for _, r in counts] or [dclean])
    s["worst_case_acc"], ci["worst_case_acc"] = _acc(worst, n)
    s["adv_worst_case_acc"], ci["adv_worst_case_acc"] = _acc(min([a for a, _ in counts] or [dclean]), n)
    s["ci95"] = ci
    return s


def make_record(*, dataset: str = "cifar10", threat: str = "linf", eps: float = 8 / 255, setting: str = "transfer",
                model: str = "resnet20", arch: str = "resnet20", recipe: str | None = "standard",
                attacks: list[tuple] | None = None, n: int = 200, counts: dict | None = None,
                blur: str = "gaussian:1.2", profile: str = "paper", sha: str | None = SHA_A,
                checkpoint: str | None = RESNET20_CKPT, path: str | None = None, resolved_over: dict | None = None) -> dict:
    """A v2 record with variants zeropur-c and zeropur-cf (or those of ``counts``: ``{variant: (defended clean
    count, [(adv count, robust count) per attack])}``; a variant named "none" is the bare classifier)."""
    attacks = attacks if attacks is not None else [PGD20, AA_RAND]
    keys = [a[2] for a in attacks]
    counts = counts or {v: (dc, c[:len(attacks)] + [(100 + i, 90 + i) for i in range(len(attacks) - len(c))])
                        for v, (dc, c) in DEFAULT_COUNTS.items()}
    final = setting == "adaptive"
    variants = {}
    for v, (dclean, cnt) in counts.items():
        if v == "none":
            defense = {"name": "none", "key": "none", "resolved": {"name": "none"}}
        else:
            stages = v.split("-")[-1]
            defense = {"name": "zeropur", "profile": profile, "stages": stages, "blur": blur, "overrides": {},
                       "label": None, "key": v,
                       "resolved": _resolved_defense(profile, stages, blur, **(resolved_over or {}))}
        variants[v] = {"defense": defense, "summary": _variant_summary(n, dclean, keys, cnt, final)}
    config = {"dataset": dataset, "threat": threat, "eps": eps, "setting": setting, "model": model, "arch": arch,
              "recipe": recipe, "checkpoint": checkpoint, "n_ex": n,
              "attacks": [{"name": a, "params": p, "label": None, "key": k, "resolved": {**p}} for a, p, k in attacks],
              "primary_variant": list(variants)[-1]}
    return {"schema": SCHEMA, "config": config,
            "keys": {"comparison": {"dataset": dataset, "model": {"arch": arch, "checkpoint_sha256": sha}}},
            "summary": list(variants.values())[-1]["summary"], "variants": variants,
            "bare_classifier": None,
            "provenance": {"model": {"name": model, "arch": arch, "source": "builtin", "checkpoint_sha256": sha}},
            "_path": path or f"results/{dataset}-{threat}-{arch}-{setting}-{recipe}-{blur}.json"}


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _measured_csv(table: int, records: list[dict]) -> list[dict[str, str]]:
    return [r for r in _csv_rows(render_table(table, records, fmt="csv")) if r["section"] == "measured"]


def _measured_section(md: str) -> str:
    return md.split("### Measured here", 1)[1]


def _reference_section(md: str) -> str:
    return md.split("### Paper (reference rows)", 1)[1].split("### Measured here", 1)[0]


def _md_rows(md: str) -> list[dict[str, str]]:
    """The measured section's markdown table as dicts (header → cell)."""
    lines = [ln for ln in _measured_section(md).splitlines() if ln.startswith("|")]
    split = lambda ln: [c.strip() for c in ln.strip()[1:-1].split("|")]  # noqa: E731
    header = split(lines[0])
    return [dict(zip(header, split(ln))) for ln in lines[2:]]


def _leaderboard(table: int) -> list[dict[str, str]]:
    with open(LEADERBOARDS / f"table{table}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _paper(table: int, method: str, arch: str) -> dict[str, str]:
    return next(r for r in _leaderboard(table) if r["method"] == method and r["architecture"] == arch)


def _variant_of(row: dict[str, str]) -> str:
    return "zeropur-cf" if row["method"].startswith("ZeroPur-C-F") else \
        "none" if row["method"].startswith("No defense") else "zeropur-c"


def _footnote(md: str, cell: str) -> str:
    m = re.search(r"\[(\d+)\]$", cell)
    assert m, cell
    return next(ln for ln in md.splitlines() if ln.startswith(f"[{m.group(1)}] "))


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


def test_load_records_v2_only_v1_skipped_with_warning(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    rec = make_record()
    rec.pop("_path")
    (tmp_path / "b.json").write_text(json.dumps(rec))
    (tmp_path / "sub" / "deeper" / "a.json").write_text(json.dumps(rec))
    old = {**rec, "schema": "zeropur-bench/record/v1"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "baseline.json").write_text(json.dumps({"schema": "zeropur-bench/baseline/v1", "x": 1}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "notes.md").write_text("not json")
    with pytest.warns(UserWarning) as caught:
        got = load_records(tmp_path)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "old.json" in msgs[0] and "zeropur-bench/record/v1" in msgs[0]
    assert "re-making with the same command" in msgs[0]
    assert [Path(r["_path"]).name for r in got] == ["b.json", "a.json"]  # sorted by path; others skipped
    assert all(r["schema"] == SCHEMA == "zeropur-bench/record/v2" for r in got)
    # the v1 record never reaches a table
    assert "old.json" not in render_table(2, got, fmt="csv")
    assert load_records(tmp_path / "missing") == []
    with pytest.raises(UserError):
        load_records(tmp_path / "notes.md")


def test_v2_records_load_without_warnings(tmp_path: Path) -> None:
    rec = make_record()
    rec.pop("_path")
    (tmp_path / "r.json").write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_records(tmp_path)) == 1


# ------------------------------------------------------------------------------------------ reference section
@pytest.mark.parametrize("table", [2, 3, 4, 5, 6])
def test_reference_rows_rendered_in_paper_order(table: int) -> None:
    md = render_table(table, [])
    ref_md = _reference_section(md)
    ref = _leaderboard(table)
    numbers = [r[c] for r in ref for c in ("pgd20", "natural", "autoattack", "bpda_eot") if r.get(c)]
    if table == 2:  # two architecture parts side by side: row i of each part on one line
        half = len(ref) // 2
        numbers = [r[c] for a, b in zip(ref[:half], ref[half:]) for r in (a, b) for c in ("pgd20", "autoattack")]
    found = re.findall(r"\d+\.\d\d", ref_md)
    assert found == numbers
    # the paper's CSV output lists every reference row, with its source and its numbers in the "M paper" columns
    rows = [r for r in _csv_rows(render_table(table, [], fmt="csv")) if r["section"] == "paper"]
    assert len(rows) == len(ref) and all(r["source"].startswith(f"Table {table},") for r in rows)
    for got, want in zip(rows, ref):
        for col, header in (("pgd20", "PGD-20"), ("autoattack", "AutoAttack"), ("natural", "Natural"),
                            ("bpda_eot", "BPDA+EOT")):
            if col in want:
                assert got[f"{header} paper"] == want[col]


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


# ------------------------------------------------------------------------------------------ measured section layout
def test_measured_columns_side_by_side() -> None:
    metric = lambda m: [f"{m} paper", f"{m} paper protocol", f"{m} Δ", f"{m} paper in CI", f"{m} robust"]  # noqa
    fixed = ["Method", "Paper row", "Architecture", "Training recipe", "n", "Clean (defended)"]
    assert measured_columns(2) == fixed + metric("PGD-20") + metric("AutoAttack") + [
        "BPDA+EOT any-step (adaptive, robust)", "Record"]
    assert measured_columns(3) == measured_columns(4) == fixed + metric("PGD-20") + metric("AutoAttack") + ["Record"]
    assert measured_columns(5) == fixed + ["Natural paper", "Natural Δ", "Natural paper in CI"] + \
        metric("AutoAttack") + ["Record"]
    assert measured_columns(6) == ["Method", "Dataset"] + fixed[1:] + [
        "BPDA+EOT paper", "BPDA+EOT paper protocol (any step)", "BPDA+EOT Δ", "BPDA+EOT paper in CI",
        "BPDA+EOT robust (any step)", "BPDA+EOT final only (robust)", "Record"]


@pytest.mark.parametrize("table", [2, 3, 4, 5, 6])
def test_markdown_csv_latex_carry_the_same_columns(table: int) -> None:
    kwargs = {2: {}, 3: {"threat": "l2", "eps": 0.5}, 4: {"dataset": "cifar100"},
              5: {"dataset": "imagenet", "eps": 4 / 255, "attacks": [AA_RAND]},
              6: {"setting": "adaptive", "attacks": [BPDA50]}}[table]
    rec = make_record(**kwargs)
    md = render_table(table, [rec])
    header = [c.strip() for c in
              next(ln for ln in _measured_section(md).splitlines() if ln.startswith("|")).strip()[1:-1].split("|")]
    assert header == measured_columns(table)
    fixed = {"Method": "method", "Dataset": "dataset", "Paper row": "paper_row", "Architecture": "architecture",
             "Training recipe": "training_recipe", "n": "n", "Record": "source"}
    csv_cols = list(_csv_rows(render_table(table, [rec], fmt="csv"))[0])
    assert csv_cols == ["section", *[fixed.get(c, c) for c in measured_columns(table)[:-1]], "training_required",
                        "source", "command", "standin_command"]
    tex = render_table(table, [rec], fmt="latex").split("% Measured here", 1)[1]
    tex_header = tex.split("\\midrule", 1)[0].split("\\toprule", 1)[1]
    tex_cols = [c.strip() for c in tex_header.replace("\\\\", "").split("&")]
    assert tex_cols == [c.replace("%", "\\%") for c in measured_columns(table)]
    assert "✓" not in tex.split("\\par")[0] and "✗" not in tex.split("\\par")[0]  # in-CI marks as yes / no
    tex_rows = [ln for ln in tex.split("\\midrule", 1)[1].split("\\bottomrule")[0].splitlines() if "&" in ln]
    assert all(ln.count("&") == len(tex_cols) - 1 for ln in tex_rows)


def test_legend_says_what_each_column_means() -> None:
    md = render_table(2, [make_record()])
    legend = " ".join(_measured_section(md).split())
    for phrase in ("paper protocol: accuracy on the adversarial input alone, the clean result ignored, as the paper "
                   "reports it",
                   "right on the clean image AND on the attack's input", "robust ≤ Clean (defended)",
                   "Δ = paper protocol − paper", "within the measured 95% Wilson interval",
                   "each measured row states its own architecture and training recipe",
                   "its numbers are for the paper's architecture"):
        assert phrase in legend, phrase


# ------------------------------------------------------------------------------------------ round trip
def _check_comparison(row: dict, header: str, acc: float, ci: list[float], paper: str | None) -> int:
    """The M paper / Δ / in-CI cells of one metric against the record value and the paper's printed number."""
    if paper is None:
        assert row[f"{header} paper"] == row[f"{header} Δ"] == row[f"{header} paper in CI"] == ""
        return 0
    assert row[f"{header} paper"] == paper
    p = float(paper)
    assert row[f"{header} Δ"] == f"{round(100 * acc - p, 2):+.2f}"
    assert parse_cell(row[f"{header} Δ"])[0] == pytest.approx(100 * acc - p, abs=0.005)
    inside = 100 * ci[0] <= p <= 100 * ci[1]
    assert row[f"{header} paper in CI"] == ("✓" if inside else "✗")
    return 3


def _check_value(cell: str, acc: float, ci: list[float]) -> int:
    v, lo, hi = parse_cell(cell)
    assert v == pytest.approx(100 * acc, abs=0.005)
    assert (lo, hi) == (pytest.approx(100 * ci[0], abs=0.005), pytest.approx(100 * ci[1], abs=0.005))
    return 1


@pytest.mark.parametrize("table, kwargs, paper_rows", [
    # ResNet-20 'standard' stands beside the paper's ResNet-18 B-C / B-C-F rows (another architecture).
    (2, {}, {"zeropur-c": ("ZeroPur-B-C", "ResNet-18"), "zeropur-cf": ("ZeroPur-B-C-F", "ResNet-18")}),
    (3, {"threat": "l2", "eps": 0.5}, {"zeropur-cf": ("ZeroPur-B-C-F", "ResNet-18")}),
    (4, {"dataset": "cifar100", "model": "wrn-28-10", "arch": "wrn-28-10", "recipe": "strong"},
     {"zeropur-cf": ("ZeroPur-S-C-F", "WRN-28-10")}),
    (5, {"dataset": "imagenet", "eps": 4 / 255, "model": "Standard_R50", "arch": "Standard_R50", "recipe": None,
         "attacks": [AA_RAND], "checkpoint": None},
     {"zeropur-c": ("ZeroPur (Ours)", "ResNet-50"), "zeropur-cf": ("ZeroPur (Ours)", "ResNet-50")}),
    (6, {"setting": "adaptive", "attacks": [BPDA50, BPDA200]},
     {"zeropur-c": ("ZeroPur-B-C", "WideResNet-28-10"), "zeropur-cf": ("ZeroPur-B-C-F", "WideResNet-28-10")}),
])
def test_round_trip_every_measured_cell(table: int, kwargs: dict, paper_rows: dict) -> None:
    """Every measured cell equals its record value (paper protocol = adv_acc, robust = robust_acc, clean, final
    only) and every paper cell its leaderboard number; Δ and in-CI follow from both."""
    rec = make_record(**kwargs)
    others = [make_record(threat="l2", eps=0.5), make_record(dataset="cifar100"),
              make_record(setting="adaptive", attacks=[BPDA50], sha=SHA_B), make_record(eps=4 / 255)]
    records = [rec] + [o for o in others if (o["config"]["dataset"], o["config"]["threat"], o["config"]["eps"],
                                             o["config"]["setting"]) != (rec["config"]["dataset"],
                                                                        rec["config"]["threat"], rec["config"]["eps"],
                                                                        rec["config"]["setting"])]
    rows = _measured_csv(table, records)
    assert len(rows) == 2 * (2 if table == 6 else 1)  # 2 variants (x 2 BPDA+EOT step counts in Table 6)
    assert {r["source"] for r in rows} == {rec["_path"]}  # no other record leaks into this table
    keys = [a["key"] for a in rec["config"]["attacks"]]
    checked = 0
    for row in rows:
        variant = _variant_of(row)
        summ = rec["variants"][variant]["summary"]
        ci = summ["ci95"]
        assert row["n"] == str(summ["n"])
        assert row["training_recipe"] == (kwargs.get("recipe", "standard") or "not recorded")
        method, arch = paper_rows.get(variant, (None, None))
        want_label = "" if method is None else f"{method} ({arch})"  # csv: "" for "–"
        paper = _paper(table, method, arch) if method else None
        checked += _check_value(row[CLEAN_COL], summ["defended_clean_acc"], ci["defended_clean_acc"])
        if table == 5:
            checked += _check_comparison(row, "Natural", summ["defended_clean_acc"], ci["defended_clean_acc"],
                                         paper["natural"])
        if table == 6:
            key = "bpda-eot[steps=50]" if "steps=50" in row["method"] else "bpda-eot[steps=200]"
            assert row["method"].endswith(f" vs {key}")
            metrics = [("BPDA+EOT", key, "bpda_eot")]
        else:
            metrics = [(h, k, c) for h, k, c in (("PGD-20", "PGD-20", "pgd20"), ("AutoAttack", "AutoAttack-rand",
                                                                                  "autoattack")) if k in keys]
        for header, key, col in metrics:
            acc, aci = summ["adv_acc"][key], ci["adv_acc"][key]
            assert summ["robust_acc"][key] < acc  # the two must be told apart
            if table == 6:
                checked += _check_value(row["BPDA+EOT paper protocol (any step)"], acc, aci)
                checked += _check_value(row["BPDA+EOT robust (any step)"], summ["robust_acc"][key],
                                        ci["robust_acc"][key])
                checked += _check_value(row["BPDA+EOT final only (robust)"], summ["robust_final_acc"][key],
                                        ci["robust_final_acc"][key])
            else:
                checked += _check_value(row[f"{header} paper protocol"], acc, aci)
                checked += _check_value(row[f"{header} robust"], summ["robust_acc"][key], ci["robust_acc"][key])
            checked += _check_comparison(row, header, acc, aci, paper[col] if paper else None)
        if table in (2, 3, 6):  # ResNet-20: the paper's first architecture, and the row says so
            if method:
                assert row["paper_row"] == f"{method} ({arch}; measured on ResNet-20)"
        else:
            assert row["paper_row"] == want_label
    per_row = {2: 1 + 2 * 5, 3: 1 + 2 * 5, 4: 1 + 2 * 5, 5: 1 + 3 + 5, 6: 1 + 6}[table]
    n_unmatched = sum(1 for r in rows if r["paper_row"] == "") * (3 if table == 5 else 3 * (len(keys) if table < 6 else 1))
    assert checked == len(rows) * per_row - n_unmatched
    # The markdown shows the same cells as the csv.
    md_rows = _md_rows(render_table(table, records))
    md_measured = [r for r in md_rows if r["Record"] == rec["_path"]]
    assert len(md_measured) == len(rows)
    for c, m in zip(rows, md_measured):
        for col in measured_columns(table):
            name = {"Method": "method", "Dataset": "dataset", "Paper row": "paper_row", "Architecture": "architecture",
                    "Training recipe": "training_recipe", "n": "n", "Record": "source"}.get(col, col)
            want = c[name] or MISSING
            assert m[col] == want or re.fullmatch(rf"{re.escape(want)} \[\d+\]", m[col]), (col, m[col], want)


def test_paper_protocol_is_adv_acc_and_robust_is_robust_acc() -> None:
    """A defense that is 'right' on every attacked input but wrong on most clean images: the paper's protocol
    reports 95%, robust accuracy at most the defended clean accuracy (20%)."""
    rec = make_record(counts={"zeropur-cf": (40, [(190, 35), (188, 33)])}, recipe="vanilla", blur="median:3")
    row = _measured_csv(2, [rec])[0]
    assert parse_cell(row["PGD-20 paper protocol"])[0] == 95.0
    assert parse_cell(row["PGD-20 robust"])[0] == 17.5
    assert parse_cell(row["AutoAttack paper protocol"])[0] == 94.0
    assert parse_cell(row["AutoAttack robust"])[0] == 16.5
    assert parse_cell(row[CLEAN_COL])[0] == 20.0
    assert row["PGD-20 paper"] == "69.52" and row["PGD-20 Δ"] == "+25.48" and row["PGD-20 paper in CI"] == "✗"
    assert row["paper_row"] == "ZeroPur-V-C-F (ResNet-18; measured on ResNet-20)"  # same blur: not mentioned


# ------------------------------------------------------------------------------------------ which attack fills which column
@pytest.mark.parametrize("attacks, near", [
    ([("pgd", {"steps": 10}, "pgd[steps=10]"), ("autoattack", {"version": "rand", "n_iter": 2},
                                                 "autoattack[n_iter=2,version=rand]")],
     ["pgd[steps=10]", "autoattack[n_iter=2,version=rand]"]),
    ([("pgd", {"steps": 20, "random_start": False}, "pgd[random_start=False]"),
      ("autoattack", {"version": "standard"}, "AutoAttack-standard")],
     ["pgd[random_start=False]", "AutoAttack-standard"]),
])
def test_non_paper_settings_fill_neither_column(attacks: list, near: list) -> None:
    """Only key PGD-20 fills the PGD-20 columns and only key AutoAttack-rand the AutoAttack ones, whatever the
    attack's name or its raw params; the footnote names the near miss and gives the command."""
    rec = make_record(attacks=attacks)
    rows = _measured_csv(2, [rec])
    assert len(rows) == 2
    for row in rows:
        for m in ("PGD-20", "AutoAttack"):
            assert row[f"{m} paper protocol"] == row[f"{m} robust"] == row[f"{m} Δ"] == row[f"{m} paper in CI"] == ""
            assert row[f"{m} paper"] != ""  # the paper's number is still shown beside the empty measured cell
        assert "--attack pgd --attack autoattack:version=rand" in row["command"]
    md = render_table(2, [rec])
    row = next(r for r in _md_rows(md) if r["Method"].startswith("ZeroPur-C-F"))
    for col in ("PGD-20 paper protocol", "PGD-20 robust", "AutoAttack paper protocol", "AutoAttack robust"):
        assert re.fullmatch(rf"{MISSING} \[\d+\]", row[col]), row[col]
    foot = _footnote(md, row["PGD-20 paper protocol"])
    assert foot == _footnote(md, row["AutoAttack robust"])
    assert foot.startswith(f"[{foot[1]}] `zeropur-bench run --dataset cifar10 --threat linf --model resnet20 "
                           f"--checkpoint {RESNET20_CKPT} --recipe standard --stages cf --profile paper "
                           "--blur gaussian:1.2 --attack pgd --attack autoattack:version=rand --n-ex 200`")
    assert all(k in foot for k in near)
    assert parse_cell(row[CLEAN_COL]) is not None


def test_one_column_filled_other_missing() -> None:
    rec = make_record(attacks=[PGD20, ("autoattack", {"version": "rand", "n_iter": 2},
                                       "autoattack[n_iter=2,version=rand]")])
    md = render_table(2, [rec])
    row = next(r for r in _md_rows(md) if r["Method"].startswith("ZeroPur-C-F"))
    assert parse_cell(row["PGD-20 paper protocol"])[0] == 75.0 and parse_cell(row["PGD-20 robust"])[0] == 65.5
    assert re.fullmatch(rf"{MISSING} \[\d+\]", row["AutoAttack paper protocol"])
    foot = _footnote(md, row["AutoAttack paper protocol"])
    # the command runs every attack of the table: its record fills the whole row on its own
    assert "--attack pgd --attack autoattack:version=rand --n-ex 200`" in foot
    assert "autoattack[n_iter=2,version=rand]" in foot


def test_records_of_other_settings_stay_out() -> None:
    wrong = [make_record(eps=4 / 255), make_record(setting="adaptive"), make_record(threat="l2", eps=0.5),
             make_record(dataset="cifar100"), make_record(attacks=[("square", {}, "square")])]
    assert _measured_csv(2, wrong) == []
    # Table 6 needs a BPDA+EOT attack: an adaptive record with PGD only stays out.
    assert _measured_csv(6, wrong) == []


# ------------------------------------------------------------------------------------------ the paper row beside each row
def test_paper_row_resnet20_uses_resnet18_and_wrn_uses_wrn() -> None:
    r20 = make_record(path="results/r20.json")
    wrn = make_record(model="wrn-28-10", arch="wrn-28-10", sha=SHA_B, path="results/wrn.json")
    r18 = make_record(model="resnet18-cifar10-standard", arch="resnet18", checkpoint=None, path="results/r18.json",
                      sha="c" * 64)
    rows = {(r["source"], _variant_of(r)): r for r in _measured_csv(2, [r20, wrn, r18])}
    for src, arch_note, part in (("results/r20.json", "ResNet-18; measured on ResNet-20", "ResNet-18"),
                                 ("results/wrn.json", "WideResNet-28-10", "WideResNet-28-10"),
                                 ("results/r18.json", "ResNet-18", "ResNet-18")):
        for variant, method in (("zeropur-c", "ZeroPur-B-C"), ("zeropur-cf", "ZeroPur-B-C-F")):
            row = rows[(src, variant)]
            assert row["paper_row"] == f"{method} ({arch_note})"
            paper = _paper(2, method, part)
            assert row["PGD-20 paper"] == paper["pgd20"] and row["AutoAttack paper"] == paper["autoattack"]
    assert rows[("results/wrn.json", "zeropur-c")]["PGD-20 paper"] == "57.45"  # not ResNet-18's 56.21
    assert rows[("results/r20.json", "zeropur-c")]["PGD-20 paper"] == "56.21"
    assert rows[("results/r20.json", "zeropur-c")]["architecture"] == "ResNet-20 (CIFAR, 0.27M)"
    assert rows[("results/wrn.json", "zeropur-c")]["architecture"] == "WideResNet-28-10 (36.5M)"
    # Table 3 spells the WRN group "WRN-28-10"
    wrn3 = make_record(model="wrn-28-10", arch="wrn-28-10", threat="l2", eps=0.5, recipe="vanilla", blur="median:3")
    row = next(r for r in _measured_csv(3, [wrn3]) if _variant_of(r) == "zeropur-cf")
    assert row["paper_row"] == "ZeroPur-V-C-F (WRN-28-10)" and row["PGD-20 paper"] == "76.59"
    c_row = next(r for r in _measured_csv(3, [wrn3]) if _variant_of(r) == "zeropur-c")
    assert c_row["paper_row"] == "" and c_row["PGD-20 paper"] == ""  # Table 3 has no ZeroPur-C rows


def test_paper_row_states_blur_difference_and_unmatched_recipes() -> None:
    blur = make_record(blur="median:3")  # 'standard': the paper blurs with gaussian:1.2
    row = next(r for r in _measured_csv(2, [blur]) if _variant_of(r) == "zeropur-cf")
    assert row["paper_row"] == "ZeroPur-B-C-F (ResNet-18; measured on ResNet-20; paper blur gaussian:1.2)"
    wrn_blur = make_record(model="wrn-28-10", arch="wrn-28-10", blur="gaussian:1.8")
    row = next(r for r in _measured_csv(2, [wrn_blur]) if _variant_of(r) == "zeropur-c")
    assert row["paper_row"] == "ZeroPur-B-C (WideResNet-28-10; paper blur gaussian:1.2)"
    # the shared pad-crop ResNet-20 has no paper row: no paper number, Δ or in-CI, but its own values
    padcrop = make_record(recipe="standard-padcrop")
    none = make_record(counts={"none": (183, [(2, 1), (1, 0)])}, path="results/none.json")
    for row in _measured_csv(2, [padcrop, none]):
        assert row["paper_row"] == "" and row["PGD-20 paper"] == "" and row["PGD-20 Δ"] == ""
        assert parse_cell(row["PGD-20 paper protocol"]) is not None and parse_cell(row["PGD-20 robust"]) is not None
    md_rows = _md_rows(render_table(2, [padcrop, none]))
    assert {r["Paper row"] for r in md_rows if r["Record"] in (padcrop["_path"], "results/none.json")} == {MISSING}
    assert [r["Method"] for r in md_rows if r["Record"] == "results/none.json"] == ["No defense"]
    # the pad-crop record fills none of the paper's ZeroPur rows: all 12 "–" rows stay
    assert sum(r["section"] == "missing" for r in _csv_rows(render_table(2, [padcrop], fmt="csv"))) == 12


@pytest.mark.parametrize("side, k, inside", [
    # ResNet-18 ZeroPur-B-C PGD-20 = 56.21; n = 10000 gives a CI of about ±1 point around k / n
    ("hi", 5524, True), ("hi", 5523, False), ("lo", 5718, True), ("lo", 5719, False),
])
def test_delta_and_in_ci_just_inside_and_outside(side: str, k: int, inside: bool) -> None:
    """The paper's 56.21 lies just inside / just outside the Wilson interval of the measured paper-protocol
    value; Δ is measured − paper, signed, in points."""
    n = 10000
    lo, hi = wilson(k, n)
    assert (100 * lo <= 56.21 <= 100 * hi) is inside
    edge = 100 * (hi if side == "hi" else lo)
    assert abs(edge - 56.21) < 0.01  # crafted at the edge
    rec = make_record(n=n, counts={"zeropur-c": (8000, [(k, k - 800), (6000, 5000)])})
    row = _measured_csv(2, [rec])[0]
    assert row["PGD-20 paper"] == "56.21"
    assert row["PGD-20 paper in CI"] == ("✓" if inside else "✗")
    assert row["PGD-20 Δ"] == f"{100 * k / n - 56.21:+.2f}"
    assert (row["PGD-20 Δ"][0] == "-") is (side == "hi")
    # the robust value's interval plays no part in it
    assert parse_cell(row["PGD-20 robust"])[0] == pytest.approx(100 * (k - 800) / n)


def test_delta_exact_and_zero() -> None:
    rec = make_record(n=10000, counts={"zeropur-c": (8000, [(5621, 5000), (5866, 5000)])})
    row = _measured_csv(2, [rec])[0]
    assert row["PGD-20 Δ"] == "+0.00" and row["PGD-20 paper in CI"] == "✓"
    assert row["AutoAttack paper"] == "58.66" and row["AutoAttack Δ"] == "+0.00"


# ------------------------------------------------------------------------------------------ Table 2's adaptive column
def _adaptive(sha: str | None = SHA_A, steps: int = 10, **kw) -> dict:
    bp = ("bpda-eot", {"steps": steps}, f"bpda-eot[steps={steps}]")
    counts = {"zeropur-c": (80, [(70, 61)]), "zeropur-cf": (90, [(40, 33)])}
    return make_record(setting="adaptive", attacks=[bp], counts=counts, n=100, sha=sha,
                       path=kw.pop("path", f"results/adaptive-{sha and sha[0]}-{steps}.json"), **kw)


def test_adaptive_column_filled_only_by_same_checkpoint_and_defense() -> None:
    transfer = make_record()
    same = _adaptive(SHA_A)
    other_ckpt = _adaptive(SHA_B, path="results/other.json")
    rows = {_variant_of(r): r for r in _measured_csv(2, [transfer, other_ckpt])}
    assert all(r[ADAPTIVE_COL] == "" for r in rows.values())  # another checkpoint: not this model
    md = render_table(2, [transfer, other_ckpt])
    cell = next(r for r in _md_rows(md) if r["Method"].startswith("ZeroPur-C-F"))[ADAPTIVE_COL]
    assert re.fullmatch(rf"{MISSING} \[\d+\]", cell)
    assert _footnote(md, cell).startswith(f"[{cell[3:-1]}] `zeropur-bench run --dataset cifar10 --threat linf "
                                          f"--model resnet20 --checkpoint {RESNET20_CKPT} --recipe standard "
                                          "--stages cf --profile paper --blur gaussian:1.2 --setting adaptive "
                                          "--attack bpda-eot --n-ex 200`")
    rows = {_variant_of(r): r for r in _measured_csv(2, [transfer, other_ckpt, same])}
    for v, r in rows.items():
        s = same["variants"][v]["summary"]
        key = "bpda-eot[steps=10]"
        want = (f"{100 * s['robust_acc'][key]:.2f} [{100 * s['ci95']['robust_acc'][key][0]:.2f}, "
                f"{100 * s['ci95']['robust_acc'][key][1]:.2f}] (steps=10)")
        assert r[ADAPTIVE_COL] == want
        assert s["robust_acc"][key] != s["adv_acc"][key]  # robust, not the paper's protocol
        assert r["source"] == f"{transfer['_path']} (BPDA+EOT: {same['_path']})"
    # the same sha, another defense (coarse steps, blur, stages): not filled; dtype / seed differences: filled
    for over, filled in (({"coarse_steps": 3}, False), ({"fine_eps": 8 / 255}, False), ({"dtype": "bf16"}, True),
                         ({"seed": 7, "channels_last": True}, True)):
        a = _adaptive(SHA_A, resolved_over=over)
        got = _measured_csv(2, [transfer, a])
        assert all(bool(r[ADAPTIVE_COL]) is filled for r in got), over
    a = _adaptive(SHA_A, blur="median:3")
    assert all(r[ADAPTIVE_COL] == "" for r in _measured_csv(2, [transfer, a]))
    # without a sha on both sides: the same config.checkpoint decides
    t2, a2 = make_record(sha=None), _adaptive(None)
    assert all(r[ADAPTIVE_COL] for r in _measured_csv(2, [t2, a2]))
    a3 = _adaptive(None, checkpoint="other/resnet20.th")
    assert not any(r[ADAPTIVE_COL] for r in _measured_csv(2, [t2, a3]))
    # the most steps wins
    rows = _measured_csv(2, [transfer, same, _adaptive(SHA_A, steps=40)])
    assert all(r[ADAPTIVE_COL].endswith("(steps=40)") for r in rows)


def test_adaptive_column_only_in_table2() -> None:
    for t in (3, 4, 5, 6):
        assert ADAPTIVE_COL not in measured_columns(t)


# ------------------------------------------------------------------------------------------ order, "–" rows, commands
def test_rows_in_paper_order_with_missing_rows_interleaved() -> None:
    recs = [make_record(recipe="strong", path="results/s.json"),
            make_record(recipe="standard-padcrop", path="results/p.json"),
            make_record(recipe="vanilla", blur="median:3", path="results/v.json"),
            make_record(model="wrn-28-10", arch="wrn-28-10", sha=SHA_B, path="results/wb.json")]
    rows = [r for r in _csv_rows(render_table(2, recs, fmt="csv")) if r["section"] != "paper"]
    order = [(r["section"], r["paper_row"].split(" (")[0] if r["paper_row"] else "", r["source"]) for r in rows]
    paper_order = ["ZeroPur-V-C", "ZeroPur-V-C-F", "ZeroPur-B-C", "ZeroPur-B-C-F", "ZeroPur-S-C", "ZeroPur-S-C-F"]
    ranks = [paper_order.index(p) for _, p, _ in order if p]
    assert ranks == sorted(ranks)
    assert [o for o in order if not o[1]] == order[-2:]  # unmatched (pad-crop) rows last
    assert {o[2] for o in order[-2:]} == {"results/p.json"}
    # under V-C: the ResNet-20 measured row, then the paper's ResNet-18 and WRN "–" rows
    vc = [(s, src) for s, p, src in order if p == "ZeroPur-V-C"]
    assert vc == [("measured", "results/v.json"), ("missing", ""), ("missing", "")]
    vc_rows = [r for r in rows if r["paper_row"].startswith("ZeroPur-V-C (")]
    assert [r["paper_row"] for r in vc_rows] == ["ZeroPur-V-C (ResNet-18; measured on ResNet-20)",
                                                 "ZeroPur-V-C (ResNet-18)", "ZeroPur-V-C (WideResNet-28-10)"]
    # B-C: the WRN record fills the WRN paper row; the ResNet-18 "–" row comes first (paper's group order)
    bc = [(s, r["architecture"]) for r in rows if r["paper_row"].startswith("ZeroPur-B-C (")
          for s in [r["section"]]]
    assert bc == [("missing", "ResNet-18"), ("measured", "WideResNet-28-10 (36.5M)")]
    # each "–" row shows the paper's number beside its empty measured cells
    for r in rows:
        if r["section"] == "missing":
            arch = r["architecture"]
            paper = _paper(2, r["method"].split(" (")[0], arch)
            assert (r["PGD-20 paper"], r["AutoAttack paper"]) == (paper["pgd20"], paper["autoattack"])
            assert r["PGD-20 paper protocol"] == r["PGD-20 robust"] == r[CLEAN_COL] == r[ADAPTIVE_COL] == ""


def test_missing_paper_rows_commands_use_registered_classifiers() -> None:
    rows = [r for r in _csv_rows(render_table(2, [], fmt="csv")) if r["section"] == "missing"]
    assert len(rows) == 12
    by = {(r["method"].split(" ")[0], r["architecture"]): r for r in rows}
    r18 = by[("ZeroPur-S-C", "ResNet-18")]
    assert r18["command"] == ("zeropur-bench run --dataset cifar10 --threat linf --model resnet18-cifar10-strong "
                              "--stages c --profile authors --blur gaussian:1.2 --attack pgd "
                              "--attack autoattack:version=rand --n-ex 1000")
    assert r18["standin_command"] == ("zeropur-bench run --dataset cifar10 --threat linf --model "
                                      "resnet20-cifar10-strong --stages c --profile authors --blur gaussian:1.2 "
                                      "--attack pgd --attack autoattack:version=rand --n-ex 1000")
    wrn = by[("ZeroPur-V-C-F", "WideResNet-28-10")]
    assert wrn["command"] == ("zeropur-bench run --dataset cifar10 --threat linf --model wrn-28-10 --checkpoint "
                              "PATH/TO/wrn-28-10-vanilla.pt --recipe vanilla --stages cf --profile authors "
                              "--blur median:3 --attack pgd --attack autoattack:version=rand --n-ex 1000")
    assert wrn["standin_command"] == ""  # a ResNet-20 stands beside the ResNet-18 row, not the WRN one
    assert all("PATH/TO" not in r["command"] for r in rows if r["architecture"] == "ResNet-18")
    md = render_table(2, [])
    row = next(r for r in _md_rows(md) if r["Method"] == "ZeroPur-S-C (paper row; not run here)")
    for col in (CLEAN_COL, "PGD-20 paper protocol", "PGD-20 robust", "AutoAttack paper protocol", "AutoAttack robust"):
        assert re.fullmatch(rf"{MISSING} \[\d+\]", row[col]), col
    assert row["PGD-20 paper"] == "77.64" and row["PGD-20 Δ"] == MISSING and row[ADAPTIVE_COL] == MISSING
    foot = _footnote(md, row["PGD-20 robust"])
    assert f"`{r18['command']}`" in foot and f"`{r18['standin_command']}`" in foot
    # CIFAR-100: the project's ResNet-20 CIFAR-100 classifiers as stand-ins; WRN / ResNet-18 checkpoints to supply
    rows4 = {(r["method"].split(" ")[0], r["architecture"]): r
             for r in _csv_rows(render_table(4, [], fmt="csv")) if r["section"] == "missing"}
    assert rows4[("ZeroPur-B-C-F", "ResNet-18")]["standin_command"] == (
        "zeropur-bench run --dataset cifar100 --threat linf --model resnet20-cifar100-standard --stages cf "
        "--profile authors --blur gaussian:1.2 --attack pgd --attack autoattack:version=rand --n-ex 1000")
    assert "--model wrn-28-10 --checkpoint PATH/TO/wrn-28-10-cifar100-strong.pt --recipe strong" in \
        rows4[("ZeroPur-S-C-F", "WRN-28-10")]["command"]
    # Table 6: adaptive BPDA+EOT on the paper's WRN-28-10, with the ResNet-20 stand-in
    rows6 = [r for r in _csv_rows(render_table(6, [], fmt="csv")) if r["section"] == "missing"]
    assert [r["command"] for r in rows6] == [
        f"zeropur-bench run --dataset cifar10 --threat linf --model wrn-28-10 --checkpoint "
        f"PATH/TO/wrn-28-10-standard.pt --recipe standard --stages {s} --profile authors --blur gaussian:1.2 "
        f"--setting adaptive --attack bpda-eot --n-ex 1000" for s in ("c", "cf")]
    assert all("--model resnet20-cifar10-standard " in r["standin_command"] for r in rows6)
    # Table 5: RobustBench's Standard_R50
    rows5 = [r for r in _csv_rows(render_table(5, [], fmt="csv")) if r["section"] == "missing"]
    assert [r["command"] for r in rows5] == [
        "zeropur-bench run --dataset imagenet --threat linf --model Standard_R50 --stages cf --profile authors "
        "--blur gaussian:1.2 --attack autoattack:version=rand --n-ex 1000"]


def test_paper_cells_filled_by_matching_records() -> None:
    """A ResNet-18 'standard' record fills the paper's ZeroPur-B-C / B-C-F ResNet-18 rows (and only those)."""
    rec = make_record(model="resnet18-cifar10-standard", arch="resnet18", checkpoint=None)
    rows = _csv_rows(render_table(2, [rec], fmt="csv"))
    missing = [r for r in rows if r["section"] == "missing"]
    assert len(missing) == 10
    assert sorted((r["method"].split(" ")[0], r["architecture"]) for r in missing if r["architecture"] == "ResNet-18") \
        == [("ZeroPur-S-C", "ResNet-18"), ("ZeroPur-S-C-F", "ResNet-18"), ("ZeroPur-V-C", "ResNet-18"),
            ("ZeroPur-V-C-F", "ResNet-18")]
    measured = [r for r in rows if r["section"] == "measured"]
    assert [r["architecture"] for r in measured] == ["ResNet-18 (11.2M)"] * 2
    # a record with near-miss attacks still counts as the row's measurement; its footnote says what to run
    near = make_record(model="resnet18-cifar10-standard", arch="resnet18", checkpoint=None,
                       attacks=[("pgd", {"steps": 10}, "pgd[steps=10]")])
    rows = _csv_rows(render_table(2, [near], fmt="csv"))
    assert sum(r["section"] == "missing" for r in rows) == 10
    cmd = next(r for r in rows if r["section"] == "measured")["command"]
    assert cmd.startswith("zeropur-bench run --dataset cifar10 --threat linf --model resnet18-cifar10-standard "
                          "--stages c ")
    assert "--recipe" not in cmd  # a registered classifier carries its recipe


def test_record_without_variants_and_no_defense_row() -> None:
    rec = make_record()
    cfg_def = {"name": "zeropur", "profile": "authors", "stages": "cf", "blur": "gaussian:1.8"}
    rec["config"]["defense"] = cfg_def
    del rec["variants"]
    none_rec = make_record(counts={"none": (183, [(1, 0), (2, 1)])}, path="results/none.json")
    rows = _measured_csv(2, [rec, none_rec])
    assert [r["method"] for r in rows] == ["ZeroPur-C-F (profile authors, blur gaussian:1.8)", "No defense"]
    summ = rec["summary"]
    assert parse_cell(rows[0]["PGD-20 paper protocol"])[0] == pytest.approx(100 * summ["adv_acc"]["PGD-20"])
    assert rows[0]["paper_row"] == "ZeroPur-B-C-F (ResNet-18; measured on ResNet-20; paper blur gaussian:1.2)"
    lo, hi = wilson(0, 200)
    assert rows[1]["PGD-20 robust"] == f"0.00 [0.00, {100 * hi:.2f}]"
    assert rows[1]["PGD-20 paper protocol"] == f"0.50 [{100 * wilson(1, 200)[0]:.2f}, {100 * wilson(1, 200)[1]:.2f}]"
    assert rows[1][ADAPTIVE_COL] == "" and rows[1]["command"] == ""  # BPDA+EOT needs a defense


def test_table5_imagenet_row_and_cell() -> None:
    rec = make_record(dataset="imagenet", eps=4 / 255, model="Standard_R50", arch="Standard_R50", recipe=None,
                      attacks=[AA_RAND], checkpoint=None, sha=None)
    rec["provenance"]["model"]["source"] = "robustbench"
    md = render_table(5, [rec])
    rows = _md_rows(md)
    assert all(r["Architecture"] == "Standard_R50 (RobustBench zoo)" and r["Training recipe"] == "not recorded"
               for r in rows)
    assert not any("(paper row; not run here)" in r["Method"] for r in rows)  # the ImageNet ZeroPur row is filled
    cf = next(r for r in rows if r["Method"].startswith("ZeroPur-C-F"))
    lo, hi = wilson(155, 200)
    assert cf[CLEAN_COL] == f"77.50 [{100 * lo:.2f}, {100 * hi:.2f}]"  # Natural = defended clean accuracy
    assert cf["Natural paper"] == "62.15" and cf["Natural Δ"] == "+15.35" and cf["Natural paper in CI"] == "✗"
    assert cf["Paper row"] == "ZeroPur (Ours) (ResNet-50)"
    assert cf["AutoAttack paper"] == "67.54"


def test_table6_rows_name_their_attack_and_compare_with_the_paper() -> None:
    rec = make_record(setting="adaptive", attacks=[BPDA50], model="wrn-28-10", arch="wrn-28-10",
                      counts={"zeropur-c": (160, [(72, 60)])}, n=200)
    other_dataset = make_record(setting="adaptive", attacks=[BPDA50], dataset="cifar100", path="results/c100.json")
    rows = _md_rows(render_table(6, [rec, other_dataset]))
    row = next(r for r in rows if r["Record"] == rec["_path"])
    assert row["Method"] == "ZeroPur-C (profile paper, blur gaussian:1.2) vs bpda-eot[steps=50]"
    assert row["Dataset"] == "cifar10" and row["Paper row"] == "ZeroPur-B-C (WideResNet-28-10)"
    assert row["BPDA+EOT paper"] == "35.60"
    assert parse_cell(row["BPDA+EOT paper protocol (any step)"])[0] == 36.0
    assert parse_cell(row["BPDA+EOT robust (any step)"])[0] == 30.0
    assert parse_cell(row["BPDA+EOT final only (robust)"])[0] == 33.5
    assert row["BPDA+EOT Δ"] == "+0.40" and row["BPDA+EOT paper in CI"] == "✓"
    # CIFAR-100 stands beside no paper row (the paper's Table 6 is CIFAR-10), but is shown
    c100 = [r for r in rows if r["Record"] == "results/c100.json"]
    assert len(c100) == 2 and all(r["Paper row"] == MISSING and r["BPDA+EOT paper"] == MISSING for r in c100)
    # final only is "–" where the record has none (e.g. a one-shot attack's record)
    del rec["variants"]["zeropur-c"]["summary"]["robust_final_acc"]
    row = _measured_csv(6, [rec])[0]
    assert row["BPDA+EOT final only (robust)"] == "" and row["BPDA+EOT robust (any step)"] != ""
