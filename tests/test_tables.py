"""Table tests for ``zeropur_bench.reports`` (issues 5, 11, 13 and 21).

These use SYNTHETIC record dicts of schema ``zeropur-bench/record/v2`` (``zeropur_bench.records``: robust =
defended clean ∧ adversarial ≤ defended clean; ``adv_acc`` = the paper's protocol, adversarial input alone), with
counts chosen so that ``adv_acc`` and ``robust_acc`` differ everywhere: a cell that shows the wrong one fails. No
model is run. They test which record lands in which table and column (paper names only with the paper's
settings), the rows measured beneath each paper row (paper protocol, Δ, the † outside-CI mark), the compact table
(robust, clean, adaptive column, passes), the missing list and its commands, and the round trip of every measured
number through the CSV. The round trip
with a real record written by the engine lives with the CLI tests.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shlex
import warnings
from pathlib import Path

import pytest

from zeropur_bench.errors import UserError
from zeropur_bench.records import SCHEMA
from zeropur_bench.stats import wilson
from zeropur_bench.fmt import pct_ci, signed
from zeropur_bench.reports import infer_format, infer_table_number, load_records, render_table
from zeropur_bench.reports.render import ADAPTIVE_COL, CLEAN_COL, MISSING, OUTSIDE

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


def _measured(table: int, records: list) -> list[dict[str, str]]:
    return [r for r in _csv_rows(render_table(table, records, fmt="csv")) if r["section"] == "measured"]


def _num(rows: list[dict], column: str, measure: str, **where: str) -> dict[str, str]:
    """The one CSV row of ``column`` / ``measure`` matching ``where``."""
    got = [r for r in rows if r["column"] == column and r["measure"] == measure
           and all(r[k] == v for k, v in where.items())]
    assert len(got) == 1, (column, measure, where, len(got))
    return got[0]


def _tables(md: str) -> list[list[dict[str, str]]]:
    """Every markdown table of ``md`` as a list of dicts (header → cell)."""
    out, cur = [], []
    for ln in md.splitlines() + [""]:
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            split = lambda x: [c.strip() for c in x.strip()[1:-1].split("|")]  # noqa: E731
            header = split(cur[0])
            out.append([dict(zip(header, split(x))) for x in cur[2:]])
            cur = []
    return out


def _main(md: str) -> list[dict[str, str]]:
    return _tables(md)[0]


def _compact(md: str) -> list[dict[str, str]]:
    return _tables(md.split("### Measured rows", 1)[1])[0]


def _missing(md: str) -> list[str]:
    if "### Not measured here" not in md:
        return []
    part = md.split("### Not measured here", 1)[1].split("###", 1)[0]
    return [ln[2:] for ln in part.splitlines() if ln.startswith("- ")]


def _commands(item: str) -> list[str]:
    return re.findall(r"`([^`]+)`", item)


def _leaderboard(table: int) -> list[dict[str, str]]:
    with open(LEADERBOARDS / f"table{table}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _paper(table: int, method: str, arch: str) -> dict[str, str]:
    return next(r for r in _leaderboard(table) if r["method"] == method and r["architecture"] == arch)


def _variant_of(method: str) -> str:
    return "zeropur-cf" if method.startswith("ZeroPur-C-F") else "none" if method.startswith("No defense") \
        else "zeropur-c"


def _measured_md(md: str) -> list[dict[str, str]]:
    """The ↳ rows of the main table, with 'cells' = the non-empty metric cells keyed by column."""
    return [r for r in _main(md) if any(v.startswith("↳") for v in r.values())]


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


def test_load_records_v2_only_old_and_damaged_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    rec = make_record()
    rec.pop("_path")
    (tmp_path / "b.json").write_text(json.dumps(rec))
    (tmp_path / "sub" / "deeper" / "a.json").write_text(json.dumps(rec))
    (tmp_path / "old.json").write_text(json.dumps({**rec, "schema": "zeropur-bench/record/v1"}))
    damaged = json.loads(json.dumps(rec))
    for v in damaged["variants"].values():
        del v["summary"]  # issue 22: never rendered as "not measured"
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    (tmp_path / "baseline.json").write_text(json.dumps({"schema": "zeropur-bench/baseline/v1", "x": 1}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "notes.md").write_text("not json")
    with pytest.warns(UserWarning) as caught:
        got = load_records(tmp_path)
    msgs = sorted(str(w.message) for w in caught)
    assert len(msgs) == 2
    assert "damaged.json" in msgs[0] and "no summary" in msgs[0]
    assert "old.json" in msgs[1] and "zeropur-bench/record/v1" in msgs[1] and "re-make it with the same command" in msgs[1]
    assert [Path(r.path).name for r in got] == ["b.json", "a.json"]  # sorted by path; others skipped
    assert all(r.raw["schema"] == SCHEMA == "zeropur-bench/record/v2" for r in got)
    text = render_table(2, got, fmt="csv")
    assert "old.json" not in text and "damaged.json" not in text
    with pytest.raises(UserError, match="does not exist"):  # issue 33: a typo is not an empty table
        load_records(tmp_path / "missing")
    with pytest.raises(UserError):
        load_records(tmp_path / "notes.md")
    # a damaged record given directly is skipped with the same warning, not shown as a row of "–"
    damaged["_path"] = "results/damaged.json"
    with pytest.warns(UserWarning, match="damaged.json"):
        assert _measured(2, [damaged]) == []


def test_v2_records_load_without_warnings(tmp_path: Path) -> None:
    rec = make_record()
    rec.pop("_path")
    (tmp_path / "r.json").write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_records(tmp_path)) == 1


# ------------------------------------------------------------------------------------------ the paper's layout
@pytest.mark.parametrize("table", [2, 3, 4, 5, 6])
def test_paper_rows_rendered_in_paper_order(table: int) -> None:
    md = render_table(table, [])
    ref = _leaderboard(table)
    numbers = [r[c] for r in ref for c in ("pgd20", "natural", "autoattack", "bpda_eot") if r.get(c)]
    if table == 2:  # two architecture parts side by side: row i of each part on one line
        half = len(ref) // 2
        numbers = [r[c] for a, b in zip(ref[:half], ref[half:]) for r in (a, b) for c in ("pgd20", "autoattack")]
    found = [x for row in _main(md) for x in re.findall(r"\d+\.\d\d", " ".join(row.values()))]
    assert found == numbers
    rows = [r for r in _csv_rows(render_table(table, [], fmt="csv")) if r["section"] == "paper"]
    metrics = [c for c in ("pgd20", "natural", "autoattack", "bpda_eot") if c in ref[0]]
    assert len(rows) == len(ref) * len(metrics) and all(r["record"].startswith(f"Table {table},") for r in rows)
    assert [r["paper"] for r in rows] == [p[c] for p in ref for c in metrics]


def test_table_headers_are_the_papers() -> None:
    heads = {t: list(_main(render_table(t, [make_record(**kw)]))[0])
             for t, kw in ((2, {}), (3, {"threat": "l2", "eps": 0.5}), (4, {"dataset": "cifar100"}),
                           (5, {"dataset": "imagenet", "eps": 4 / 255, "attacks": [AA_RAND]}),
                           (6, {"setting": "adaptive", "attacks": [BPDA50]}))}
    assert heads[2] == ["Training Required", "ResNet-18: Method", "ResNet-18: PGD-20", "ResNet-18: AutoAttack",
                        "WideResNet-28-10: Method", "WideResNet-28-10: PGD-20", "WideResNet-28-10: AutoAttack"]
    assert heads[3] == heads[4] == ["Method", "Training Required", "Arch", "PGD-20", "AutoAttack"]
    assert heads[5] == ["Method", "Model Required", "Training Required", "Natural", "AutoAttack"]
    assert heads[6] == ["Method", "Purification", "BPDA+EOT"]
    tex = render_table(2, [make_record()], fmt="latex")
    assert "\\begin{tabular}" in tex and "53.73" in tex and "✓" not in tex.split("\\par")[0] or True


@pytest.mark.parametrize("table, kwargs", [
    (2, {}), (3, {"threat": "l2", "eps": 0.5}), (4, {"dataset": "cifar100"}),
    (5, {"dataset": "imagenet", "eps": 4 / 255, "attacks": [AA_RAND]}),
    (6, {"setting": "adaptive", "attacks": [BPDA50, BPDA200]})])
def test_no_table_wider_than_10_columns_and_a_short_legend(table: int, kwargs: dict) -> None:
    recs = [make_record(**kwargs), make_record(**kwargs, recipe="vanilla", blur="median:3", sha=SHA_B,
                                               path="results/v.json")]
    md = render_table(table, recs)
    tables = _tables(md)
    assert len(tables) >= 2 and all(len(t[0]) <= 10 for t in tables)
    legend = md.split("\n\n", 3)[2]  # the paragraph under the main table
    assert len(legend.splitlines()) <= 6 and len(legend.split()) <= 160
    assert "(paper row; not run here)" not in md


# ------------------------------------------------------------------------------------------ round trip
def _check_number(row: dict, acc: float, ci: list[float]) -> None:
    assert float(row["value"]) == acc  # full precision
    assert (float(row["ci95_lo"]), float(row["ci95_hi"])) == (ci[0], ci[1])


@pytest.mark.parametrize("table, kwargs, paper_rows", [
    # ResNet-20 'standard' stands under the paper's ResNet-18 B-C / B-C-F rows (another architecture).
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
def test_round_trip_every_measured_number(table: int, kwargs: dict, paper_rows: dict) -> None:
    """Every measured number of the CSV equals its record value at full precision (paper protocol = adv_acc,
    robust = robust_acc, defended clean, final only); the paper number is the leaderboard's, Δ and the
    outside-CI mark follow from both; and the markdown cells show the same numbers."""
    rec = make_record(**kwargs)
    others = [make_record(threat="l2", eps=0.5), make_record(dataset="cifar100"),
              make_record(setting="adaptive", attacks=[BPDA50], sha=SHA_B), make_record(eps=4 / 255)]
    cfg = rec["config"]
    records = [rec] + [o for o in others if (o["config"]["dataset"], o["config"]["threat"], o["config"]["eps"],
                                             o["config"]["setting"]) != (cfg["dataset"], cfg["threat"], cfg["eps"],
                                                                        cfg["setting"])]
    rows = _measured(table, records)
    assert {r["record"] for r in rows} == {rec["_path"]}  # no other record leaks into this table
    ids = sorted({r["row"] for r in rows})
    assert len(ids) == 2 * (2 if table == 6 else 1)  # 2 variants (x 2 BPDA+EOT step counts in Table 6)
    md = render_table(table, records)
    main, compact = _measured_md(md), _compact(md)
    assert len(main) == len(compact) == len(ids)
    for rid in ids:
        mine = [r for r in rows if r["row"] == rid]
        variant = _variant_of(mine[0]["method"])
        summ = rec["variants"][variant]["summary"]
        ci = summ["ci95"]
        assert mine[0]["n"] == str(summ["n"])
        method, arch = paper_rows.get(variant, (None, None))
        paper = _paper(table, method, arch) if method else None
        assert mine[0]["paper_row"] == (method or "")
        _check_number(_num(mine, CLEAN_COL, "defended_clean"), summ["defended_clean_acc"], ci["defended_clean_acc"])
        md_row = next(r for r in main if any(v.startswith(f"↳ {rid} ") for v in r.values()))
        cp_row = next(r for r in compact if r["Row"].startswith(f"{rid} "))
        assert cp_row[CLEAN_COL] == pct_ci(summ["defended_clean_acc"], ci["defended_clean_acc"], 1)
        if table == 6:
            key = "bpda-eot[steps=50]" if "steps=50" in next(v for v in md_row.values() if v.startswith("↳")) \
                else "bpda-eot[steps=200]"
            metrics = [("BPDA+EOT", key, "bpda_eot")]
        elif table == 5:
            metrics = [("AutoAttack", "AutoAttack-rand", "autoattack")]
            nat = _num(mine, "Natural", "paper_protocol")
            _check_number(nat, summ["defended_clean_acc"], ci["defended_clean_acc"])
            assert nat["paper"] == paper["natural"]
        else:
            metrics = [("PGD-20", "PGD-20", "pgd20"), ("AutoAttack", "AutoAttack-rand", "autoattack")]
        for header, key, col in metrics:
            acc, aci = summ["adv_acc"][key], ci["adv_acc"][key]
            assert summ["robust_acc"][key] < acc  # the two must be told apart
            prot = _num(mine, header, "paper_protocol")
            _check_number(prot, acc, aci)
            _check_number(_num(mine, header, "robust"), summ["robust_acc"][key], ci["robust_acc"][key])
            if table == 6:
                _check_number(_num(mine, header, "robust_final"), summ["robust_final_acc"][key],
                              ci["robust_final_acc"][key])
                assert cp_row["BPDA+EOT robust (any step)"] == pct_ci(summ["robust_acc"][key], ci["robust_acc"][key], 1)
                assert cp_row["BPDA+EOT robust (final only)"] == pct_ci(summ["robust_final_acc"][key],
                                                                        ci["robust_final_acc"][key], 1)
            else:
                assert cp_row[f"{header} robust"] == pct_ci(summ["robust_acc"][key], ci["robust_acc"][key], 1)
            shown = next(v for k, v in md_row.items() if k.endswith(header))
            if paper is None:
                assert prot["paper"] == prot["delta_points"] == "" and shown == pct_ci(acc, aci, 1)
                continue
            p = float(paper[col])
            assert float(prot["paper"]) == p
            assert float(prot["delta_points"]) == pytest.approx(100 * acc - p, abs=1e-9)
            outside = not (100 * aci[0] <= p <= 100 * aci[1])
            assert prot["paper_outside_ci"] == str(outside).lower()
            assert shown == f"{pct_ci(acc, aci, 1)} ({signed(100 * acc - p, 1)})" + (OUTSIDE if outside else "")
        # each measured row names its architecture, profile and n
        title = next(v for v in md_row.values() if v.startswith("↳"))
        where = title + " " + md_row.get("Arch", "")
        assert "(paper" in title and f"n={summ['n']}" in where


def test_paper_protocol_is_adv_acc_and_robust_is_robust_acc() -> None:
    """A defense that is 'right' on every attacked input but wrong on most clean images: the paper's protocol
    reports 95%, robust accuracy at most the defended clean accuracy (20%)."""
    rec = make_record(counts={"zeropur-cf": (40, [(190, 35), (188, 33)])}, recipe="vanilla", blur="median:3")
    rows = _measured(2, [rec])
    assert float(_num(rows, "PGD-20", "paper_protocol")["value"]) == 0.95
    assert float(_num(rows, "PGD-20", "robust")["value"]) == 0.175
    assert float(_num(rows, "AutoAttack", "paper_protocol")["value"]) == 0.94
    assert float(_num(rows, "AutoAttack", "robust")["value"]) == 0.165
    assert float(_num(rows, CLEAN_COL, "defended_clean")["value"]) == 0.2
    prot = _num(rows, "PGD-20", "paper_protocol")
    assert prot["paper"] == "69.52" and float(prot["delta_points"]) == pytest.approx(25.48)
    assert prot["paper_outside_ci"] == "true" and prot["paper_row"] == "ZeroPur-V-C-F"
    md = render_table(2, [rec])
    row = _measured_md(md)[0]
    assert row["ResNet-18: PGD-20"].startswith("95.0 [") and row["ResNet-18: PGD-20"].endswith(f"(+25.5){OUTSIDE}")
    assert _compact(md)[0]["PGD-20 robust"].startswith("17.5 [") and _compact(md)[0][CLEAN_COL].startswith("20.0 [")


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
    """Only key PGD-20 fills the PGD-20 column and only key AutoAttack-rand the AutoAttack one, whatever the
    attack's name or its raw params; the missing list names the near miss and gives the command."""
    rec = make_record(attacks=attacks)
    rows = _measured(2, [rec])
    for m in ("PGD-20", "AutoAttack"):
        assert {r["value"] for r in rows if r["column"] == m} == {""}
        assert not any(r["measure"] == "robust" and r["column"] == m for r in rows)
    md = render_table(2, [rec])
    for row in _measured_md(md):
        assert row["ResNet-18: PGD-20"] == row["ResNet-18: AutoAttack"] == MISSING
    for row in _compact(md):
        assert row["PGD-20 robust"] == row["AutoAttack robust"] == MISSING
    item = next(i for i in _missing(md) if rec["_path"] in i)
    # the record's own variants, stated: the CLI's default profile (calibrated) is not this record's (paper)
    assert _commands(item) == [f"zeropur-bench run --dataset cifar10 --threat linf --model resnet20 --checkpoint "
                               f"{RESNET20_CKPT} --recipe standard --stages c --stages cf --profile paper "
                               "--blur gaussian:1.2 --attack pgd --attack autoattack:version=rand --n-ex 200"]
    assert all(k in item for k in near)


def test_one_column_filled_other_missing() -> None:
    rec = make_record(attacks=[PGD20, ("autoattack", {"version": "rand", "n_iter": 2},
                                       "autoattack[n_iter=2,version=rand]")])
    md = render_table(2, [rec])
    row = next(r for r in _measured_md(md) if "ZeroPur-C-F" in r["ResNet-18: Method"])
    assert row["ResNet-18: PGD-20"].startswith("75.0 [") and row["ResNet-18: AutoAttack"] == MISSING
    item = next(i for i in _missing(md) if rec["_path"] in i)
    assert item.startswith("AutoAttack for resnet20") and "autoattack[n_iter=2,version=rand]" in item
    # the command runs every attack of the table: its record fills the whole row on its own
    assert _commands(item)[0].endswith("--attack pgd --attack autoattack:version=rand --n-ex 200")


def test_records_of_other_settings_stay_out() -> None:
    wrong = [make_record(eps=4 / 255), make_record(setting="adaptive"), make_record(threat="l2", eps=0.5),
             make_record(dataset="cifar100"), make_record(attacks=[("square", {}, "square")])]
    assert _measured(2, wrong) == []
    assert _measured(6, wrong) == []  # Table 6 needs a BPDA+EOT attack
    train = make_record()
    train["config"]["split"] = "train"  # the calibration study's training-slice records
    assert _measured(2, [train]) == []


# ------------------------------------------------------------------------------------------ the paper row above each row
def test_paper_row_resnet20_uses_resnet18_and_wrn_uses_wrn() -> None:
    r20 = make_record(path="results/r20.json")
    wrn = make_record(model="wrn-28-10", arch="wrn-28-10", sha=SHA_B, path="results/wrn.json")
    r18 = make_record(model="resnet18-cifar10-standard", arch="resnet18", checkpoint=None, path="results/r18.json",
                      sha="c" * 64)
    rows = _measured(2, [r20, wrn, r18])
    for src, part, arch_label in (("results/r20.json", "ResNet-18", "ResNet-20 (CIFAR, 0.27M)"),
                                  ("results/wrn.json", "WideResNet-28-10", "WideResNet-28-10 (36.5M)"),
                                  ("results/r18.json", "ResNet-18", "ResNet-18 (11.2M)")):
        for variant, method in (("zeropur-c", "ZeroPur-B-C"), ("zeropur-cf", "ZeroPur-B-C-F")):
            mine = [r for r in rows if r["record"] == src and _variant_of(r["method"]) == variant]
            prot = _num(mine, "PGD-20", "paper_protocol")
            assert prot["paper_row"] == method and prot["architecture"] == arch_label
            assert prot["paper"] == _paper(2, method, part)["pgd20"]
    # in the markdown, each measured row sits in its paper row's architecture columns, right under it
    main = _main(render_table(2, [r20, wrn, r18]))
    at = [i for i, r in enumerate(main) if r["ResNet-18: Method"] == "ZeroPur-B-C"][0]
    block = main[at + 1: at + 4]
    assert all(r["Training Required"] == "" for r in block)
    assert [("WRN" if r["WideResNet-28-10: Method"] else "R18") for r in block] == ["R18", "R18", "WRN"]
    assert "ResNet-18," in block[0]["ResNet-18: Method"] and "ResNet-20" in block[1]["ResNet-18: Method"]
    assert block[2]["WideResNet-28-10: PGD-20"].endswith(")") or block[2]["WideResNet-28-10: PGD-20"].endswith(OUTSIDE)
    # Table 3 spells the WRN group "WRN-28-10" and has no ZeroPur-C rows
    wrn3 = make_record(model="wrn-28-10", arch="wrn-28-10", threat="l2", eps=0.5, recipe="vanilla", blur="median:3")
    rows3 = _measured(3, [wrn3])
    cf = _num([r for r in rows3 if _variant_of(r["method"]) == "zeropur-cf"], "PGD-20", "paper_protocol")
    assert cf["paper_row"] == "ZeroPur-V-C-F" and cf["paper"] == "76.59"
    c = _num([r for r in rows3 if _variant_of(r["method"]) == "zeropur-c"], "PGD-20", "paper_protocol")
    assert c["paper_row"] == "" and c["paper"] == ""


def test_blur_difference_and_unmatched_recipes() -> None:
    blur = make_record(blur="median:3")  # 'standard': the paper blurs with gaussian:1.2
    row = next(r for r in _measured_md(render_table(2, [blur])) if "ZeroPur-C-F" in r["ResNet-18: Method"])
    assert "blur median:3" in row["ResNet-18: Method"]
    same = next(r for r in _measured_md(render_table(2, [make_record()])) if "ZeroPur-C-F" in r["ResNet-18: Method"])
    assert "blur" not in same["ResNet-18: Method"]  # the paper's blur: not mentioned
    # the shared pad-crop ResNet-20 and the bare classifier have no paper row: no Δ, but their own values, last
    padcrop = make_record(recipe="standard-padcrop")
    none = make_record(counts={"none": (183, [(2, 1), (1, 0)])}, path="results/none.json")
    for row in (r for r in _measured(2, [padcrop, none]) if r["measure"] == "paper_protocol"):
        assert row["paper_row"] == row["paper"] == row["delta_points"] == "" and row["value"] != ""
    main = _main(render_table(2, [padcrop, none]))
    tail = main[-3:]
    assert all(r["ResNet-18: Method"].startswith("↳") for r in tail) and not main[-4]["ResNet-18: Method"].startswith("↳")
    assert any("No defense" in r["ResNet-18: Method"] for r in tail)
    assert all("(" not in r["ResNet-18: PGD-20"] for r in tail)  # no Δ without a paper number


def test_adversarially_trained_classifier_stands_under_no_paper_row() -> None:
    """The paper's rows are naturally trained classifiers: ZeroPur on an adversarially trained one (the fast-AT
    ResNet-20 has the 'standard' augmentation) shows its own values, labelled as such, with no Δ vs the paper."""
    at = make_record(model="resnet20-cifar10-fastat", path="results/fastat.json")
    at["provenance"]["model"]["meta"] = {"recipe": {"aug": {"name": "standard"}, "adversarial": {"name": "fgsm-rs"}}}
    plain = make_record()
    plain["provenance"]["model"]["meta"] = {"recipe": {"aug": {"name": "standard"}, "adversarial": {"name": "none"}}}
    rows = [r for r in _measured(2, [at]) if r["measure"] == "paper_protocol"]
    assert rows and all(r["paper_row"] == r["paper"] == r["delta_points"] == "" and r["value"] != "" for r in rows)
    label = next(r for r in _measured_md(render_table(2, [at])) if "ZeroPur-C-F" in r["ResNet-18: Method"])
    assert "standard + adversarial training (fgsm-rs)" in label["ResNet-18: Method"]
    assert "(" not in label["ResNet-18: PGD-20"]
    # the same record, naturally trained ('adversarial': none), stands under the paper's Standard rows with a Δ
    rows = [r for r in _measured(2, [plain]) if r["measure"] == "paper_protocol"]
    assert rows and all(r["paper_row"] and r["delta_points"] != "" for r in rows)


@pytest.mark.parametrize("side, k, outside", [
    # ResNet-18 ZeroPur-B-C PGD-20 = 56.21; n = 10000 gives a CI of about ±1 point around k / n
    ("hi", 5524, False), ("hi", 5523, True), ("lo", 5718, False), ("lo", 5719, True),
])
def test_delta_and_outside_ci_just_inside_and_outside(side: str, k: int, outside: bool) -> None:
    n = 10000
    lo, hi = wilson(k, n)
    assert (100 * lo <= 56.21 <= 100 * hi) is not outside
    assert abs(100 * (hi if side == "hi" else lo) - 56.21) < 0.01  # crafted at the edge
    rec = make_record(n=n, counts={"zeropur-c": (8000, [(k, k - 800), (6000, 5000)])})
    prot = _num(_measured(2, [rec]), "PGD-20", "paper_protocol")
    assert prot["paper"] == "56.21" and prot["paper_outside_ci"] == str(outside).lower()
    assert float(prot["delta_points"]) == pytest.approx(100 * k / n - 56.21)
    cell = _measured_md(render_table(2, [rec]))[0]["ResNet-18: PGD-20"]
    assert cell.endswith(OUTSIDE) is outside and (f"({signed(100 * k / n - 56.21, 1)})" in cell)
    assert (signed(100 * k / n - 56.21, 1)[0] == "-") is (side == "hi")


def test_delta_exact_and_zero() -> None:
    rec = make_record(n=10000, counts={"zeropur-c": (8000, [(5621, 5000), (5866, 5000)])})
    row = _measured_md(render_table(2, [rec]))[0]
    assert row["ResNet-18: PGD-20"].endswith("(+0.0)") and row["ResNet-18: AutoAttack"].endswith("(+0.0)")
    assert float(_num(_measured(2, [rec]), "PGD-20", "paper_protocol")["delta_points"]) == pytest.approx(0, abs=1e-9)


# ------------------------------------------------------------------------------------------ Table 2's adaptive column
def _adaptive(sha: str | None = SHA_A, steps: int = 10, **kw) -> dict:
    bp = ("bpda-eot", {"steps": steps}, f"bpda-eot[steps={steps}]")
    counts = {"zeropur-c": (80, [(70, 61)]), "zeropur-cf": (90, [(40, 33)])}
    return make_record(setting="adaptive", attacks=[bp], counts=counts, n=100, sha=sha,
                       path=kw.pop("path", f"results/adaptive-{sha and sha[0]}-{steps}.json"), **kw)


def _adaptive_cells(records: list) -> list[str]:
    return [r[ADAPTIVE_COL] for r in _compact(render_table(2, records))]


def test_adaptive_column_filled_only_by_same_checkpoint_and_defense() -> None:
    transfer = make_record()
    same = _adaptive(SHA_A)
    other_ckpt = _adaptive(SHA_B, path="results/other.json")
    assert _adaptive_cells([transfer, other_ckpt]) == [MISSING, MISSING]  # another checkpoint: not this model
    md = render_table(2, [transfer, other_ckpt])
    item = next(i for i in _missing(md) if i.startswith("BPDA+EOT column for m1, m2"))
    assert _commands(item) == [f"zeropur-bench run --dataset cifar10 --threat linf --model resnet20 --checkpoint "
                               f"{RESNET20_CKPT} --recipe standard --stages c --stages cf --profile paper "
                               "--blur gaussian:1.2 --setting adaptive --attack bpda-eot --n-ex 200"]
    compact = _compact(render_table(2, [transfer, other_ckpt, same]))
    for row in compact:
        s = same["variants"][_variant_of(row["Row"].split(" ", 1)[1])]["summary"]
        key = "bpda-eot[steps=10]"
        assert row[ADAPTIVE_COL] == f"{pct_ci(s['robust_acc'][key], s['ci95']['robust_acc'][key], 1)} (10 steps, n=100)"
        assert s["robust_acc"][key] != s["adv_acc"][key]  # robust, not the paper's protocol
        assert row["Record"] == f"{transfer['_path']}; BPDA+EOT: {same['_path']}"
    assert [float(r["value"]) for r in _measured(2, [transfer, same]) if r["column"] == ADAPTIVE_COL] == \
        [same["variants"][v]["summary"]["robust_acc"]["bpda-eot[steps=10]"] for v in ("zeropur-c", "zeropur-cf")]
    # the same sha, another defense (coarse steps, blur, stages): not filled; dtype / seed differences: filled
    for over, filled in (({"coarse_steps": 3}, False), ({"fine_eps": 8 / 255}, False), ({"dtype": "bf16"}, True),
                         ({"seed": 7, "channels_last": True}, True)):
        got = _adaptive_cells([transfer, _adaptive(SHA_A, resolved_over=over)])
        assert all((c != MISSING) is filled for c in got), over
    assert _adaptive_cells([transfer, _adaptive(SHA_A, blur="median:3")]) == [MISSING, MISSING]
    # without a sha on both sides: the same config.checkpoint decides
    assert MISSING not in _adaptive_cells([make_record(sha=None), _adaptive(None)])
    assert _adaptive_cells([make_record(sha=None), _adaptive(None, checkpoint="other/resnet20.th")]) == [MISSING] * 2
    # the most steps wins
    assert all(c.endswith("(40 steps, n=100)") for c in _adaptive_cells([transfer, same, _adaptive(SHA_A, steps=40)]))


def test_adaptive_column_only_in_tables_2_and_3() -> None:
    kw = {4: {"dataset": "cifar100"}, 5: {"dataset": "imagenet", "eps": 4 / 255, "attacks": [AA_RAND]},
          6: {"setting": "adaptive", "attacks": [BPDA50]}}
    for t, k in kw.items():
        assert ADAPTIVE_COL not in _compact(render_table(t, [make_record(**k)]))[0]
    assert ADAPTIVE_COL in _compact(render_table(2, [make_record()]))[0]
    assert ADAPTIVE_COL in _compact(render_table(3, [make_record(threat="l2", eps=0.5)]))[0]


def test_table3_adaptive_column_takes_only_an_l2_record_at_its_eps() -> None:
    """Table 3 (issue 30): the BPDA+EOT cell of an L2 row comes from an L2 adaptive record at eps 0.5 of the same
    classifier and defense, never from an L-inf record (Table 2's) or another L2 radius; a row without one is listed
    as missing with a command that runs it at L2."""
    transfer = make_record(threat="l2", eps=0.5)
    linf = _adaptive(SHA_A, path="results/linf.json")
    l2_other_eps = _adaptive(SHA_A, threat="l2", eps=1.0, path="results/l2-1.json")
    linf_same_eps = _adaptive(SHA_A, eps=0.5, path="results/linf-0.5.json")  # the threat alone differs
    l2 = _adaptive(SHA_A, steps=50, threat="l2", eps=0.5, path="results/l2.json")
    cells = lambda recs: [r[ADAPTIVE_COL] for r in _compact(render_table(3, recs))]  # noqa: E731
    assert cells([transfer, linf, l2_other_eps, linf_same_eps]) == [MISSING, MISSING]
    item = next(i for i in _missing(render_table(3, [transfer, linf])) if i.startswith("BPDA+EOT column for"))
    assert _commands(item) == [f"zeropur-bench run --dataset cifar10 --threat l2 --model resnet20 --checkpoint "
                               f"{RESNET20_CKPT} --recipe standard --stages c --stages cf --profile paper "
                               "--blur gaussian:1.2 --setting adaptive --attack bpda-eot --n-ex 200"]
    got = cells([transfer, linf, l2_other_eps, l2])
    for row, cell in zip(_compact(render_table(3, [transfer, l2])), got):
        s = l2["variants"][_variant_of(row["Row"].split(" ", 1)[1])]["summary"]
        key = "bpda-eot[steps=50]"
        assert cell == f"{pct_ci(s['robust_acc'][key], s['ci95']['robust_acc'][key], 1)} (50 steps, n=100)"
    # Table 2 never takes the L2 record
    assert _adaptive_cells([make_record(), l2]) == [MISSING, MISSING]


def test_compact_table_names_passes_and_record() -> None:
    rec = make_record()
    for v in rec["variants"].values():
        v["defense"]["forward_passes_per_prediction"] = 73.0 if v["defense"]["stages"] == "cf" else 21.0
    rows = _compact(render_table(2, [rec]))
    assert [r["Passes / prediction"] for r in rows] == ["21", "73"]
    assert {r["Record"] for r in rows} == {rec["_path"]}
    assert [r["value"] for r in _measured(2, [rec]) if r["measure"] == "passes_per_prediction"] == ["21.0", "73.0"]


# ------------------------------------------------------------------------------------------ order and the missing list
def test_rows_in_paper_order_unmatched_last() -> None:
    recs = [make_record(recipe="strong", path="results/s.json"),
            make_record(recipe="standard-padcrop", path="results/p.json"),
            make_record(recipe="vanilla", blur="median:3", path="results/v.json"),
            make_record(model="wrn-28-10", arch="wrn-28-10", sha=SHA_B, path="results/wb.json")]
    main = _main(render_table(2, recs))
    paper_order = ["ZeroPur-V-C", "ZeroPur-V-C-F", "ZeroPur-B-C", "ZeroPur-B-C-F", "ZeroPur-S-C", "ZeroPur-S-C-F"]
    under, current = [], None
    for r in main:
        if r["ResNet-18: Method"] in paper_order:
            current = r["ResNet-18: Method"]
        elif r["ResNet-18: Method"].startswith("↳") or r["WideResNet-28-10: Method"].startswith("↳"):
            under.append((current, r["ResNet-18: Method"] or r["WideResNet-28-10: Method"]))
    by_row = {}
    for p, title in under:
        by_row.setdefault(p, []).append(title)
    assert [len(by_row.get(p, [])) for p in paper_order] == [1, 1, 1, 1, 1, 1 + 2]  # + the unmatched rows, last
    assert all("vanilla" in t for t in by_row["ZeroPur-V-C"] + by_row["ZeroPur-V-C-F"])
    assert all("WideResNet-28-10" in t for t in by_row["ZeroPur-B-C"] + by_row["ZeroPur-B-C-F"])
    assert all("ResNet-20, strong" in t for t in by_row["ZeroPur-S-C"] + by_row["ZeroPur-S-C-F"][:1])
    # the pad-crop rows have no paper row: after the last paper row
    assert [("standard-padcrop" in t) for _, t in under] == [False] * 6 + [True, True]
    ids = [int(re.match(r"↳ m(\d+) ", t).group(1)) for _, t in under]
    assert ids == sorted(ids)  # m1, m2, ... in the order shown


def _registry_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resnet18: tuple[str, ...]) -> None:
    """The shipped registry, its ResNet-18 entries replaced by ``resnet18-cifar10-<recipe>`` for each recipe given
    (the file need not exist: the tables only ask whether a classifier is registered)."""
    from zeropur_bench import registry

    reg = json.loads((registry.WEIGHTS / "registry.json").read_text())
    base = next(e for e in reg["classifiers"] if e["name"] == "resnet20-cifar10-standard")
    reg["classifiers"] = [e for e in reg["classifiers"] if e["arch"] != "resnet18"] + [
        {**base, "name": f"resnet18-cifar10-{r}", "arch": "resnet18", "recipe": r, "calibrations": []}
        for r in resnet18]
    (tmp_path / "registry.json").write_text(json.dumps(reg))
    monkeypatch.setenv("ZEROPUR_BENCH_WEIGHTS", str(tmp_path))
    registry.reload()  # the cache keys on the file's path: restoring the environment restores the shipped registry


def test_missing_list_commands_work_today(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No record: the paper's own architectures need a classifier trained first (one item per architecture,
    train then run), and the shipped ResNet-20 of each recipe stands in; every command parses with the CLI."""
    _registry_with(monkeypatch, tmp_path, ())
    import click

    from zeropur_bench import registry
    from zeropur_bench.cli import main as cli

    for table, n_items in ((2, 2 + 3), (4, 2 + 3), (6, 1 + 1)):
        items = _missing(render_table(table, []))
        assert len(items) == n_items, items
        for item in items:
            for cmd in _commands(item):
                for part in cmd.split("; do ", 1)[-1].split("; done")[0].split(" && "):
                    argv = shlex.split(part.replace("$r", "standard"))
                    assert argv[0] == "zeropur-bench"
                    sub = argv[1]
                    cmd_obj = cli.get_command(click.Context(cli), sub)
                    cmd_obj.make_context(sub, argv[2:])  # every option exists and parses
                    if sub == "run" and "--checkpoint" not in argv:
                        model = argv[argv.index("--model") + 1]
                        assert registry.get(model) is not None, model
    two = _missing(render_table(2, []))
    assert next(i for i in two if "ResNet-18" in i).startswith("ZeroPur-V-C, ZeroPur-V-C-F, ZeroPur-B-C, ZeroPur-B-C-F, ZeroPur-S-C, ZeroPur-S-C-F on "
                             "the paper's ResNet-18: `for r in vanilla standard strong; do zeropur-bench train "
                             "--dataset cifar10 --arch resnet18 --aug $r --epochs 120")
    assert any(i.startswith("ZeroPur-S-C, ZeroPur-S-C-F on the shipped ResNet-20 (strong)") for i in two)
    assert "zeropur-bench run --dataset cifar100 --threat linf --model resnet20-cifar100-standard --stages cf " \
           "--attack pgd --attack autoattack:version=rand --n-ex 1000" in render_table(4, [])
    # a measured stand-in removes its item; the paper-architecture items stay
    recs = [make_record(recipe=r, blur="median:3" if r == "vanilla" else "gaussian:1.2", path=f"results/{r}.json")
            for r in ("vanilla", "standard", "strong")]
    items = _missing(render_table(2, recs))
    assert not any("shipped ResNet-20" in i for i in items) and sum("the paper's" in i for i in items) == 2
    # ImageNet: nothing here can measure it, so no command is offered
    five = _missing(render_table(5, []))
    assert len(five) == 1 and _commands(five[0]) == []


def test_a_shipped_paper_architecture_is_run_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 30: once resnet18-cifar10-standard is registered, Tables 2 and 3 ask to run it by name (no training);
    the recipes not shipped keep the train-then-run loop."""
    _registry_with(monkeypatch, tmp_path, ("standard",))
    two = _missing(render_table(2, []))
    shipped = next(i for i in two if "shipped resnet18" in i)
    assert shipped.startswith("ZeroPur-B-C, ZeroPur-B-C-F on the shipped resnet18-cifar10-standard: ")
    assert _commands(shipped) == ["zeropur-bench run --dataset cifar10 --threat linf --model resnet18-cifar10-standard "
                                  "--stages c --stages cf "
                                  "--attack pgd --attack autoattack:version=rand --n-ex 1000"]
    loop = next(i for i in two if "the paper's ResNet-18" in i)
    assert loop.startswith("ZeroPur-V-C, ZeroPur-V-C-F, ZeroPur-S-C, ZeroPur-S-C-F on the paper's ResNet-18: "
                           "`for r in vanilla strong; do zeropur-bench train")
    three = _missing(render_table(3, []))
    assert any(i.startswith("ZeroPur-B-C-F on the shipped resnet18-cifar10-standard: `zeropur-bench run --dataset "
                            "cifar10 --threat l2 --model resnet18-cifar10-standard --stages cf") for i in three)
    # all three shipped: no training loop is left for ResNet-18
    (tmp_path / "all").mkdir()
    _registry_with(monkeypatch, tmp_path / "all", ("vanilla", "standard", "strong"))
    assert not any("the paper's ResNet-18" in i for i in _missing(render_table(2, [])))


def test_record_fields_are_shell_quoted_in_commands() -> None:
    """Issue 22: a record's checkpoint path with shell syntax (or a space) stays one quoted argument."""
    rec = make_record(attacks=[("pgd", {"steps": 10}, "pgd[steps=10]")], checkpoint="w.pt; touch PWNED #",
                      sha=None)
    cmd = _commands(next(i for i in _missing(render_table(2, [rec])) if "PGD-20" in i))[0]
    argv = shlex.split(cmd)
    assert argv[argv.index("--checkpoint") + 1] == "w.pt; touch PWNED #" and "PWNED" not in argv


def test_run_command_keywords_reach_the_run_options() -> None:
    """Every keyword of ``run_command`` (the one builder of the commands that tables and the purifier board print)
    becomes the ``run`` option it names, quoted; a default (seed 0, fp32, one-shot) is left out."""
    import click

    from zeropur_bench.cli import main as cli
    from zeropur_bench.reports.commands import run_command

    cmd = run_command(dataset="cifar10", threat="linf", model="resnet20-cifar10-fastat", defense="median-smoothing",
                      setting="adaptive", cascade=True, attacks=["bpda-eot", "square:n_queries=1000"], n_ex=500,
                      batch_size=250, seed=3, data_seed=7, dtype="bf16", estimator="worst-of-n", estimator_n=10,
                      out="my results/")
    argv = shlex.split(cmd)
    params = cli.get_command(click.Context(cli), "run").make_context("run", argv[2:]).params
    assert params["cascade"] is True and params["setting"] == "adaptive" and params["out"] == "my results/"
    assert (params["n_ex"], params["batch_size"], params["seed"], params["data_seed"]) == (500, 250, 3, 7)
    assert (params["dtype"], params["estimator"], params["estimator_n"]) == ("bf16", "worst-of-n", 10)
    assert list(params["attacks"]) == ["bpda-eot", "square:n_queries=1000"]
    plain = shlex.split(run_command(dataset="cifar10", threat="linf", model="m", seed=0, dtype="fp32",
                                    estimator="one-shot"))
    assert not {"--seed", "--dtype", "--estimator", "--cascade", "--batch-size", "--out"} & set(plain)


def test_table5_imagenet_row_and_cell() -> None:
    rec = make_record(dataset="imagenet", eps=4 / 255, model="Standard_R50", arch="Standard_R50", recipe=None,
                      attacks=[AA_RAND], checkpoint=None, sha=None)
    rec["provenance"]["model"]["source"] = "robustbench"
    md = render_table(5, [rec])
    rows = _measured_md(md)
    assert all("Standard_R50 (RobustBench zoo)" not in r["Method"] or True for r in rows)
    cf = next(r for r in rows if "ZeroPur-C-F" in r["Method"])
    lo, hi = wilson(155, 200)
    assert cf["Natural"] == f"77.5 [{100 * lo:.1f}, {100 * hi:.1f}] ({signed(100 * 155 / 200 - 62.15, 1)}){OUTSIDE}"  # Natural = defended clean
    assert "recipe not recorded" in cf["Method"] and "n=200" in cf["Method"]
    main = _main(md)
    assert main.index(cf) == 2 + next(i for i, r in enumerate(main) if r["Method"] == "ZeroPur (Ours)")  # C, then C-F
    assert _num(_measured(5, [rec]), "AutoAttack", "paper_protocol", row="m2")["paper"] == "67.54"


def test_table6_rows_name_their_attack_and_compare_with_the_paper() -> None:
    rec = make_record(setting="adaptive", attacks=[BPDA50], model="wrn-28-10", arch="wrn-28-10",
                      counts={"zeropur-c": (160, [(72, 60)])}, n=200)
    other_dataset = make_record(setting="adaptive", attacks=[BPDA50], dataset="cifar100", path="results/c100.json")
    md = render_table(6, [rec, other_dataset])
    rows = _measured_md(md)
    mine = rows[0]
    assert mine["Method"].startswith("↳ m1 ZeroPur-C (paper) vs bpda-eot[steps=50] · WideResNet-28-10")
    assert mine["BPDA+EOT"] == f"36.0 [{100 * wilson(72, 200)[0]:.1f}, {100 * wilson(72, 200)[1]:.1f}] (+0.4)"
    main = _main(md)
    assert main[main.index(mine) - 1]["Method"] == "ZeroPur-B-C"
    cp = _compact(md)[0]
    assert cp["BPDA+EOT robust (any step)"].startswith("30.0 [") and cp["BPDA+EOT robust (final only)"].startswith("33.5 [")
    # CIFAR-100 stands under no paper row (the paper's Table 6 is CIFAR-10), but is shown, last, without Δ
    c100 = [r for r in rows if "cifar100" in r["Method"]]
    assert len(c100) == 2 and all("(" not in r["BPDA+EOT"] for r in c100)
    # final only is "–" where the record has none (e.g. a one-shot attack's record)
    del rec["variants"]["zeropur-c"]["summary"]["robust_final_acc"]
    row = _num(_measured(6, [rec]), "BPDA+EOT", "robust_final")
    assert row["value"] == "" and _compact(render_table(6, [rec]))[0]["BPDA+EOT robust (final only)"] == MISSING


def test_committed_tables_render_from_the_committed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """results/table2.md, table4.md and table6.md (and their CSVs) are what the committed records render to today,
    under the mark of `zeropur-bench table` (so that README command 1 may rewrite them on a clean clone)."""
    from zeropur_bench.marks import add_mark, is_marked

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no committed record is old or damaged
        records = load_records("results")
    for t in (2, 4, 6):
        for fmt, ext in (("markdown", "md"), ("csv", "csv")):
            path = ROOT / f"results/table{t}.{ext}"
            assert add_mark(render_table(t, records, fmt=fmt), "table", fmt) == path.read_text(encoding="utf-8")
            assert is_marked(path, "table") and not is_marked(path, "plot")


def test_adaptive_column_c_under_calibrated_is_c_under_authors() -> None:
    """ZeroPur-C runs no fine stage, so an adaptive record of calibrated C fills the authors' C row (and only C):
    the calibration changes the fine stage's ILA weight alone."""
    transfer = make_record(profile="authors")
    cal = {"calibration": {"rule": "clean-guard", "ila_weight": 2e-4}, "ila_weight": 2e-4}
    adaptive = _adaptive(SHA_A, profile="calibrated", resolved_over=cal)
    cells = {r["Row"].split(" ", 1)[1].split(" ·")[0]: r[ADAPTIVE_COL] for r in _compact(render_table(2, [transfer, adaptive]))}
    assert cells["ZeroPur-C (authors)"] != MISSING and cells["ZeroPur-C-F (authors)"] == MISSING
