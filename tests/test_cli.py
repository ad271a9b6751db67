"""Issue 5: the Click CLI (run | table | list) through Click's runner, and a table round trip on a real record."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main

from clirun import ENOSPC_SITE, refused as _refused, zb as _zb
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


# -- bad input and faults as a new user meets them (issues 12 and 22): each case a real subprocess --------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED = REPO_ROOT / "results"
R = ["run", "--model", "resnet20-cifar10-standard", "--n-ex", "8", "--stages", "c", "--no-progress", "--zp",
     "coarse_steps=2", "--attack", "pgd:steps=2"]


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode & 0o777)
            for p in sorted(folder.rglob("*"))}


def _case_attack_param(tmp: Path, data_dir: str, attack: str, needle: str) -> None:
    (tmp / "out").mkdir()
    _refused(_zb(R + ["--attack", attack, "--data-dir", data_dir, "--out", "out/r.json"], tmp), needle)
    assert _tree(tmp / "out") == {}


def _case_overwrite(tmp: Path, data_dir: str) -> None:
    notes = tmp / "notes.txt"
    notes.write_text("notes\n")
    notes.chmod(0o664)
    before = _tree(tmp)
    _refused(_zb(R + ["--data-dir", data_dir, "--out", "notes.txt"], tmp), "is not a record of this run")
    assert _tree(tmp) == before  # same bytes, same mode, nothing else written


def _case_corrupt_data(tmp: Path, data_dir: str) -> None:
    (tmp / "data").mkdir()
    raw = (Path(data_dir) / "cifar10_test.npz").read_bytes()
    (tmp / "data" / "cifar10_test.npz").write_bytes(raw[: len(raw) // 3])
    _refused(_zb(R + ["--data-dir", "data", "--out", "r.json"], tmp), "is damaged")
    assert not (tmp / "r.json").exists()


def _case_corrupt_record(tmp: Path, data_dir: str) -> None:
    (tmp / "results").mkdir()
    good = COMMITTED / "cifar10-linf-resnet20-cifar10-vanilla-transfer-e18f3dbbc495670b.json"
    bad = json.loads(good.read_text())
    for v in bad["variants"].values():
        del v["summary"]
    (tmp / "results" / "good.json").write_bytes(good.read_bytes())
    (tmp / "results" / "bad.json").write_text(json.dumps(bad))
    r = _zb(["table", "--out", "t/table2.md", "--results", "results"], tmp)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warns) == 1 and "bad.json" in warns[0] and "summary" in warns[0], r.stderr
    text = (tmp / "t" / "table2.md").read_text()
    assert "results/good.json" in text and "bad.json" not in text  # skipped, never a row of "–"


def _case_baseline(tmp: Path, data_dir: str, change: str) -> None:
    base = json.loads((COMMITTED / "baselines" / "cifar10-resnet20-transfer.json").read_text())
    if change == "no-config":
        del base["config"]
        needle = "'config' is missing"
    else:
        base["config"]["attacks"][0]["params"]["steps"] = "abc"
        needle = "steps must be an integer"
    (tmp / "b.json").write_text(json.dumps(base))
    before = _tree(tmp)
    _refused(_zb(["check", "--baseline", "b.json", "--data-dir", data_dir, "--no-progress"], tmp), needle)
    assert _tree(tmp) == before


def _case_corrupt_batch(tmp: Path, data_dir: str) -> None:
    args = R + ["--n-ex", "16", "--batch-size", "8", "--data-dir", data_dir, "--out", "s.json"]
    assert _zb(args + ["--shard", "0/2"], tmp).returncode == 0
    batch = tmp / "s.json.partial" / "batch-00000.json"
    batch.write_text(batch.read_text()[:40])
    _refused(_zb(args + ["--merge-only"], tmp), "batch-00000.json is damaged")
    assert not (tmp / "s.json").exists()
    r = _zb(args, tmp)  # a plain rerun recomputes the damaged batch
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp / "s.json").read_text())["summary"]["n"] == 16 and not batch.exists()


def _case_full_disk(tmp: Path, data_dir: str) -> None:
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(ENOSPC_SITE)
    (tmp / "out").mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(tmp / "site"), os.environ.get("PYTHONPATH", "")]),
           "ZP_ENOSPC_DIR": str(tmp / "out")}
    _refused(_zb(R + ["--data-dir", data_dir, "--out", "out/r.json"], tmp, env), "no space left")
    files = [p.name for p in (tmp / "out").rglob("*") if p.is_file()]
    assert "r.json" not in files and not any(f.startswith(".tmp-") for f in files), files  # nothing half-written
    r = _zb(R + ["--data-dir", data_dir, "--out", "out/r.json"], tmp)  # the disk has room again: the rerun works
    assert r.returncode == 0 and (tmp / "out" / "r.json").is_file(), r.stderr


def _case_weights(tmp: Path, data_dir: str, change: str) -> None:
    import shutil

    from zeropur_bench import registry

    weights = tmp / "weights"
    shutil.copytree(registry.WEIGHTS, weights)
    if change == "swapped":
        shutil.copyfile(weights / "resnet20-cifar10-vanilla.safetensors", weights / "resnet20-cifar10-standard.safetensors")
        needle = "sha256"
    else:
        reg = json.loads((weights / "registry.json").read_text())
        next(e for e in reg["classifiers"] if e["name"] == "resnet20-cifar10-standard")["file"] = "../../../../etc/passwd"
        (weights / "registry.json").write_text(json.dumps(reg))
        needle = "outside the weights folder"
    r = _zb(R + ["--data-dir", data_dir, "--out", "r.json"], tmp, {"ZEROPUR_BENCH_WEIGHTS": str(weights)})
    _refused(r, needle)
    if change == "swapped":
        want = registry.get("resnet20-cifar10-standard").sha256
        assert want in r.stderr and registry.get("resnet20-cifar10-vanilla").sha256 in r.stderr  # both hashes
    assert not (tmp / "r.json").exists()


def _case_quoting(tmp: Path, data_dir: str) -> None:
    import shlex

    (tmp / "results").mkdir()
    for i, path in enumerate(("w.pt; touch PWNED #", "my weights/resnet20.th")):
        rec = json.loads((COMMITTED / "baselines" / "cifar10-resnet20-transfer.json").read_text())
        rec["config"]["checkpoint"] = path
        rec["keys"]["comparison"]["model"]["checkpoint_sha256"] = f"{i}" * 64
        (tmp / "results" / f"r{i}.json").write_text(json.dumps(rec))
    r = _zb(["table", "--out", "t/table2.md", "--results", "results"], tmp)
    assert r.returncode == 0, r.stderr
    cmds = [c for ln in (tmp / "t" / "table2.md").read_text().splitlines() if ln.startswith("- AutoAttack for")
            for c in re.findall(r"`([^`]+)`", ln)]
    got = sorted(shlex.split(c)[shlex.split(c).index("--checkpoint") + 1] for c in cmds)
    assert got == ["my weights/resnet20.th", "w.pt; touch PWNED #"]  # each one argument, never shell syntax
    assert not list(tmp.rglob("PWNED"))


def _case_modes_help_and_rerun(tmp: Path, data_dir: str) -> None:
    args = R + ["--data-dir", data_dir, "--out", "out/r.json"]
    assert _zb(args, tmp).returncode == 0
    rec = tmp / "out" / "r.json"
    assert rec.stat().st_mode & 0o777 == 0o644  # the umask, not mkstemp's 0600
    r = _zb(["table", "--out", "t/table2.md", "--results", "out"], tmp)
    assert r.returncode == 0 and {p.stat().st_mode & 0o777 for p in (tmp / "t").iterdir()} == {0o644}
    before = rec.read_bytes()
    r = _zb(args, tmp)  # the same run again: reported, not recomputed
    assert r.returncode == 0 and "finished earlier" in r.stdout and rec.read_bytes() == before
    r = _zb(args + ["--force"], tmp)
    assert r.returncode == 0 and "record written to" in r.stdout
    assert json.loads(rec.read_text())["environment"] != json.loads(before)["environment"] or \
        json.loads(rec.read_text())["cost"] != json.loads(before)["cost"]  # recomputed
    h = _zb(["run", "--help"], tmp).stdout
    assert "b % N == K" in h and "%%" not in h


def _case_old(tmp: Path, data_dir: str, args: list[str], needle: str) -> None:
    """Issue 12's cases: missing data offline, a non-image checkpoint, the other commands' mistakes."""
    out = tmp / "out"
    out.mkdir()
    junk = tmp / "junk.th"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    __import__("torch").save({"note": "hello"}, tmp / "notes.pt")
    subst = {"JUNK": str(junk), "TEXT": str(tmp / "notes.pt"), "DATA": data_dir, "CKPT": str(WEIGHTS / "resnet20.th")}
    _refused(_zb([subst.get(a, a) for a in args], tmp), needle)
    assert not list(out.iterdir()), list(out.iterdir())


OLD = [
    (["run", "--model", "resnet20", "--checkpoint", "CKPT", "--n-ex", "4", "--data-dir", "nodata", "--out", "out"],
     "prepare.py"),
    (["run", "--model", "resnet20", "--checkpoint", "JUNK", "--data-dir", "DATA", "--out", "out"],
     "cannot read checkpoint"),
    (["run", "--model", "resnet20", "--checkpoint", "TEXT", "--data-dir", "DATA", "--out", "out"], "not a state_dict"),
    (["run", "--model", "Standard", "--model-dir", "models", "--n-ex", "2", "--data-dir", "DATA", "--out", "out"],
     "offline mode"),
    (["table", "--out", "out"], "give --table N"),
    (["table", "--out", "out/table9.md"], "table 9"),
    (["check", "--baseline", "out/nope.json"], "does not exist"),
    (["sanity", "--model", "resnet20", "--checkpoint", "JUNK", "--data-dir", "DATA", "--out", "out/s.json"],
     "cannot read checkpoint"),
    (["train", "--dataset", "cifar10", "--arch", "resnet20", "--aug", "standard", "--epochs", "0", "--out",
      "out/run"], "--epochs"),
    (["list", "--bogus"], "No such option"),
]
CASES = [pytest.param(_case_old, {"args": a, "needle": n}, id="old: " + " ".join(a[:3])) for a, n in OLD] + [
    pytest.param(_case_attack_param, {"attack": a, "needle": n}, id=f"attack {a}") for a, n in (
        ("pgd:steps=abc", "steps must be an integer"), ("pgd:step=abc", "step must be a number"),
        ("pgd:restarts=abc", "restarts must be an integer"), ("autoattack:n_iter=abc", "n_iter must be an integer"),
        ("square:n_queries=2,p_init=5", "p_init must be a number in (0, 1]"))] + [
    pytest.param(_case_overwrite, {}, id="a user's file as --out"),
    pytest.param(_case_corrupt_data, {}, id="truncated npz"),
    pytest.param(_case_corrupt_record, {}, id="record without summaries"),
    pytest.param(_case_baseline, {"change": "no-config"}, id="baseline without config"),
    pytest.param(_case_baseline, {"change": "steps-abc"}, id="baseline with steps=abc"),
    pytest.param(_case_corrupt_batch, {}, id="truncated batch file"),
    pytest.param(_case_full_disk, {}, id="full disk"),
    pytest.param(_case_weights, {"change": "swapped"}, id="swapped weights file"),
    pytest.param(_case_weights, {"change": "outside"}, id="registry path outside"),
    pytest.param(_case_quoting, {}, id="record fields in commands"),
    pytest.param(_case_modes_help_and_rerun, {}, id="umask, help, finished run"),
]


@pytest.mark.parametrize("case, kwargs", CASES)
def test_more_bad_inputs_one_line(case, kwargs, tmp_path, data_dir):
    """Every fault ends in one line on stderr and exit 2 (or the behaviour named for it), with no traceback, and
    the disk afterwards as it should be: nothing written, nothing overwritten, nothing half-written."""
    case(tmp_path, data_dir, **kwargs)


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
    """Every measured number of the rendered Table 2 equals the value in its record, at full precision: the
    paper-protocol number is the record's adv_acc (adversarial input alone), the robust one its robust_acc
    (clean ∧ adversarial); the markdown writes the same CSV beside itself."""
    out = tmp_path / "table2.csv"
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--results", str(results)])
    assert res.exit_code == 0, res.output
    rec = json.loads((results / "run.json").read_text())
    key = next(a["key"] for a in rec["config"]["attacks"] if a["name"] == "pgd")
    assert key == "PGD-20"  # the default pgd at Linf 8/255 has App. A.2's settings
    df = pd.read_csv(out, dtype=str, keep_default_na=False, skiprows=1)  # the first line: the mark of `table`
    measured = df[df["section"] == "measured"]
    assert sorted(set(measured["row"])) == ["m1", "m2"]  # ZeroPur C and C-F
    for rid, rows in measured.groupby("row"):
        stages = "cf" if "C-F" in rows["method"].iloc[0] else "c"
        s = rec["variants"][f"zeropur-{stages}"]["summary"]
        get = lambda col, measure: rows[(rows["column"] == col) & (rows["measure"] == measure)].iloc[0]  # noqa
        for measure, name in (("paper_protocol", "adv_acc"), ("robust", "robust_acc")):
            row = get("PGD-20", measure)
            assert float(row["value"]) == s[name][key]
            assert [float(row["ci95_lo"]), float(row["ci95_hi"])] == s["ci95"][name][key]
        assert s["robust_acc"][key] <= min(s["adv_acc"][key], s["defended_clean_acc"])
        clean = get("Clean (defended)", "defended_clean")
        assert float(clean["value"]) == s["defended_clean_acc"]
        assert [float(clean["ci95_lo"]), float(clean["ci95_hi"])] == s["ci95"]["defended_clean_acc"]
        assert "ResNet-18" not in clean["architecture"] and "ResNet-20" in clean["architecture"]
        assert clean["n"] == "20" and clean["record"] == str(results / "run.json")
        # No AutoAttack-rand in this run: no number for it
        assert get("AutoAttack", "paper_protocol")["value"] == "" and not len(
            rows[(rows["column"] == "AutoAttack") & (rows["measure"] == "robust")])
        # The shared ResNet-20 is 'standard-padcrop': no paper ZeroPur row of that recipe, so no Δ
        assert clean["recipe"] == rec["config"]["recipe"] == "standard-padcrop"
        assert get("PGD-20", "paper_protocol")["paper_row"] == get("PGD-20", "paper_protocol")["delta_points"] == ""
    md = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "table2.md"), "--results", str(results)])
    assert md.exit_code == 0 and "Gowal" in md.output
    text = (tmp_path / "table2.md").read_text()
    assert "### Measured rows: robust accuracy" in text and "PGD-20 robust" in text
    # the missing AutoAttack column comes with the command that runs every attack of the table with these settings
    item = next(ln for ln in text.splitlines() if ln.startswith("- AutoAttack for "))
    assert "--attack pgd --attack autoattack:version=rand --n-ex 20" in item
    assert "--zp coarse_steps=3,fine_steps=3" in item
    assert (tmp_path / "table2.csv").read_text() == out.read_text()  # the CSV beside the markdown


def test_malicious_checkpoint_cli(tmp_path):
    ckpt, sentinel = make_malicious_checkpoint(tmp_path)
    res = CliRunner().invoke(main, ["run", "--model", "resnet20", "--checkpoint", str(ckpt), "--n-ex", "4",
                                    "--out", str(tmp_path / "r.json")])
    _one_line_error(res, "refusing to load")
    assert not sentinel.exists() and not (tmp_path / "r.json").exists()
