"""Issue 5: the Click CLI (run | table | list) through Click's runner, and a table round trip on a real record."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main
from zeropur_bench.tables import parse_cell

from conftest import WEIGHTS, make_malicious_checkpoint

RUN = ["run", "--dataset", "cifar10", "--threat", "linf", "--model", "resnet20", "--checkpoint",
       str(WEIGHTS / "resnet20.th"), "--no-progress"]
SMALL = ["--n-ex", "20", "--batch-size", "20", "--attack", "pgd", "--zp", "coarse_steps=3,fine_steps=3"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, data_dir):
    """A real (small) run through the CLI: PGD-20 transfer, ZeroPur C and C-F, into a fresh results/ folder."""
    d = tmp_path_factory.mktemp("results")
    res = CliRunner().invoke(main, RUN + SMALL + ["--data-dir", data_dir, "--out", str(d / "run.json")])
    assert res.exit_code == 0, res.output
    return d


def _one_line_error(res, needle: str) -> None:
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in res.output


def test_run_writes_record_and_prints_summary(results):
    rec = json.loads((results / "run.json").read_text())
    assert rec["summary"]["n"] == 20 and set(rec["variants"]) == {"zeropur-c", "zeropur-cf"}
    assert not list(results.glob("*.partial"))


def test_help_has_examples():
    runner = CliRunner()
    for cmd in ([], ["run"], ["table"], ["list"]):
        res = runner.invoke(main, cmd + ["--help"])
        assert res.exit_code == 0 and "Example" in res.output, cmd
    assert "L∞" in runner.invoke(main, ["run", "--help"]).output  # purification budget note


def test_list_shows_everything():
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0
    for word in ("cifar100", "resnet56", "wrn-28-10", "bpda-eot", "defense-aware", "autoattack", "authors", "paper",
                 "median:k"):
        assert word in res.output, word


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "cifar11"], "cifar11"),  # click's own choice error
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--eps", "9"], "eps must be in"),
    (["--eps", "abc"], "--eps must be a number"),
    (["--blur", "wobble:3"], "wobble"),
    (["--zp", "coarse_stepz=3"], "unknown ZeroPur option"),
    (["--setting", "transfer", "--attack", "bpda-eot"], "adaptive"),
])
def test_bad_run_options(tmp_path, data_dir, args, needle):
    res = CliRunner().invoke(main, RUN + ["--n-ex", "4", "--data-dir", data_dir, "--out", str(tmp_path / "r.json")]
                             + args)
    assert res.exit_code != 0
    assert needle in res.output + res.stderr
    assert "Traceback" not in res.output + res.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_missing_data_and_model_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, RUN + ["--n-ex", "4", "--data-dir", str(tmp_path / "nodata"), "--out",
                                     str(tmp_path / "r.json")])
    _one_line_error(res, "prepare.py")
    res = runner.invoke(main, ["run", "--model", "NoSuchModel2099", "--n-ex", "4", "--out", str(tmp_path / "r.json")])
    _one_line_error(res, "unknown model 'NoSuchModel2099'")
    res = runner.invoke(main, ["run", "--model", "resnet20", "--checkpoint", str(tmp_path / "x.th"), "--out",
                               str(tmp_path / "r.json")])
    _one_line_error(res, "does not exist")
    assert not (tmp_path / "r.json").exists()


def test_malicious_checkpoint_cli(tmp_path):
    ckpt, sentinel = make_malicious_checkpoint(tmp_path)
    res = CliRunner().invoke(main, ["run", "--model", "resnet20", "--checkpoint", str(ckpt), "--n-ex", "4",
                                    "--out", str(tmp_path / "r.json")])
    _one_line_error(res, "refusing to load")
    assert not sentinel.exists() and not (tmp_path / "r.json").exists()


def test_default_models(tmp_path, monkeypatch):
    from zeropur_bench import cli

    res = CliRunner().invoke(main, ["run", "--dataset", "cifar10", "--n-ex", "2", "--model-dir",
                                    str(tmp_path / "models"), "--out", str(tmp_path / "r.json")])
    assert "default classifier: RobustBench 'Standard'" in res.stderr  # offline: then a one-line download error
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "r.json").exists()
    # the shipped Standard model is CIFAR-100's offline default: a tiny real run goes through it
    shipped = cli.SHIPPED / "cifar100_resnet20_standard.pt"
    res = CliRunner().invoke(main, ["run", "--dataset", "cifar100", "--n-ex", "4", "--attack", "pgd:steps=2",
                                    "--stages", "c", "--zp", "coarse_steps=2", "--no-progress",
                                    "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "default classifier: shipped cifar100_resnet20_standard.pt" in res.stderr
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["config"]["model"] == "resnet20" and rec["config"]["checkpoint"] == str(shipped)
    assert rec["config"]["recipe"] == "standard"
    # an install without the package's weights: one clear error, nothing written
    monkeypatch.setattr(cli, "SHIPPED", tmp_path / "no-weights")
    res = CliRunner().invoke(main, ["run", "--dataset", "cifar100", "--out", str(tmp_path / "r2.json")])
    _one_line_error(res, "no default cifar100 classifier is shipped yet")
    assert not (tmp_path / "r2.json").exists()


def test_table_bad_number(tmp_path):
    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "table9.md")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "whatever.md")])
    assert res.exit_code != 0
    assert not list(tmp_path.iterdir())


def test_table_round_trip_real_record(results, tmp_path):
    """Every measured cell of the rendered Table 2 equals the value in its record."""
    out = tmp_path / "table2.csv"
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--results", str(results)])
    assert res.exit_code == 0, res.output
    rec = json.loads((results / "run.json").read_text())
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    measured = df[df["section"] == "measured"]
    assert len(measured) == 2  # ZeroPur C and C-F
    seen = 0
    for _, row in measured.iterrows():
        stages = "cf" if "C-F" in row["method"] else "c"
        s = rec["variants"][f"zeropur-{stages}"]["summary"]
        acc, lo, hi = parse_cell(row["PGD-20"])
        assert acc == pytest.approx(100 * s["robust_acc"]["pgd"], abs=0.005)
        assert lo == pytest.approx(100 * s["ci95"]["robust_acc"]["pgd"][0], abs=0.005)
        assert hi == pytest.approx(100 * s["ci95"]["robust_acc"]["pgd"][1], abs=0.005)
        assert "ResNet-18" not in row["architecture"] and "ResNet-20" in row["architecture"]
        dacc, _, _ = parse_cell(row["Clean (defended)"])
        assert dacc == pytest.approx(100 * s["defended_clean_acc"], abs=0.005)
        assert row["n"] == "20" and row["source"] == str(results / "run.json")
        seen += 1
    assert seen == 2
    md = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "table2.md"), "--results", str(results)])
    assert md.exit_code == 0 and "Measured here" in md.output and "Gowal" in md.output
