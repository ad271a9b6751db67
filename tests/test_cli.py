"""Issue 5: the Click CLI (run | table | list) through Click's runner, and a table round trip on a real record."""
from __future__ import annotations

import json

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


def _one_line_error(res, needle: str, max_lines: int = 1) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    err = res.stderr.strip()
    assert 1 <= len(err.splitlines()) <= max_lines, err
    assert err.splitlines()[-1].startswith("error: ") and needle in err, err
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)


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


def test_out_folder_gets_the_default_name(tmp_path, data_dir):
    """`--out SOMEDIR/` (existing or not) writes SOMEDIR/<default name>.json and nothing else."""
    args = RUN + ["--n-ex", "4", "--batch-size", "4", "--attack", "pgd:steps=1", "--stages", "c", "--zp",
                  "coarse_steps=1", "--data-dir", data_dir]
    existing = tmp_path / "existing"
    existing.mkdir()
    for out in (existing, tmp_path / "new" / "sub"):
        res = CliRunner().invoke(main, args + ["--out", str(out) + "/"])
        assert res.exit_code == 0, res.output
        files = [p.relative_to(out) for p in out.rglob("*")]
        assert len(files) == 1 and str(files[0]).startswith("cifar10-linf-resnet20-transfer-"), files
    assert sorted(p.name for p in existing.iterdir()) == sorted(p.name for p in (tmp_path / "new" / "sub").iterdir())


def test_same_run_same_record_name_in_any_checkout(tmp_path, data_dir):
    """No path enters the record name: the same default run from two working directories, with the checkpoint
    given by two different paths, gets the same name."""
    import shutil

    names = []
    for i in range(2):
        wd = tmp_path / f"checkout{i}"
        wd.mkdir()
        ckpt = wd / "w" / "resnet20.th"
        ckpt.parent.mkdir()
        shutil.copyfile(WEIGHTS / "resnet20.th", ckpt)
        res = CliRunner().invoke(main, ["run", "--model", "resnet20", "--checkpoint", str(ckpt), "--n-ex", "4",
                                        "--batch-size", "4", "--attack", "pgd:steps=1", "--defense", "none",
                                        "--no-progress", "--data-dir", data_dir, "--out", str(wd / "results") + "/"])
        assert res.exit_code == 0, res.output
        names.append([p.name for p in (wd / "results").iterdir()])
    assert names[0] == names[1] and len(names[0]) == 1


_GPU = __import__("torch").cuda.is_available()
BAD_RUN = [
    (["--dataset", "cifar11"], "cifar11"),  # click's own choice error
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--attack", "pgd:eps=0.1"], "set by the run"),
    (["--attack", "pgd:norm=L2"], "set by the run"),
    (["--attack", "pgd:seed=3"], "set by the run"),
    (["--attack", "pgd:stepz=3"], "allowed: random_start, restarts, step, steps"),
    (["--attack", "pgd:random_start=maybe"], "must be true or false"),
    (["--eps", "9"], "eps must be in"),
    (["--eps", "0"], "eps must be in"),
    (["--eps", "300"], "eps must be in"),
    (["--eps", "abc"], "--eps must be a number"),
    (["--n-ex", "0"], "n_ex"),
    (["--blur", "wobble:3"], "wobble"),
    (["--zp", "coarse_stepz=3"], "unknown ZeroPur option"),
    (["--zp", "dtype=bf16"], "--dtype"),
    (["--zp", "channels_last=true"], "--channels-last"),
    (["--zp", "coarse_eps=abc"], "coarse_eps must be a number"),
    (["--zp", "momentum=abc"], "momentum must be a number"),
    (["--setting", "transfer", "--attack", "bpda-eot"], "adaptive"),
    (["--setting", "adaptive", "--defense", "none", "--attack", "bpda-eot"], "only variant is 'none'"),
    (["--estimator", "logit-avg", "--estimator-n", "0"], "estimator_n"),
    (["--estimator-n", "5"], "one-shot"),
    (["--model", "NoSuchModel2099"], "unknown model 'NoSuchModel2099'"),
    (["--model", "resnet20-cifar100-standard"], "--dataset cifar100"),
    pytest.param(["--device", "cuda"], "no CUDA GPU", marks=pytest.mark.skipif(_GPU, reason="a GPU is present")),
    (["--device", "tpu"], "device"),
]


@pytest.mark.parametrize("args,needle", BAD_RUN, ids=[" ".join(c.values[0]) if hasattr(c, "values") else
                                                      " ".join(c[0]) for c in BAD_RUN])
def test_bad_run_input_one_line_nothing_written(tmp_path, data_dir, monkeypatch, args, needle):
    """Issue 12: every user mistake is one line on stderr, exit 2, no traceback, and no file under the output
    location, whether --out is a file or a folder."""
    monkeypatch.setenv("ZEROPUR_BENCH_OFFLINE", "1")  # these cases must not depend on the network
    base = [a for a in RUN if a not in ("--model", "resnet20")] if "--model" in args else RUN
    if "--model" in args:  # drop the default model and its checkpoint
        i = base.index("--checkpoint")
        base = base[:i] + base[i + 2:]
    out = tmp_path / "out"
    out.mkdir()
    for target in (out / "r.json", out):
        res = CliRunner().invoke(main, base + ["--n-ex", "4", "--data-dir", data_dir, "--out", str(target)] + args)
        _one_line_error(res, needle, max_lines=3)
        assert not list(out.iterdir()), list(out.iterdir())


def test_more_bad_inputs_one_line(tmp_path, data_dir, monkeypatch):
    """Missing data offline, a non-image checkpoint, and the other commands' mistakes."""
    monkeypatch.setenv("ZEROPUR_BENCH_OFFLINE", "1")
    out = tmp_path / "out"
    out.mkdir()
    junk = tmp_path / "junk.th"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    text_ckpt = tmp_path / "notes.pt"
    __import__("torch").save({"note": "hello"}, text_ckpt)
    cases = [
        (RUN + ["--n-ex", "4", "--data-dir", str(tmp_path / "nodata"), "--out", str(out)], "prepare.py"),
        (["run", "--model", "resnet20", "--checkpoint", str(junk), "--data-dir", data_dir, "--out", str(out)],
         "cannot read checkpoint"),
        (["run", "--model", "resnet20", "--checkpoint", str(text_ckpt), "--data-dir", data_dir, "--out", str(out)],
         "not a state_dict"),
        (["run", "--model", "Standard", "--model-dir", str(tmp_path / "models"), "--n-ex", "2", "--data-dir",
          data_dir, "--out", str(out)], "offline mode"),
        (["table", "--out", str(out)], "give --table N"),
        (["table", "--out", str(out / "table9.md")], "table 9"),
        (["check", "--baseline", str(out / "nope.json")], "does not exist"),
        (["sanity", "--model", "resnet20", "--checkpoint", str(junk), "--data-dir", data_dir, "--out",
          str(out / "s.json")], "cannot read checkpoint"),
        (["train", "--dataset", "cifar10", "--arch", "resnet20", "--aug", "standard", "--epochs", "0", "--out",
          str(out / "run")], "--epochs"),
        (["list", "--bogus"], "No such option"),
    ]
    for args, needle in cases:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        _one_line_error(res, needle, max_lines=3)
        assert not list(out.iterdir()), (args, list(out.iterdir()))


def test_default_models(tmp_path, monkeypatch):
    from zeropur_bench import registry

    monkeypatch.setenv("ZEROPUR_BENCH_OFFLINE", "1")
    # the shipped Standard ResNet-20 is each CIFAR dataset's offline default: a tiny real run goes through it
    for ds in ("cifar10", "cifar100"):
        name, out = f"resnet20-{ds}-standard", tmp_path / f"{ds}.json"
        res = CliRunner().invoke(main, ["run", "--dataset", ds, "--threat", "linf", "--n-ex", "4", "--attack",
                                        "pgd:steps=2", "--stages", "c", "--zp", "coarse_steps=2", "--no-progress",
                                        "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert f"default classifier: shipped '{name}'" in res.stderr
        rec = json.loads(out.read_text())
        assert rec["config"]["model"] == name and rec["config"]["checkpoint"] is None
        assert rec["config"]["recipe"] == "standard"  # from the registry, not from a path
        assert rec["provenance"]["model"]["checkpoint_sha256"] == registry.get(name).sha256
    # without a shipped entry: CIFAR-10 falls back to RobustBench 'Standard' (one line offline), CIFAR-100 errs
    monkeypatch.setattr(registry, "get", lambda name: None)
    res = CliRunner().invoke(main, ["run", "--dataset", "cifar10", "--n-ex", "2", "--model-dir",
                                    str(tmp_path / "models"), "--out", str(tmp_path / "r1.json")])
    assert "default classifier: RobustBench 'Standard'" in res.stderr
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    res = CliRunner().invoke(main, ["run", "--dataset", "cifar100", "--out", str(tmp_path / "r2.json")])
    _one_line_error(res, "no default cifar100 classifier is shipped yet")
    assert not (tmp_path / "r1.json").exists() and not (tmp_path / "r2.json").exists()


def test_registered_checkpoint_brings_its_recipe(results):
    """The shared ResNet-20 given by path is recognised by its sha256: recipe standard-padcrop, no sniffing."""
    rec = json.loads((results / "run.json").read_text())
    assert rec["config"]["recipe"] == "standard-padcrop"
    assert rec["provenance"]["model"]["registered_as"] == "resnet20-cifar10-public"


def test_table_bad_number(tmp_path):
    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "table9.md")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "whatever.md")])
    assert res.exit_code != 0
    assert not list(tmp_path.iterdir())


def test_table_round_trip_real_record(results, tmp_path):
    """Every measured cell of the rendered Table 2 equals the value in its record: the paper-protocol cell is the
    record's adv_acc (adversarial input alone), the robust cell its robust_acc (clean ∧ adversarial)."""
    out = tmp_path / "table2.csv"
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--results", str(results)])
    assert res.exit_code == 0, res.output
    rec = json.loads((results / "run.json").read_text())
    key = next(a["key"] for a in rec["config"]["attacks"] if a["name"] == "pgd")
    assert key == "PGD-20"  # the default pgd at Linf 8/255 has App. A.2's settings
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    measured = df[df["section"] == "measured"]
    assert len(measured) == 2  # ZeroPur C and C-F
    seen = 0
    for _, row in measured.iterrows():
        stages = "cf" if "C-F" in row["method"] else "c"
        s = rec["variants"][f"zeropur-{stages}"]["summary"]
        for col, name in (("PGD-20 paper protocol", "adv_acc"), ("PGD-20 robust", "robust_acc")):
            acc, lo, hi = parse_cell(row[col])
            assert acc == pytest.approx(100 * s[name][key], abs=0.005), col
            assert lo == pytest.approx(100 * s["ci95"][name][key][0], abs=0.005), col
            assert hi == pytest.approx(100 * s["ci95"][name][key][1], abs=0.005), col
        assert s["robust_acc"][key] <= min(s["adv_acc"][key], s["defended_clean_acc"])
        dacc, dlo, dhi = parse_cell(row["Clean (defended)"])
        assert dacc == pytest.approx(100 * s["defended_clean_acc"], abs=0.005)
        assert (dlo, dhi) == (pytest.approx(100 * s["ci95"]["defended_clean_acc"][0], abs=0.005),
                              pytest.approx(100 * s["ci95"]["defended_clean_acc"][1], abs=0.005))
        assert "ResNet-18" not in row["architecture"] and "ResNet-20" in row["architecture"]
        assert row["n"] == "20" and row["source"] == str(results / "run.json")
        # No AutoAttack-rand in this run: its cells stay empty, and the command runs every attack of the table
        # with this run's classifier and ZeroPur settings.
        assert row["AutoAttack paper protocol"] == row["AutoAttack robust"] == ""
        assert "--attack pgd --attack autoattack:version=rand --n-ex 20" in row["command"]
        assert f"--stages {stages} " in row["command"] and "--zp coarse_steps=3,fine_steps=3" in row["command"]
        # The shared ResNet-20 is 'standard-padcrop': no paper ZeroPur row of that recipe ("" = "–" in the csv).
        assert row["training_recipe"] == rec["config"]["recipe"] == "standard-padcrop"
        assert row["paper_row"] == row["PGD-20 paper"] == row["PGD-20 Δ"] == row["PGD-20 paper in CI"] == ""
        seen += 1
    assert seen == 2
    md = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "table2.md"), "--results", str(results)])
    assert md.exit_code == 0 and "Measured here" in md.output and "Gowal" in md.output
    text = (tmp_path / "table2.md").read_text()
    assert "PGD-20 paper protocol" in text and "PGD-20 robust" in text and "paper in CI" in text


def test_malicious_checkpoint_cli(tmp_path):
    ckpt, sentinel = make_malicious_checkpoint(tmp_path)
    res = CliRunner().invoke(main, ["run", "--model", "resnet20", "--checkpoint", str(ckpt), "--n-ex", "4",
                                    "--out", str(tmp_path / "r.json")])
    _one_line_error(res, "refusing to load")
    assert not sentinel.exists() and not (tmp_path / "r.json").exists()
