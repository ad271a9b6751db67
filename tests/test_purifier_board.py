"""The purifier leaderboard (issue 34): ranked by the adaptive worst case, numbers equal to the records', transfer
numbers never ranked, ZeroPur-C one defense under 'authors' and 'calibrated'."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from zeropur_bench.records import RecordView
from zeropur_bench.reports import load_records
from zeropur_bench.reports.purifiers import board, load_sanity_reports, numbers, render_board

REPO = Path(__file__).resolve().parents[1]
STD = "resnet20-cifar10-standard"
CASCADE_CF = REPO / "results" / "cifar10-linf-resnet20-cifar10-standard-adaptive-ce6a29c11324d842.json"


@pytest.fixture(scope="module")
def records() -> list[RecordView]:
    return load_records(REPO / "results")


def test_rows_carry_the_records_numbers(records) -> None:
    ranked, rest = board(records, [STD], load_sanity_reports(REPO / "results"))
    assert ranked and all(r.adaptive is not None for r in ranked) and all(r.adaptive is None for r in rest)
    raw = json.loads(CASCADE_CF.read_text())
    (cf,) = [r for r in ranked if r.adaptive.path and Path(r.adaptive.path).name == CASCADE_CF.name
             and r.variant.stages == "cf"]
    f = numbers(cf)
    summary = next(v for v in raw["variants"].values() if v["defense"]["stages"] == "cf")["summary"]
    assert f["worst_case"] == summary["worst_case_acc"] and f["n_adaptive"] == raw["config"]["n_ex"]
    assert f["BPDA+EOT"] == summary["robust_acc"]["bpda-eot"] and f["order_run"] == "B→S→D→F→A"
    # clean and transfer from the largest transfer record of the same defense (n=1000), not from the adaptive one
    assert f["clean_n"] == 1000 and f["transfer_pgd20"] is not None and f["clean"] != summary["defended_clean_acc"]
    # ZeroPur-C: the calibrated adaptive run and the authors' transfer run are one defense
    (c,) = [r for r in ranked if r.variant.stages == "c"]
    assert c.transfer is not None and numbers(c)["clean_n"] == 1000
    # the sanity reports' verdicts (results/sanity/): C-F passes, C is flagged for gradient masking
    assert numbers(cf)["sanity"] == "pass (n=100)" and numbers(c)["sanity"].startswith("flags: gradient-free")
    # a single BPDA+EOT-10 run is not the protocol: that defense is not ranked
    assert not any(r.variant.profile == "authors" and r.variant.stages == "cf" for r in ranked)


def test_ranked_by_worst_case_and_transfer_never_ranked(records) -> None:
    raw = json.loads(CASCADE_CF.read_text())
    better = copy.deepcopy(raw)  # the same record, as if its C-F variant kept 40% against every attack
    v = next(v for v in better["variants"].values() if v["defense"]["stages"] == "cf")
    v["defense"]["options"] = {"profile": "calibrated", "stages": "cf", "blur": "gaussian:1.2", "steps": 99}
    v["summary"]["worst_case_acc"] = 0.4
    v["summary"]["ci95"]["worst_case_acc"] = [0.33, 0.47]
    ranked, rest = board([*records, RecordView.from_dict(better, path="synthetic.json")], [STD])
    assert numbers(ranked[0])["worst_case"] == 0.4  # ranks first
    worst = [numbers(r)["worst_case"] for r in ranked]
    assert worst == sorted(worst, reverse=True)
    md = render_board(ranked, rest)
    head, _, tail = md.partition("## transfer only: not a robustness claim")
    assert "| 1 " in head and "40.0 [33.0, 47.0]" in head
    assert tail and "Rank" not in tail and "| Classifier" in tail  # no rank column there


def test_command_writes_both_files_and_keeps_a_users_file(tmp_path: Path) -> None:
    from zeropur_bench.cli import main

    runner = CliRunner()
    out = tmp_path / "purifiers.md"
    res = runner.invoke(main, ["purifiers", "--out", str(out), "--results", str(REPO / "results"),
                               "--model", STD])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!-- made by zeropur-bench purifiers") or "made by" in out.read_text()
    import pandas as pd

    csv = pd.read_csv(out.with_suffix(".csv"), skiprows=1)
    assert list(csv["rank"].dropna()) == list(range(1, int(csv["rank"].max()) + 1))
    mine = tmp_path / "mine.md"
    mine.write_text("my notes\n")
    res = runner.invoke(main, ["purifiers", "--out", str(mine), "--results", str(REPO / "results")])
    assert res.exit_code == 2 and mine.read_text() == "my notes\n"
    assert not mine.with_suffix(".csv").exists()


def test_only_the_boards_threat_enters_it(records) -> None:
    """Table 3's L2 records (same classifiers, same ZeroPur variants, n=1000) never lend the L∞ board a clean or
    transfer number: every row's records are CIFAR-10 L∞ 8/255, and the committed L2 record would be picked
    otherwise (it is as large as the L∞ one)."""
    l2 = [r for r in records if r.threat == "l2" and r.model == STD]
    assert l2 and max(r.n for r in l2) == 1000
    ranked, rest = board(records, [STD])
    used = [rec for row in [*ranked, *rest] for rec in (row.transfer, row.adaptive) if rec is not None]
    assert used and all(r.threat == "linf" and abs(r.eps - 8 / 255) < 1e-9 for r in used)
    (cf,) = [r for r in ranked if r.variant.stages == "cf" and r.variant.profile == "calibrated"]
    l2_cf = next(v for r in l2 for v in r.variants.values() if v.stages == "cf" and v.profile == "calibrated")
    assert cf.transfer.threat == "linf" and numbers(cf)["transfer_pgd20"] != l2_cf.metric("robust_acc", "PGD-20").acc


def test_unmeasured_protocol_rows_are_listed_with_their_command(records) -> None:
    """A short board is not read as a complete one: each named classifier lists the protocol's defenses that have no
    ranked row on it, and a defense leaves the list exactly when its adaptive record is found."""
    from zeropur_bench.reports.purifiers import PROTOCOL, unmeasured

    fresh = "resnet20-cifar10-nowhere"
    ranked, rest = board(records, [STD, fresh])
    got = unmeasured(ranked, [STD, fresh])
    assert got[fresh] == list(PROTOCOL)  # nothing measured on it: every protocol row
    ranked_std = {(r.variant.name, r.variant.stages) for r in ranked if r.model == STD}
    assert ("bit-depth", None) in ranked_std and ("zeropur", "cf") in ranked_std
    assert all(name != "bit-depth" and opts.get("stages") != "cf" for name, opts in got.get(STD, []))
    # without bit-depth's adaptive record, bit-depth is listed again (its transfer record alone does not rank it)
    no_bd = [r for r in records if not (r.setting == "adaptive" and any(v.name == "bit-depth" for v in r.variants.values()))]
    ranked2, rest2 = board(no_bd, [STD])
    assert ("bit-depth", {}) in unmeasured(ranked2, [STD])[STD]
    md = render_board(ranked2, rest2, models=[STD])
    line = next(ln for ln in md.split("## Not measured yet", 1)[1].splitlines() if ln.startswith(f"- {STD}:"))
    assert f"`CLASSIFIERS={STD} PURIFIERS='bit-depth " in line and line.endswith("make_results.sh purifiers`")
    assert "## Not measured yet" not in render_board(ranked2, rest2)  # no classifiers named: no list
    # ZeroPur is two protocol rows, told apart by stage and profile: without C's cascade record only C is listed,
    # and an 'authors' C-F row would not stand in for the calibrated one
    c_cascade = {(r.path, r.setting) for r in records for v in r.variants.values()
                 if v.name == "zeropur" and v.stages == "c" and r.setting == "adaptive"}
    no_c = [r for r in records if (r.path, r.setting) not in c_cascade]
    missing = unmeasured(board(no_c, [STD])[0], [STD])[STD]
    assert ("zeropur", {"profile": "calibrated", "stages": "c"}) in missing
    assert ("zeropur", {"profile": "calibrated", "stages": "cf"}) not in missing
    (cf,) = [r for r in board(no_c, [STD])[0] if r.variant.name == "zeropur" and r.variant.stages == "cf"]
    authors = copy.deepcopy(cf.adaptive.raw)
    for key, view in cf.adaptive.variants.items():
        authors["variants"][key]["defense"]["options"] = {**view.options, "profile": "authors"}
    only_authors = [r for r in no_c if r.path != cf.adaptive.path] + [RecordView.from_dict(authors, path="a.json")]
    missing = unmeasured(board(only_authors, [STD])[0], [STD])[STD]
    assert ("zeropur", {"profile": "calibrated", "stages": "cf"}) in missing


def test_at_equal_n_the_longer_cascade_is_the_row(records) -> None:
    """Two cascades of one defense at the same n (one re-run with an attack appended): the row is the longer one,
    whichever is found first."""
    raw = json.loads(CASCADE_CF.read_text())
    shorter = copy.deepcopy(raw)
    shorter["config"]["attacks"] = shorter["config"]["attacks"][:2]
    shorter["keys"]["comparison"]["attacks"] = shorter["keys"]["comparison"]["attacks"][:2]
    short = RecordView.from_dict(shorter, path="results/short.json")
    assert len(short.attacks) == 2 and short.n == RecordView.from_dict(raw).n
    rest = [r for r in records if r.path is None or Path(r.path).name != CASCADE_CF.name]
    full = RecordView.from_dict(raw, path=str(CASCADE_CF))
    for order in ([short, full], [full, short]):
        (cf,) = [r for r in board([*rest, *order], [STD])[0] if r.variant.stages == "cf" and r.variant.profile == "calibrated"]
        assert cf.adaptive is full


def test_each_purifier_is_paired_with_the_classifier_alone(records) -> None:
    """Does the purifier add to the adversarially trained classifier or take away: its worst case against the
    classifier alone's on the same images, per example (the counts and the McNemar p recomputed here from the two
    records' per-example vectors)."""
    from scipy.stats import binomtest

    fastat = "resnet20-cifar10-fastat"
    ranked, _ = board(records, [fastat])
    (alone,) = [r for r in ranked if r.variant.name == "none"]
    rows = [r for r in ranked if r.variant.name != "none"]
    assert rows and all(r.reference is alone for r in rows)
    ref = dict(zip(alone.adaptive.indices, alone.variant.examples["worst_case_correct"]))
    for r in rows:
        mine = dict(zip(r.adaptive.indices, r.variant.examples["worst_case_correct"]))
        common = [i for i in mine if i in ref]
        gained = sum(1 for i in common if mine[i] and not ref[i])
        lost = sum(1 for i in common if ref[i] and not mine[i])
        f = numbers(r)
        assert (f["vs_alone_n"], f["vs_alone_gained"], f["vs_alone_lost"]) == (len(common), gained, lost)
        assert f["vs_alone_delta"] == pytest.approx((gained - lost) / len(common))
        assert f["vs_alone_p"] == pytest.approx(binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0)
        assert len(common) == r.adaptive.n < alone.adaptive.n  # the first n images of the reference's 1000
    assert numbers(alone)["vs_alone_delta"] is None  # the reference itself has no pair
    # on the standard classifier no 'classifier alone' row is ranked: nothing to pair with
    assert all(numbers(r)["vs_alone_delta"] is None for r in board(records, [STD])[0])


def test_a_row_above_the_classifier_alone_is_marked_to_confirm(records) -> None:
    """Issue 34: a purifier kept above the adversarially trained classifier alone (paired, p < 0.05) is a surprise:
    the board marks it and gives the run that settles it, its own cascade with AutoAttack through the purifier's
    full gradient appended, which parses with the CLI; once a record has that attack the mark goes."""
    import shlex

    import click

    from zeropur_bench.cli import main as cli
    from zeropur_bench.reports.purifiers import CONFIRM_ATTACK, confirm_command, to_confirm

    fastat = "resnet20-cifar10-fastat"
    ranked, rest = board(records, [fastat])
    flagged = to_confirm(ranked)
    for r in ranked:
        f = numbers(r)
        above = f["vs_alone_delta"] is not None and f["vs_alone_delta"] > 0 and f["vs_alone_p"] < 0.05
        assert (r in flagged) == above == f["to_confirm"]
    (median,) = flagged  # the committed median-smoothing cascade: +3.0 points, p = 0.017
    assert median.variant.name == "median-smoothing"
    md = render_board(ranked, rest, models=[fastat])
    row_line = next(ln for ln in md.splitlines() if "| median-smoothing" in ln and fastat in ln)
    assert "‡" in row_line and "## Above the classifier alone: to confirm" in md
    cmd = confirm_command(median)
    assert f"`{cmd}`" in md
    argv = shlex.split(cmd)
    attacks = [argv[i + 1] for i, a in enumerate(argv) if a == "--attack"]
    assert attacks == ["bpda-eot", "pgd-eot", "square:n_queries=1000", "autoattack-bpda", CONFIRM_ATTACK]
    assert [a.name for a in median.adaptive.attacks] == [a.split(":")[0] for a in attacks[:-1]]
    assert "--cascade" in argv and argv[argv.index("--n-ex") + 1] == str(median.adaptive.n)
    assert argv[argv.index("--batch-size") + 1] == str(median.adaptive.raw["config"]["batch_size"])
    cli.get_command(click.Context(cli), "run").make_context("run", argv[2:])  # every option exists and parses
    # the same images, draws and numbers: a data seed, seed, dtype and batch size other than the defaults travel
    raw = copy.deepcopy(median.adaptive.raw)
    raw["config"].update(batch_size=250, data_seed=7, seed=3, dtype="bf16")
    moved = copy.copy(median)
    moved.adaptive = RecordView.from_dict(raw, path="moved.json")
    argv = shlex.split(confirm_command(moved))
    assert [argv[argv.index(f) + 1] for f in ("--batch-size", "--data-seed", "--seed", "--dtype")] == \
        ["250", "7", "3", "bf16"]
    # a defense that offers BPDA only gets no full-gradient command (it would be refused), and says so
    (bits,) = [r for r in ranked if r.variant.name == "bit-depth"]
    assert confirm_command(bits) is None
    # the surrogate of the row's own full-gradient attack goes to AutoAttack too (JPEG: the differentiable JPEG)
    (jpeg,) = [r for r in ranked if r.variant.name == "jpeg"]
    argv = shlex.split(confirm_command(jpeg))
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--attack"][-1] == f"{CONFIRM_ATTACK}:surrogate=diff-jpeg"
    # a record whose cascade ran the confirming attack (here: its last attack renamed) is no longer flagged
    raw = copy.deepcopy(median.adaptive.raw)
    raw["config"]["attacks"][-1]["name"] = CONFIRM_ATTACK
    done = RecordView.from_dict(raw, path="confirmed.json")
    assert done.attacks[-1].name == CONFIRM_ATTACK
    median.adaptive = done
    assert to_confirm([median]) == [] and numbers(median)["to_confirm"] is False
