"""Issue 7: the regression check's decision rule (synthetic vectors, known p-values) and its behaviour on real
runs of the shared ResNet-20 (unchanged rerun passes; a gross break fails; refusals on different data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from zeropur_bench.check import Comparison, compare, make_baseline
from zeropur_bench.cli import main
from zeropur_bench.errors import UserError
from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
from zeropur_bench.evaluate import evaluate

from conftest import WEIGHTS


def _record(base: list[bool], now_by_attack: dict[str, list[bool]], sha="a" * 64, ck="b" * 64,
            eps: float = 8 / 255) -> dict:
    n = len(base)
    return {"schema": "zeropur-bench/record/v2",
            "keys": {"comparison": {"eps": eps, "data_sha256": sha}},
            "provenance": {"data": {"sha256": sha}, "model": {"checkpoint_sha256": ck}},
            "examples": {"index": list(range(n))},
            "variants": {"zeropur-c": {"examples": {"defended_clean_correct": base,
                                                     "robust_correct": now_by_attack}}}}


def test_decision_rule_known_p_values():
    rng = np.random.default_rng(0)
    n = 400
    base = rng.random(n) < 0.6
    worse = base.copy()
    flip = np.flatnonzero(base)[:30]  # 30 examples lost, 4 gained
    worse[flip] = False
    gain = np.flatnonzero(~base)[:4]
    worse[gain] = True
    b = _record(list(map(bool, base)), {"pgd": list(map(bool, base)), "aa": list(map(bool, base))})
    now = _record(list(map(bool, base)), {"pgd": list(map(bool, worse)), "aa": list(map(bool, base))})
    b["baseline"] = {"alpha": 0.05, "floor_margin": 0.5}
    rows = {(r.variant, r.attack): r for r in compare(b, now)}
    expected = binomtest(30, 34, 0.5, alternative="greater").pvalue
    assert rows[("zeropur-c", "pgd")].p_value == pytest.approx(expected, rel=1e-12)
    assert rows[("zeropur-c", "aa")].p_value == 1.0 and rows[("zeropur-c", "clean")].p_value == 1.0
    assert rows[("zeropur-c", "pgd")].significant and rows[("zeropur-c", "pgd")].failed
    assert not rows[("zeropur-c", "aa")].failed
    # the other direction: the same 30-vs-4 split read as "now" gaining 30 is a significant rise
    rows = {(r.variant, r.attack): r for r in compare(now, b)}
    assert rows[("zeropur-c", "pgd")].p_rise == pytest.approx(expected, rel=1e-12)
    assert rows[("zeropur-c", "pgd")].significant_rise and not rows[("zeropur-c", "pgd")].significant
    assert "attack may have been weakened" in rows[("zeropur-c", "pgd")].verdict


def test_refuses_another_configuration():
    base = [True, False] * 5
    b = _record(base, {"pgd": base})
    with pytest.raises(UserError, match=r"configuration differs.*eps"):
        compare(b, _record(base, {"pgd": base}, eps=4 / 255))
    # the what-if mode (--zp) changes the defense on purpose: exempt
    assert all(not r.failed for r in compare(b, _record(base, {"pgd": base}, eps=4 / 255), same_config=False))


def test_holm_correction_changes_the_verdict():
    # p = 0.03 alone is significant at 0.05; among 3 cells Holm needs p <= 0.05/3 for the smallest.
    from zeropur_bench.stats import holm

    assert holm([0.03], 0.05) == [True]
    assert holm([0.03, 0.5, 0.9], 0.05) == [False, False, False]
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    # a drop of 4 of 10 examples alone (p = 0.0625 one-sided) never fails; with 2 cells x 2 directions, Holm
    # keeps a p of 0.02 from failing
    base = [True] * 10 + [False] * 10
    now = [False] * 4 + [True] * 6 + [False] * 10
    rows = compare(_record(base, {"pgd": base}), _record(base, {"pgd": now}))
    pgd = next(r for r in rows if r.attack == "pgd")
    assert pgd.p_value == pytest.approx(0.0625) and not pgd.significant
    assert Comparison("v", "a", 0.6, 0.55, 0.03, floor=0.0).verdict == "ok"


def test_floor_fails_without_significance():
    base = [True] * 10 + [False] * 10
    now = [True] * 8 + [False] * 12  # 2 lost: not significant, but below an explicit floor of 0.45
    b = _record(base, {"pgd": base})
    b["baseline"] = {"floors": {"zeropur-c": {"pgd": 0.45}}}
    rows = {r.attack: r for r in compare(b, _record(base, {"pgd": now}))}
    assert not rows["pgd"].significant and rows["pgd"].below_floor and rows["pgd"].failed


def test_refuses_different_data_or_checkpoint():
    base = [True, False] * 5
    b = _record(base, {"pgd": base})
    with pytest.raises(UserError, match="data slice differs"):
        compare(b, _record(base, {"pgd": base}, sha="c" * 64))
    with pytest.raises(UserError, match="checkpoint differs"):
        compare(b, _record(base, {"pgd": base}, ck="d" * 64))


@pytest.fixture(scope="module")
def small_baseline(tmp_path_factory, data_dir) -> Path:
    """A real baseline: shared ResNet-20, 100 images, transfer PGD-10, ZeroPur-C (authors, median:3)."""
    cfg = EvalConfig(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=100, batch_size=100,
                     attacks=[AttackSpec("pgd", {"steps": 10})], defenses=[DefenseSpec(profile="authors", stages="c")])
    rec = evaluate(cfg, data_dir=data_dir, write=False)
    path = tmp_path_factory.mktemp("baselines") / "small.json"
    path.write_text(json.dumps(make_baseline(rec)))
    return path


def test_unchanged_rerun_passes(small_baseline, data_dir):
    res = CliRunner().invoke(main, ["check", "--baseline", str(small_baseline), "--data-dir", data_dir,
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "FAIL" not in res.output and "ok" in res.output


def test_gross_break_fails(small_baseline, data_dir):
    """The blur replaced by the identity: coarse shifting has nothing to pull towards."""
    res = CliRunner().invoke(main, ["check", "--baseline", str(small_baseline), "--data-dir", data_dir,
                                    "--zp", "blur=identity", "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "FAIL (significant drop" in res.output


def test_weakened_attack_fails(small_baseline, data_dir, monkeypatch):
    """The attack patched to take one step while its configuration still says 10: the defense looks stronger,
    robust accuracy rises, and the check must fail on the rise."""
    import torchattacks

    from zeropur_bench.attacks.pgd import PGD

    def one_step(self):
        p = self.params
        atk = torchattacks.PGD(self.target, eps=self.eps, alpha=p["step"], steps=1, random_start=p["random_start"])
        atk.set_device(self.device)
        return atk

    monkeypatch.setattr(PGD, "_torchattack", one_step)
    res = CliRunner().invoke(main, ["check", "--baseline", str(small_baseline), "--data-dir", data_dir,
                                    "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "significant rise: the attack may have been weakened" in res.output


def test_record_of_another_configuration_is_refused(small_baseline, data_dir, tmp_path):
    """A real record at eps 4/255 (adaptive setting, no defense) against the 8/255 transfer baseline."""
    cfg = EvalConfig(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=100, batch_size=100,
                     eps=4 / 255, attacks=[AttackSpec("pgd", {"steps": 1})], defenses=[DefenseSpec(name="none")],
                     setting="adaptive")
    other = tmp_path / "other.json"
    evaluate(cfg, out=other, data_dir=data_dir)
    res = CliRunner().invoke(main, ["check", "--baseline", str(small_baseline), "--record", str(other)])
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1, res.output
    assert "refusing to compare: the configuration differs" in res.stderr and "eps" in res.stderr


def test_v1_baseline_refused_with_remake_command(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "zeropur-bench/record/v1", "config": {}}))
    res = CliRunner().invoke(main, ["check", "--baseline", str(old)])
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1
    assert f"zeropur-bench check --baseline {old} --update" in res.stderr


def test_missing_baseline_is_one_line_error(tmp_path):
    res = CliRunner().invoke(main, ["check", "--baseline", str(tmp_path / "nope.json")])
    assert res.exit_code == 2 and res.stderr.startswith("error: baseline") and len(res.stderr.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("zp,should_fail", [("coarse_steps=3", True), ("blur=identity", True), ("", False)])
def test_power_on_committed_baseline(data_dir, zp, should_fail, monkeypatch):
    """The committed n=500 CIFAR-10 baseline: a weaker defense fails the check, an unchanged rerun passes.
    (Measured: coarse steps 10 -> 3 drops ZeroPur-C clean accuracy 59.0 -> 53.6, p = 0.004.)"""
    from conftest import REPO

    args = ["check", "--baseline", str(REPO / "results/baselines/cifar10-resnet20-transfer.json"),
            "--data-dir", data_dir, "--no-progress"] + (["--zp", zp] if zp else [])
    monkeypatch.chdir(REPO)  # the baseline stores the checkpoint path relative to the repository root
    res = CliRunner().invoke(main, args)
    assert res.exit_code == (1 if should_fail else 0), res.output
