"""Issue 32, items 2 and 3: every committed record's ``model_info`` is RobustBench's view of the record, exports in
RobustBench's layout, and RobustBench's own ``generate_leaderboard``, ``get_leaderboard_latex`` and
``get_leaderboard_bibtex`` run on the export. No defended entry ranks above the worst case its records measured;
no transfer-only entry has a ranked number. Reads the committed JSON records only: no model, no attack."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main
from zeropur_bench.records import RecordView, VariantView, model_info_block, scan_records
from zeropur_bench.reports.leaderboard import TRANSFER_DIR, leaderboard_entries
from zeropur_bench.reports.match import same_defense, same_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
RECORDS = scan_records(RESULTS)
RANKED = ("external", "autoattack_acc")


def test_the_committed_records_are_found():
    assert len(RECORDS) >= 40 and sum(r.setting == "adaptive" for r in RECORDS) >= 10


def _pct(acc: float) -> str:
    return f"{100 * acc:.2f}"


def _own_autoattack(raw: dict, vkey: str) -> list[float]:
    """AutoAttack columns with AutoAttack's own settings that attacked every image the defense got right."""
    v = raw["variants"][vkey]
    out = []
    for a in raw["config"]["attacks"]:
        if a["family"] != "autoattack" or not a["key"].startswith("AutoAttack-"):
            continue
        attacked = (v["examples"].get("attacked") or {}).get(a["key"])
        if attacked is None or all(t or not d for t, d in zip(attacked, v["examples"]["defended_clean_correct"])):
            out.append(v["summary"]["robust_acc"][a["key"]])
    return out


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: str(Path(r.path).relative_to(RESULTS)))
def test_committed_model_info_is_robustbench_view_of_the_record(rec: RecordView):
    raw = rec.raw
    mi = raw["model_info"]
    assert mi == model_info_block(raw)  # migrated: the stored block is the view derived from the record
    v = raw["variants"][raw["config"]["primary_variant"]]
    s = v["summary"]
    assert None not in mi.values()  # keys absent rather than null (RobustBench's readers choke on null)
    for k in ("link", "name", "authors", "venue", "architecture", "eps", "clean_acc", "footnote", "id"):
        assert isinstance(mi[k], str) and mi[k], k
    assert mi["venue"] == "N/A" and mi["authors"] == "N/A" and mi["eps"] == {"linf": "8/255", "l2": "0.5"}[rec.threat]
    assert re.fullmatch(r"(ResNet|PreActResNet|WideResNet)-\d+(-\d+)?", mi["architecture"]), mi["architecture"]
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", mi["id"])
    assert mi["clean_acc"] == _pct(s["defended_clean_acc"])  # the DEFENDED model's clean accuracy
    assert mi["number_forward_passes"] == round(v["defense"]["forward_passes_per_prediction"])
    if rec.setting == "adaptive" and rec.split == "test":
        assert mi["external"] == _pct(s["worst_case_acc"])  # per-example worst case over the adaptive attacks
        aa = _own_autoattack(raw, raw["config"]["primary_variant"])
        assert mi.get("autoattack_acc") == (_pct(min(aa)) if aa else None)
        assert float(mi["external"]) <= min([float(mi["clean_acc"])] + [100 * a for a in s["robust_acc"].values()])
    else:  # transfer (or training images): nothing RobustBench ranks by, flagged, and said why
        assert not set(RANKED) & set(mi)
        assert mi["unreliable"] is True and "no ranked number" in mi["footnote"]
        if rec.setting == "transfer":
            assert "not a robustness claim" in mi["footnote"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """``zeropur-bench export --model-info <tmp>/model_info`` on the committed records."""
    root = tmp_path_factory.mktemp("export")
    res = CliRunner().invoke(main, ["export", "--model-info", str(root / "model_info"), "--results", str(RESULTS)])
    assert res.exit_code == 0, res.output
    return root / "model_info"


def _files(export: Path) -> tuple[list[Path], list[Path]]:
    ranked = sorted(p for p in export.glob("*/*/*.json") if p.parts[-3] != TRANSFER_DIR)
    transfer = sorted((export / TRANSFER_DIR).glob("*/*/*.json"))
    return ranked, transfer


def _evaluations(info: dict) -> list[tuple[RecordView, VariantView]]:
    """The (record, variant) pairs an exported entry names, read back from the record files."""
    out = []
    for ev in info["zeropur_bench"]["evaluations"]:
        rv = RecordView.read(ev["record"])
        out.append((rv, rv.variants[ev["variant"]]))
    return out


def test_every_record_variant_exports_once(export):
    ranked, transfer = _files(export)
    assert ranked and transfer
    seen = [(str(Path(e["record"]).resolve()), e["variant"]) for p in ranked + transfer
            for e in json.loads(p.read_text())["zeropur_bench"]["evaluations"]]
    expected = [(str(Path(r.path).resolve()), k) for r in RECORDS for k in r.variants]
    assert sorted(seen) == sorted(expected)
    for p in ranked + transfer:  # each file name is its entry's id, and an entry is one defended model
        info = json.loads(p.read_text())
        assert info["id"] == p.stem and None not in info.values()
        (r0, v0), *rest = _evaluations(info)
        for rv, vv in rest:  # the tables' own notion of "the same classifier and defense" agrees
            assert same_model(r0, rv) and (rv.dataset, rv.threat, rv.eps, rv.split) == (r0.dataset, r0.threat,
                                                                                        r0.eps, r0.split)
            assert same_defense(v0, vv) if v0.stages is not None else (vv.name, vv.blur) == (v0.name, v0.blur), p.name


def test_no_entry_ranks_above_the_worst_case_its_records_measured(export):
    ranked, _ = _files(export)
    for p in ranked:
        info = json.loads(p.read_text())
        value = float(info["external"]) if "external" in info else float(info["autoattack_acc"])
        adaptive = [v for rv, v in _evaluations(info) if rv.setting == "adaptive"]
        assert adaptive, p.name  # a ranked entry has an adaptive evaluation behind it
        assert value == min(float(_pct(v.summary["worst_case_acc"])) for v in adaptive), p.name
        for v in adaptive:  # never above any of its adaptive records, per attack or worst case
            assert value <= 100 * v.summary["worst_case_acc"] + 1e-9, p.name
            assert all(value <= 100 * a + 1e-9 for a in v.summary["robust_acc"].values()), p.name
        if "autoattack_acc" in info:
            assert value <= float(info["autoattack_acc"])


def test_no_transfer_only_entry_has_a_ranked_number(export):
    _, transfer = _files(export)
    for p in transfer:
        info = json.loads(p.read_text())
        assert not set(RANKED) & set(info), p.name
        assert info["unreliable"] is True and "not a robustness claim" in info["footnote"]
        assert all(rv.setting == "transfer" for rv, _ in _evaluations(info))
    # and every defended model that was only ever transferred is in transfer-only/, never ranked
    only_transfer = {e.id for e in leaderboard_entries(RECORDS) if all(ev.record.setting == "transfer"
                                                                        for ev in e.evaluations)}
    assert only_transfer == {p.stem for p in transfer}


def _latex_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.rstrip("\\").split("&")] for line in text.splitlines() if line.strip()]


def test_robustbench_leaderboard_functions_run_on_the_export(export, monkeypatch):
    """RobustBench's own readers: generate_leaderboard(dataset, threat, DIR), and get_leaderboard_latex /
    get_leaderboard_bibtex, which read ./model_info from the working directory."""
    import jinja2
    import robustbench.leaderboard as rb_leaderboard
    import robustbench.utils as rb_utils
    from robustbench.leaderboard.template import generate_leaderboard as upstream_generate

    from zeropur_bench.robustbench import generate_leaderboard

    monkeypatch.chdir(export.parent)
    ranked, _ = _files(export)
    folders = sorted({(p.parts[-3], p.parts[-2]) for p in ranked})
    assert ("cifar10", "Linf") in folders
    if not (Path(rb_leaderboard.__file__).parent / "leaderboard.html.j2").exists():
        # robustbench 1.1.1 does not ship its template: its function fails on any input, hence the fallback
        with pytest.raises(jinja2.TemplateNotFound):
            upstream_generate(*folders[0], "model_info")
    for dataset, threat in folders:
        files = [p for p in ranked if p.parts[-3:-1] == (dataset, threat)]
        infos = [json.loads(p.read_text()) for p in files]
        page = generate_leaderboard(dataset, threat, "model_info")
        assert page.count("<tr>") == len(files) + 1  # a header row and one row per entry
        rows = _latex_rows(rb_utils.get_leaderboard_latex(dataset, threat))
        assert len(rows) == len(files)
        # its columns: rank, citation, clean, external (its fallback: autoattack_acc), data, arch, venue, zoo id
        ranked_values = [float(r[3]) for r in rows]
        assert ranked_values == sorted(ranked_values, reverse=True)
        assert sorted(ranked_values) == sorted(float(i.get("external", i.get("autoattack_acc"))) for i in infos)
        assert all(r[5] == "RN-20" for r in rows)  # "ResNet-20" as RobustBench abbreviates it
        entries, text = rb_utils.get_leaderboard_bibtex(dataset, threat)
        assert entries == set() and text == ""  # venue "N/A": RobustBench skips entries without a venue


def test_export_refuses_a_foreign_file_and_writes_nothing(tmp_path):
    out = tmp_path / "model_info"
    first = CliRunner().invoke(main, ["export", "--model-info", str(out), "--results", str(RESULTS)])
    assert first.exit_code == 0, first.output
    victim = next((out / "cifar10" / "Linf").glob("*.json"))
    victim.write_text('{"name": "someone else\'s entry"}')
    other = [p for p in out.rglob("*.json") if p != victim]
    before = {p: p.stat().st_mtime_ns for p in other}
    res = CliRunner().invoke(main, ["export", "--model-info", str(out), "--results", str(RESULTS)])
    assert res.exit_code == 2 and res.stderr.strip().startswith("error: --model-info")
    assert len(res.stderr.strip().splitlines()) == 1 and "refusing to overwrite" in res.stderr
    assert victim.read_text() == '{"name": "someone else\'s entry"}'
    assert {p: p.stat().st_mtime_ns for p in other} == before  # checked before anything was written
    again = CliRunner().invoke(main, ["export", "--model-info", str(tmp_path / "none"), "--results",
                                      str(tmp_path / "no-records")])
    assert again.exit_code == 2 and "not a folder of run records" in again.stderr
