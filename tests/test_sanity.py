"""Issue 4, sanity checks (Carlini et al. 2019): eps sweep, convergence, gradient-free vs gradient, adaptive vs
transfer — end to end on real data and the shared ResNet-20, and the decision rules on crafted numbers."""
from __future__ import annotations

import json

import pytest

from zeropur_bench.errors import UserError
from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
from zeropur_bench.sanity import (decide_adaptive_vs_transfer, decide_convergence, decide_eps_sweep,
                                  decide_gradient_free, half_width, run_sanity, sanity_report_text)
from zeropur_bench.stats import wilson

from conftest import WEIGHTS

N = 32
EPS = (8 / 255, 16 / 255, 32 / 255, 64 / 255)


@pytest.fixture(scope="module")
def report(data_dir, tmp_path_factory):
    cfg = EvalConfig(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=N, batch_size=N,
                     defenses=[DefenseSpec(profile="authors", stages="c", overrides={"coarse_steps": 3})])
    out = tmp_path_factory.mktemp("sanity") / "sanity.json"
    return run_sanity(cfg, data_dir=data_dir, eps_grid=EPS, attack=AttackSpec("bpda-eot", {"steps": 3}),
                      square_queries=20, out=out)


def test_report_has_four_checks_with_numbers(report):
    assert [c["name"] for c in report["checks"]] == ["eps-sweep", "convergence", "gradient-free",
                                                     "adaptive-vs-transfer"]
    assert report["n"] == N and report["variant"] == "zeropur-c"
    on_disk = json.loads(open(report["_path"]).read())
    assert on_disk["checks"] == report["checks"] and on_disk["config"]["model"] == "resnet20"
    by = {c["name"]: c for c in report["checks"]}
    for c in report["checks"]:
        assert isinstance(c["passed"], bool) and c["message"]
    # every failed check, and only those, is flagged
    assert len(report["flags"]) == sum(not c["passed"] for c in report["checks"])
    conv = by["convergence"]["details"]
    assert (conv["steps"], conv["more_steps"]) == (3, 6)
    # any-step counting with the same seed: the 6-step run repeats the 3-step run's iterates, then goes on
    assert conv["acc_more_steps"] <= conv["acc_steps"]
    gf = by["gradient-free"]["details"]
    assert 0.0 <= gf["square_acc"] <= report["defended_clean_acc"]
    assert gf["gradient_acc"] <= min(gf["gradient_acc_per_attack"].values()) + 1e-12
    av = by["adaptive-vs-transfer"]["details"]
    assert av["adaptive_acc"] == gf["gradient_acc"]
    # robust = clean ∧ adversarial (records v2): never above the defended clean accuracy, transfer included
    assert av["transfer_acc"] <= report["defended_clean_acc"] + 1e-12
    assert report["schema"] == "zeropur-bench/sanity/v2"
    # the same examples: the paired counts reproduce the accuracy difference
    assert av["adaptive_acc"] - av["transfer_acc"] == pytest.approx(
        (av["transfer_only_breaks"] - av["adaptive_only_breaks"]) / N)
    text = sanity_report_text(report)
    assert "| check" in text and "eps-sweep" in text and "64/255" in text
    print("\n" + text)


def test_eps_sweep_monotone_and_reaches_zero(report):
    d = report["checks"][0]["details"]
    sweep = d["sweep"]
    assert [r["eps"] for r in sweep] == pytest.approx(list(EPS))
    acc = [r["robust_acc"] for r in sweep]
    # a 3-step attack is not monotone per example in eps (a larger step takes another path; here 2 of 32 rose
    # from 8/255 to 16/255 on one CPU), and flagging that is the check's job: the report's verdict must follow
    # from its own numbers, and the attack must win overall as eps grows
    d_again = decide_eps_sweep([r["eps"] for r in sweep], acc, N)
    assert d["monotone"] == d_again["monotone"] and len(d["rises"]) == len(d_again["rises"])
    assert report["checks"][0]["passed"] == (d_again["monotone"] and d_again["reaches_zero"])
    assert acc[-1] < acc[0] and acc[-1] <= 0.1, acc
    assert acc[0] <= report["defended_clean_acc"]
    # the bare classifier is in the sweep too (same step count, PGD): broken at every eps here
    assert [r["bare_attack"] for r in sweep][0] == "pgd[steps=3]"
    assert all(r["bare_robust_acc"] <= 0.1 for r in sweep), [r["bare_robust_acc"] for r in sweep]
    assert "bare classifier" in sanity_report_text(report)


def test_decisions_on_crafted_numbers():
    # eps sweep
    assert decide_eps_sweep([8, 16, 32], [0.4, 0.2, 0.0], 100)["passed"]
    d = decide_eps_sweep([32, 8, 16], [0.0, 0.4, 0.2], 100)  # order of the grid does not matter
    assert d["passed"] and d["acc_at_largest_eps"] == 0.0
    d = decide_eps_sweep([8, 16, 32], [0.4, 0.2, 0.3], 100)
    assert not d["passed"] and not d["reaches_zero"] and not d["monotone"]
    assert decide_eps_sweep([8, 16, 32], [0.2, 0.21, 0.0], 100)["monotone"]  # +1 example: slack
    assert not decide_eps_sweep([8, 16, 32], [0.2, 0.22, 0.0], 100)["monotone"]
    # convergence: half-width of the Wilson interval of the base accuracy (n=100, 40%: ~9.4 pt)
    hw = half_width(40, 100)
    assert hw == pytest.approx((wilson(40, 100)[1] - wilson(40, 100)[0]) / 2) and 0.09 < hw < 0.1
    assert decide_convergence(40, 32, 100)["passed"]
    assert not decide_convergence(40, 30, 100)["passed"]
    # gradient-free: Square breaks 15 examples the gradient attacks missed, the reverse never → masking
    grad = [True] * 40 + [False] * 60
    square = [True] * 25 + [False] * 75
    d = decide_gradient_free(grad, square)
    assert d["masking_suspected"] and not d["passed"]
    assert (d["square_only_breaks"], d["gradient_only_breaks"]) == (15, 0) and d["mcnemar_p"] < 1e-4
    # Square lower by one example only: noise, no flag; Square weaker: no flag
    assert decide_gradient_free(grad, [True] * 39 + [False] * 61)["passed"]
    assert decide_gradient_free(square, grad)["passed"]
    # adaptive vs transfer: adaptive above transfer on the same examples → flag, even by one example
    d = decide_adaptive_vs_transfer([True] * 41 + [False] * 59, grad)
    assert not d["passed"] and d["adaptive_acc"] > d["transfer_acc"]
    assert decide_adaptive_vs_transfer(grad, grad)["passed"]
    assert decide_adaptive_vs_transfer(square, grad)["passed"]
    with pytest.raises(UserError):
        decide_gradient_free([True], [True, False])


def test_bad_arguments(data_dir):
    cfg = EvalConfig(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=4)
    with pytest.raises(UserError, match="step count"):
        run_sanity(cfg, data_dir=data_dir, attack=AttackSpec("square"))
    with pytest.raises(UserError, match="steps_factor"):
        run_sanity(cfg, data_dir=data_dir, steps_factor=1)
    with pytest.raises(UserError, match="defended"):
        run_sanity(EvalConfig(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=4,
                              defenses=[DefenseSpec(name="none")]), data_dir=data_dir)


def test_sanity_checks_any_registered_defense(data_dir, tmp_path):
    """`zeropur-bench sanity --defense bit-depth` checks that purifier (issue 34's per-row sanity checks): the
    report names it, runs the four checks on it, and lands on the purifier board's row; two variants are
    refused in one line."""
    from click.testing import CliRunner

    from zeropur_bench.cli import main
    from zeropur_bench.cli.options import RunOptions, build_configs
    from zeropur_bench.cli.sanity import _sanity_layout
    from zeropur_bench.reports.purifiers import defense_identity, load_sanity_reports, sanity_verdicts

    (cfg,) = build_configs(RunOptions(model="resnet20-cifar10-standard", defenses=("bit-depth:bits=4",)),
                           _sanity_layout)
    assert [(d.name, d.options) for d in cfg.defenses] == [("bit-depth", {"bits": 4})]
    with pytest.raises(UserError, match="one defense variant"):
        build_configs(RunOptions(model="resnet20-cifar10-standard", defenses=("blur",),
                                 blur=("median:3", "gaussian:1.2")), _sanity_layout)
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["sanity", "--model", "resnet20-cifar10-standard", "--defense", "bit-depth",
                                    "--n-ex", "4", "--batch-size", "4", "--square-queries", "20",
                                    "--attack", "bpda-eot:steps=2", "--data-dir", data_dir, "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["config"]["defenses"][0]["name"] == "bit-depth" and {c["name"] for c in rep["checks"]} >= {
        "eps-sweep", "gradient-free", "adaptive-vs-transfer"}
    (verdict,) = sanity_verdicts(load_sanity_reports(tmp_path)).items()
    assert verdict[0] == defense_identity("resnet20-cifar10-standard", "bit-depth", {})
    assert verdict[1].endswith("(n=4)")


def test_sanity_default_attack_follows_the_defenses_gradient(data_dir, tmp_path):
    """A defense without BPDA (random resize-and-pad changes the shape) gets PGD-EOT through the full gradient as
    the sanity checks' default attack, and the checks run on it, judged worst-of-N; BPDA+EOT stays the default for
    one that offers BPDA (bit-depth, and ZeroPur, a factory that says only once built)."""
    from click.testing import CliRunner

    from zeropur_bench.cli import main
    from zeropur_bench.defense import registered as get_defense
    from zeropur_bench.sanity import DEFAULT_ATTACK, FULL_GRADIENT_ATTACK, default_attack

    assert get_defense("random-resize-pad").gradients == ("full",)
    assert get_defense("bit-depth").gradients == ("bpda",)
    assert default_attack(DefenseSpec(name="random-resize-pad")) == FULL_GRADIENT_ATTACK
    assert default_attack(DefenseSpec(name="bit-depth")) == DEFAULT_ATTACK
    assert default_attack(DefenseSpec(profile="authors", stages="c")) == DEFAULT_ATTACK
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["sanity", "--model", "resnet20-cifar10-standard", "--defense",
                                    "random-resize-pad", "--estimator", "worst-of-n", "--estimator-n", "10",
                                    "--n-ex", "4", "--batch-size", "4", "--square-queries", "10",
                                    "--data-dir", data_dir, "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["params"]["attack"]["name"] == "pgd-eot" and rep["params"]["steps"] == 10
    assert rep["config"]["defenses"][0]["name"] == "random-resize-pad"
    assert rep["config"]["estimator"] == "worst-of-n"
    assert len(rep["checks"]) == 4
