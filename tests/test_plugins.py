"""A researcher's own purifier, in a file outside the package, through every command that runs or reads it (issue
31): the exact user file of the issue, run in the transfer and adaptive settings, rendered by ``table``, checked
by ``check``, listed by ``list``; broken plugin files refused in one line; and no attack ever assigns to a
defense."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

USER_FILE = '''import torch
from zeropur_bench import Purifier, register_defense

@register_defense("my-squeeze")
class MySqueeze(Purifier):
    """Feature squeezing (Xu et al. 2018): each channel reduced to `bits` bits."""
    def __init__(self, classifier, bits: int = 4):
        super().__init__(classifier)
        self.bits = bits

    def purify(self, x):
        levels = 2 ** self.bits - 1
        return torch.round(x * levels) / levels
'''


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZEROPUR_BENCH_TEST_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zeropur_bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def plugin_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> dict:
    """The user file, run as the issue writes it: transfer PGD-20 and adaptive BPDA+EOT (5 steps), 8 images."""
    tmp = tmp_path_factory.mktemp("plugin")
    (tmp / "my_purifiers.py").write_text(USER_FILE)
    runs = {}
    for setting, extra in (("transfer", ["--attack", "pgd"]),
                           ("adaptive", ["--setting", "adaptive", "--attack", "bpda-eot:steps=5"])):
        out = tmp / "results" / f"{setting}.json"
        p = _cli(["run", "--plugin", "my_purifiers.py", "--defense", "my-squeeze:bits=3", *extra, "--n-ex", "8",
                  "--no-progress", "--data-dir", data_dir, "--out", str(out)], tmp)
        assert p.returncode == 0, p.stderr
        runs[setting] = json.loads(out.read_text())
    return {"dir": tmp, **runs}


def _squeeze(x: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def test_plugin_runs_in_both_settings(plugin_runs: dict, cifar10_test) -> None:
    from zeropur_bench.classifiers import load_classifier

    for setting in ("transfer", "adaptive"):
        rec = plugin_runs[setting]
        (key,) = rec["variants"]
        v = rec["variants"][key]
        assert key == "my-squeeze[bits=3]"
        # its settings came from its constructor: in the record and in the comparison key
        assert v["defense"]["name"] == "my-squeeze" and v["defense"]["options"] == {"bits": 3}
        assert v["defense"]["resolved"] == {"method": "my-squeeze", "bits": 3}
        assert rec["keys"]["comparison"]["defenses"] == [{"method": "my-squeeze", "bits": 3}]
        assert v["defense"]["deterministic"] is True and v["defense"]["forward_passes_per_prediction"] == 1
    # the defended clean judgement is the purifier's: recomputed here from the user's own formula
    clf = load_classifier("resnet20-cifar10-standard", "cifar10")
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    with torch.no_grad():
        want = (clf(_squeeze(x, 3)).argmax(1) == y).tolist()
    assert plugin_runs["transfer"]["variants"]["my-squeeze[bits=3]"]["examples"]["defended_clean_correct"] == want
    # an adaptive BPDA attack breaks at least as much as the transfer one (it sees the purifier)
    t = plugin_runs["transfer"]["summary"]["robust_acc"]["PGD-20"]
    a = plugin_runs["adaptive"]["summary"]["robust_acc"]["bpda-eot[steps=5]"]
    assert a <= t + 1e-9


def test_plugin_records_render_and_check(plugin_runs: dict, data_dir: str) -> None:
    tmp = plugin_runs["dir"]
    p = _cli(["table", "--table", "2", "--results", "results", "--out", "t2.md"], tmp)
    assert p.returncode == 0, p.stderr
    text = (tmp / "t2.md").read_text()
    assert "Measured purifiers" in text and "my-squeeze[bits=3]" in text
    base = tmp / "baseline.json"
    p = _cli(["check", "--baseline", str(base), "--record", "results/transfer.json", "--update"], tmp)
    assert p.returncode == 0, p.stderr
    p = _cli(["check", "--plugin", "my_purifiers.py", "--baseline", str(base), "--data-dir", data_dir,
              "--no-progress"], tmp)  # re-runs the user's purifier from the baseline's config
    assert p.returncode == 0, p.stderr + p.stdout
    assert "my-squeeze[bits=3]" in p.stdout
    p = _cli(["list", "--plugin", "my_purifiers.py"], tmp)
    assert p.returncode == 0 and "my-squeeze" in p.stdout and "bits=4" in p.stdout


BAD_PLUGINS = {
    "fails to import": ("import no_such_module_2099\n", "failed to import: ModuleNotFoundError"),
    "takes a name": (USER_FILE.replace('"my-squeeze"', '"zeropur"'), "the defense name 'zeropur' is taken"),
    "lacks purify": (USER_FILE.replace("def purify(self, x)", "def squeeze(self, x)"), "lacks purify(x)"),
    "registers nothing": ("x = 1\n", "registered no defense"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_bad_plugin_is_one_line(case: str, tmp_path: Path) -> None:
    text, message = BAD_PLUGINS[case]
    (tmp_path / "bad.py").write_text(text)
    p = _cli(["run", "--plugin", "bad.py", "--defense", "my-squeeze", "--n-ex", "2"], tmp_path)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "results").exists()


class _Sealed:
    """Mixin: once sealed, any assignment to an attribute of the defense fails the test."""

    def __setattr__(self, name: str, value: object) -> None:
        if self.__dict__.get("_sealed"):
            raise AssertionError(f"an attack assigned defense.{name}")
        super().__setattr__(name, value)


SMALL = {"pgd": {"steps": 2}, "difgsm": {"steps": 2}, "autoattack": {"version": "standard", "n_iter": 2},
         "square": {"n_queries": 20}, "bpda-eot": {"steps": 2, "eot_reps": 2, "verify_reps": 2},
         "defense-aware": {"steps": 2, "lambdas": (1.0,), "fine_term": True},
         "pgd-eot": {"steps": 2, "eot_iter": 2, "verify_reps": 2, "surrogate": "normalized"},
         "autoattack-bpda": {"n_iter": 2}, "autoattack-full": {"n_iter": 2}}


def test_no_attack_assigns_to_the_defense(resnet20, cifar10_test) -> None:
    """Every registered attack against a (randomized) ZeroPur that refuses attribute assignment: attacks ask for
    gradient access through wrappers and never change the defense."""
    from zeropur_bench.attacks import ATTACKS, make_attack
    from zeropur_bench.defense import ZeroPur

    class SealedZeroPur(_Sealed, ZeroPur):
        pass

    d = SealedZeroPur(resnet20, profile="paper", stages="cf", coarse_steps=2, fine_steps=2)
    object.__setattr__(d, "_sealed", True)
    assert set(SMALL) == set(ATTACKS)  # a new attack must be added here
    x, y = cifar10_test[0][:4], cifar10_test[1][:4]
    for name in sorted(ATTACKS):
        atk = make_attack(name, d, eps=8 / 255, seed=0, **SMALL[name])
        x_adv = atk(x, y, torch.arange(4))
        assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 8 / 255 + 1e-6, name
    with pytest.raises(AssertionError, match="assigned defense.grad_mode"):
        d.grad_mode = "full"


def test_run_options_load_nothing(monkeypatch) -> None:
    """Building a run's configurations touches no model: a calibrated variant of a classifier with no shipped
    calibration is fitted by the engine when it builds the defense, never while options are parsed."""
    import importlib

    from zeropur_bench.cli.options import RunOptions, build_configs

    classifiers = importlib.import_module("zeropur_bench.classifiers")
    calibrate = importlib.import_module("zeropur_bench.defense.calibrate")  # the module (its function shadows it)

    def refuse(*args, **kwargs):
        raise AssertionError("loaded while building run options")

    monkeypatch.setattr(classifiers, "load_classifier", refuse)
    monkeypatch.setattr(calibrate, "calibrate", refuse)
    ckpt = str(Path(__file__).resolve().parents[2] / "shared" / "weights" / "cifar10" / "resnet20.th")
    (config,) = build_configs(RunOptions(model="resnet20", checkpoint=ckpt, defenses=("zeropur", "blur", "none"),
                                         profiles=("calibrated", "authors"), attacks=("pgd",)))
    # C is made once, as the authors' (the calibration changes only the fine stage)
    assert [d.key for d in config.defenses] == ["none", "blur", "zeropur-cf-calibrated", "zeropur-c-authors",
                                                "zeropur-cf-authors"]
    assert config.defenses[2].options["profile"] == "calibrated" and "calibration" not in config.defenses[2].options
