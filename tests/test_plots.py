"""Issue 15: `zeropur-bench sweep` and `zeropur-bench plot` on small real records (the shared public ResNet-20,
8 CIFAR-10 test images, 1–2 attack / purification steps): every kind renders a readable PNG whose sidecar CSV holds
the records' own numbers; sweeps make one record (transfer) or one per value (adaptive) and resume; missing or
mismatched inputs end in one line and exit 2."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main

MODEL = ["--model", "resnet20-cifar10-public"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _common(data_dir: str) -> list[str]:
    return MODEL + ["--n-ex", "8", "--batch-size", "4", "--no-progress", "--data-dir", data_dir]


def _invoke(args: list[str]):
    res = CliRunner().invoke(main, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def _ok(args: list[str]):
    res = _invoke(args)
    assert res.exit_code == 0, (res.exit_code, res.output)
    return res


def _one_line_error(args: list[str], needle: str) -> str:
    res = _invoke(args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert needle in err, err
    assert "Traceback" not in res.output
    return err


def _records(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        assert f.readline().startswith("# made by zeropur-bench plot;")  # the mark: plot may rewrite it, and only it
        return list(csv.DictReader(f))


def _check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert path.with_suffix(".csv").is_file()


# -- records made here ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transfer_sweep(tmp_path_factory, data_dir):
    """fine_steps 0, 1, 2 (coarse 2) against PGD-2 transfer: one record, three variants."""
    d = tmp_path_factory.mktemp("transfer_sweep")
    args = ["sweep"] + _common(data_dir) + ["--attack", "pgd:steps=2", "--zp", "coarse_steps=2",
                                            "--param", "fine_steps", "--values", "0,1,2", "--out-dir", str(d)]
    first = _ok(args)
    return d, args, first


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("grid_sweep")
    _ok(["sweep"] + _common(data_dir) + ["--attack", "pgd:steps=1", "--param", "coarse_steps", "--values", "0,1",
                                         "--param2", "fine_steps", "--values2", "1,2", "--out-dir", str(d)])
    return d


@pytest.fixture(scope="module")
def adaptive_sweep(tmp_path_factory, data_dir):
    """coarse_steps 1, 2 (stages c) under adaptive BPDA+EOT-2: one record per value."""
    d = tmp_path_factory.mktemp("adaptive_sweep")
    _ok(["sweep"] + _common(data_dir) + ["--setting", "adaptive", "--stages", "c", "--attack", "bpda-eot:steps=2",
                                         "--param", "coarse_steps", "--values", "1,2", "--out-dir", str(d)])
    return d


@pytest.fixture(scope="module")
def adaptive_eps16(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("adaptive_eps16")
    _ok(["sweep"] + _common(data_dir) + ["--setting", "adaptive", "--stages", "c", "--attack", "bpda-eot:steps=2",
                                         "--eps", "16/255", "--param", "coarse_steps", "--values", "1",
                                         "--out-dir", str(d)])
    return d


@pytest.fixture(scope="module")
def sanity_report(tmp_path_factory, data_dir):
    from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
    from zeropur_bench.sanity import run_sanity

    out = tmp_path_factory.mktemp("sanity") / "sanity.json"
    cfg = EvalConfig(model="resnet20-cifar10-public", n_ex=8, batch_size=8,
                     defenses=[DefenseSpec(profile="authors", stages="c", overrides={"coarse_steps": 1})])
    run_sanity(cfg, data_dir=data_dir, eps_grid=(8 / 255, 32 / 255), attack=AttackSpec("bpda-eot", {"steps": 1}),
               square_queries=5, out=out)
    return out


# -- sweep ---------------------------------------------------------------------------------------------------------------
def test_sweep_transfer_one_record_then_skips(transfer_sweep):
    d, args, first = transfer_sweep
    (path,) = _records(d)
    rec = _load(path)
    assert rec["config"]["setting"] == "transfer" and rec["summary"]["n"] == 8
    assert list(rec["variants"]) == [f"zeropur-cf[fine_steps={v}]" for v in (0, 1, 2)]
    for v, (k, block) in zip((0, 1, 2), rec["variants"].items()):
        assert block["defense"]["resolved"]["fine_steps"] == v
        assert block["defense"]["resolved"]["coarse_steps"] == 2
        assert block["defense"]["overrides"] == {"coarse_steps": 2, "fine_steps": v}
    # one adversarial set: one attack, crafted on the bare classifier, judged by every variant
    assert [a["key"] for a in rec["config"]["attacks"]] == ["pgd[steps=2]"]
    assert rec["bare_classifier"]["robust_acc"]["pgd[steps=2]"] <= 0.25
    # fine_steps=0: fine alignment starts from and returns the adversarial input (no purification)
    none = rec["variants"]["zeropur-cf[fine_steps=0]"]["examples"]["adv_correct"]["pgd[steps=2]"]
    assert none == rec["bare_classifier"]["examples"]["adv_correct"]["pgd[steps=2]"]
    assert "written" in first.stderr
    mtime = path.stat().st_mtime_ns
    again = _ok(args)
    assert "skipped" in again.stderr and "0 computed, 1 skipped" in again.stdout
    assert _records(d) == [path] and path.stat().st_mtime_ns == mtime
    assert not list(d.glob("*.partial"))


def test_sweep_adaptive_one_record_per_value(adaptive_sweep):
    recs = [_load(p) for p in _records(adaptive_sweep)]
    assert len(recs) == 2
    got = {}
    for rec in recs:
        assert rec["config"]["setting"] == "adaptive"
        (k,) = rec["variants"]
        got[rec["variants"][k]["defense"]["resolved"]["coarse_steps"]] = k
    assert got == {1: "zeropur-c[coarse_steps=1]", 2: "zeropur-c[coarse_steps=2]"}


def test_sweep_refuses_bad_requests(data_dir, tmp_path):
    base = ["sweep"] + _common(data_dir) + ["--attack", "pgd:steps=1", "--out-dir", str(tmp_path)]
    _one_line_error(base + ["--stages", "c", "--param", "fine_steps", "--values", "0,1"], "no effect on stages c")
    _one_line_error(base + ["--param", "fine_steps", "--values", "1,1"], "given twice")
    _one_line_error(base + ["--param", "nope_steps", "--values", "1"], "not a ZeroPur setting")
    _one_line_error(base + ["--param", "fine_steps", "--values", "1", "--zp", "fine_steps=3"], "drop it from --zp")
    assert not _records(tmp_path)


# -- plots from records ----------------------------------------------------------------------------------------------------
def test_plot_steps_transfer_csv_is_the_record(transfer_sweep, tmp_path):
    d, _, _ = transfer_sweep
    rec = _load(_records(d)[0])
    out = tmp_path / "steps.png"
    res = _ok(["plot", "steps", "--results", str(d), "--out", str(out)])
    assert "figure written" in res.stdout
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    assert {r["series"] for r in rows} == {"defended clean", "pgd[steps=2]"}
    assert len(rows) == 6
    for r in rows:
        v = rec["variants"][r["variant"]]
        assert r["param"] == "fine_steps" and int(r["value"]) == v["defense"]["resolved"]["fine_steps"]
        s = v["summary"]
        if r["series"] == "defended clean":
            acc, ci = s["defended_clean_acc"], s["ci95"]["defended_clean_acc"]
        else:
            acc, ci = s["robust_acc"][r["attack"]], s["ci95"]["robust_acc"][r["attack"]]
        assert (float(r["acc"]), float(r["ci95_lo"]), float(r["ci95_hi"])) == (acc, ci[0], ci[1])
        assert int(r["n"]) == 8
    # the same figure as SVG and PDF
    for suffix in (".svg", ".pdf"):
        _ok(["plot", "steps", "--results", str(d), "--out", str(tmp_path / f"steps{suffix}")])
        assert (tmp_path / f"steps{suffix}").stat().st_size > 1000


def test_plot_steps_adaptive_records(adaptive_sweep, tmp_path):
    out = tmp_path / "steps_adaptive.png"
    _ok(["plot", "steps", "--results", str(adaptive_sweep), "--out", str(out), "--no-clean"])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    by_value = {int(r["value"]): r for r in rows}
    assert set(by_value) == {1, 2} and all(r["param"] == "coarse_steps" for r in rows)
    for p in _records(adaptive_sweep):
        rec = _load(p)
        (k,) = rec["variants"]
        v = rec["variants"][k]
        r = by_value[v["defense"]["resolved"]["coarse_steps"]]
        assert float(r["acc"]) == v["summary"]["robust_acc"]["bpda-eot[steps=2]"] and r["record"] == p.name


def test_plot_grid_csv_is_the_record(grid_sweep, tmp_path):
    (path,) = _records(grid_sweep)
    rec = _load(path)
    assert len(rec["variants"]) == 4
    out = tmp_path / "grid.png"
    _ok(["plot", "grid", "--results", str(path), "--out", str(out)])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    assert len(rows) == 8  # (clean + 1 attack) × 2 × 2
    cells = {(int(r["coarse_steps"]), int(r["fine_steps"])) for r in rows}
    assert cells == {(0, 1), (0, 2), (1, 1), (1, 2)}
    for r in rows:
        v = rec["variants"][r["variant"]]
        assert v["defense"]["resolved"]["coarse_steps"] == int(r["coarse_steps"])
        assert v["defense"]["resolved"]["fine_steps"] == int(r["fine_steps"])
        want = v["summary"]["defended_clean_acc"] if r["series"] == "defended clean" else \
            v["summary"]["robust_acc"][r["attack"]]
        assert float(r["acc"]) == want


def test_plot_attack_curve_csv_is_the_record(adaptive_sweep, tmp_path):
    out = tmp_path / "curve.png"
    _ok(["plot", "attack-curve", "--results", str(adaptive_sweep), "--out", str(out)])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    n_lines = 0
    for p in _records(adaptive_sweep):
        rec = _load(p)
        for k, v in rec["variants"].items():
            for a, curve in v["summary"]["curves"].items():
                n_lines += 1
                mine = [r for r in rows if r["record"] == p.name and r["variant"] == k and r["attack"] == a]
                assert [int(r["t"]) for r in mine] == list(range(3))  # t = 0 .. steps
                assert [float(r["robust_any_step"]) for r in mine] == curve["robust_any_step"]
                assert [float(r["robust_final"]) for r in mine] == curve["robust_final"]
    assert n_lines == 2 and len(rows) == 6


def test_plot_eps_from_sanity_report_and_records(sanity_report, adaptive_sweep, adaptive_eps16, tmp_path):
    out = tmp_path / "eps.png"
    _ok(["plot", "eps", "--results", str(sanity_report), "--out", str(out)])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    sweep = _load(sanity_report)["checks"][0]["details"]["sweep"]
    defended = [r for r in rows if r["kind"] == "defended"]
    bare = [r for r in rows if r["kind"] == "bare"]
    assert [float(r["eps"]) for r in defended] == [e["eps"] for e in sweep]
    assert [float(r["acc"]) for r in defended] == [e["robust_acc"] for e in sweep]
    assert [[float(r["ci95_lo"]), float(r["ci95_hi"])] for r in defended] == [e["ci95"] for e in sweep]
    assert [float(r["acc"]) for r in bare] == [e["bare_robust_acc"] for e in sweep]
    assert [r["eps_str"] for r in defended] == ["8/255", "32/255"]
    # adaptive records at two eps: one series per variant, a point per eps
    out2 = tmp_path / "eps_records.png"
    _ok(["plot", "eps", "--results", str(adaptive_sweep), "--results", str(adaptive_eps16), "--out", str(out2)])
    _check_png(out2)
    rows = _csv(out2.with_suffix(".csv"))
    for p in _records(adaptive_sweep) + _records(adaptive_eps16):
        rec = _load(p)
        (k,) = rec["variants"]
        (r,) = [r for r in rows if r["source"] == p.name]
        (key,) = rec["variants"][k]["summary"]["robust_acc"]  # the column may name its eps (away from 8/255)
        assert float(r["eps"]) == rec["config"]["eps"] and r["series"].startswith(k) and r["attack"] == key
        assert float(r["acc"]) == rec["variants"][k]["summary"]["robust_acc"][key]
    one = [r for r in rows if r["series"].startswith("zeropur-c[coarse_steps=1]")]
    assert [r["eps_str"] for r in one] == ["8/255", "16/255"] and len({r["series"] for r in one}) == 1


def test_plot_cosine_recomputes_the_coarse_iterates(transfer_sweep, grid_sweep, tmp_path):
    d, _, _ = transfer_sweep
    out = tmp_path / "cosine.png"
    _ok(["plot", "cosine", "--results", str(_records(d)[0]), "--results", str(_records(grid_sweep)[0]), "--n", "3",
         "--out", str(out)])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    lines = sorted({r["line"] for r in rows})
    assert len(lines) == 2  # one per record (same classifier: told apart by the record's name)
    for rec_path in (_records(d)[0], _records(grid_sweep)[0]):
        rec = _load(rec_path)
        primary = rec["config"]["primary_variant"]
        k_steps = rec["variants"][primary]["defense"]["resolved"]["coarse_steps"]
        mine = [r for r in rows if r["record"] == rec_path.name]
        assert {r["variant"] for r in mine} == {primary}
        for series in ("x_t", "g(x_t)"):
            ts = [int(r["t"]) for r in mine if r["input"] == series]
            assert ts == list(range(k_steps + 1))
        assert all(int(r["n"]) == 3 and r["examples"] == "0 1 2" for r in mine)
        assert all(-1.0 <= float(r["mean_cos"]) <= 1.0 for r in mine)
    # coarse shifting moves x_t's embedding towards the natural image's (2 steps, 3 examples)
    sweep_rows = [r for r in rows if r["record"] == _records(d)[0].name and r["input"] == "x_t"]
    assert float(sweep_rows[-1]["mean_cos"]) > float(sweep_rows[0]["mean_cos"])


def test_plot_images_picks_failures_and_matches_the_record(transfer_sweep, tmp_path):
    d, _, _ = transfer_sweep
    path = _records(d)[0]
    rec = _load(path)
    variant, attack = "zeropur-cf[fine_steps=2]", "pgd[steps=2]"
    out = tmp_path / "failures.png"
    _ok(["plot", "images", "--results", str(path), "--pick", "failures", "--n", "2", "--out", str(out)])
    _check_png(out)
    rows = _csv(out.with_suffix(".csv"))
    ex = rec["variants"][variant]["examples"]
    failures = [i for i, ok in zip(ex["index"], ex["robust_correct"][attack]) if not ok][:2]
    assert [int(r["index"]) for r in rows if r["column"] == "clean"] == failures
    assert {r["column"] for r in rows} == {"clean", "adversarial", "coarse (x')", "purified (fine)"}
    bare = rec["bare_classifier"]["examples"]
    for r in rows:
        p = ex["index"].index(int(r["index"]))
        correct = r["correct"] == "true"
        if r["column"] == "clean":
            assert correct == ex["clean_correct"][p]
        elif r["column"] == "adversarial":
            assert correct == bare["adv_correct"][attack][p]
            assert float(r["linf_to_clean"]) <= 8 / 255 + 1e-6
        elif r["column"] == "purified (fine)":
            assert correct == ex["adv_correct"][attack][p]  # deterministic defense: one purification = the judge
        assert r["record_robust_correct"] == "false"
    out2 = tmp_path / "index.png"
    _ok(["plot", "images", "--results", str(path), "--index", "3,5", "--variant", "zeropur-cf[fine_steps=1]",
         "--out", str(out2)])
    _check_png(out2)
    assert [int(r["index"]) for r in _csv(out2.with_suffix(".csv")) if r["column"] == "clean"] == [3, 5]


def test_images_refuse_a_record_that_does_not_reproduce(transfer_sweep, tmp_path):
    d, _, _ = transfer_sweep
    rec = _load(_records(d)[0])
    variant, attack = "zeropur-cf[fine_steps=2]", "pgd[steps=2]"
    ex = rec["variants"][variant]["examples"]
    ex["adv_correct"][attack][1] = not ex["adv_correct"][attack][1]  # as if another machine had flipped #1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(rec))
    _one_line_error(["plot", "images", "--results", str(tampered), "--index", "1", "--out",
                     str(tmp_path / "t.png")], "example 1 does not reproduce")
    assert not (tmp_path / "t.png").exists()


def test_missing_and_mismatched_inputs_one_line(transfer_sweep, grid_sweep, adaptive_sweep, adaptive_eps16,
                                                sanity_report, tmp_path):
    d, _, _ = transfer_sweep
    rec = str(_records(d)[0])
    out = str(tmp_path / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    # an adaptive record at another eps: differs in more than the swept parameter
    _one_line_error(["plot", "steps", "--results", str(adaptive_sweep), "--results",
                     str(_records(adaptive_eps16)[0]), "--out", out], "mismatched records")
    # the adaptive sweep varies coarse_steps, not fine_steps
    _one_line_error(["plot", "steps", "--results", str(adaptive_sweep), "--param", "fine_steps", "--out", out],
                    "differ in more than fine_steps")
    _one_line_error(["plot", "steps", "--results", str(empty), "--out", out], "no zeropur-bench/record/v2 records")
    _one_line_error(["plot", "steps", "--results", str(tmp_path / "nope.json"), "--out", out], "does not exist")
    _one_line_error(["plot", "steps", "--results", str(sanity_report), "--out", out], "is a sanity report")
    _one_line_error(["plot", "grid", "--results", rec, "--out", out], "do not vary in two parameters")
    three = [a for k in ("coarse_steps=0,fine_steps=1", "coarse_steps=0,fine_steps=2", "coarse_steps=1,fine_steps=1")
             for a in ("--variant", f"zeropur-cf[{k}]")]
    _one_line_error(["plot", "grid", "--results", str(grid_sweep), "--out", out] + three, "grid is incomplete")
    _one_line_error(["plot", "attack-curve", "--results", rec, "--out", out], "no per-step attack curves")
    _one_line_error(["plot", "eps", "--results", rec, "--out", out], "at one eps")
    _one_line_error(["plot", "images", "--results", rec, "--index", "99", "--out", out], "example 99 is not in")
    _one_line_error(["plot", "images", "--results", rec, "--attack", "pgd", "--out", out], "has no attack 'pgd'")
    _one_line_error(["plot", "steps", "--results", rec, "--out", str(tmp_path / "x.jpg")], "give a figure file")
    _one_line_error(["plot", "steps", "--results", rec, "--index", "3", "--out", out], "cosine and images only")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _one_line_error(["plot", "steps", "--results", str(bad), "--out", out], "is not JSON")
    assert not list(tmp_path.glob("x.*"))
    shutil.rmtree(empty)
