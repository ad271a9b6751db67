"""Issue 20: the calibrated profile, on real data and shipped weights.

- calibration is deterministic and reads no test image;
- calibrated C-F beats C on adversarial inputs for the shipped Strong model (where the authors' 1e-4 collapses);
- a classifier whose two fine layers are scaled by a constant (the next layer compensating, predictions unchanged)
  gets a weight that compensates, keeps its C-F accuracy under 'calibrated', and loses it under 'authors';
- bad input gets one clear error.
"""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from zeropur_bench import load_classifier, registry
from zeropur_bench.cli import main
from zeropur_bench.defense import ZeroPur
from zeropur_bench.defense.calibrate import calibrate
from zeropur_bench.defense.calibration import (AUTHORS_WEIGHT, DEFAULT_RULE, REFERENCE, Calibration, calibration_slice,
                                               weights_sha256)
from zeropur_bench.errors import UserError

SHIPPED = ["resnet20-cifar10-vanilla", "resnet20-cifar10-standard", "resnet20-cifar10-strong",
           "resnet20-cifar100-vanilla", "resnet20-cifar100-standard", "resnet20-cifar100-strong",
           "resnet20-cifar10-public", "resnet56-cifar10-public", "resnet20-cifar10-fastat",
           "resnet18-cifar10-standard", "resnet18-cifar10-strong"]


def _pgd20(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from zeropur_bench.attacks import make_attack

    return make_attack("pgd", model, eps=8 / 255, norm="Linf", seed=0)(x, y, torch.arange(len(x)))


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def public(data_dir):
    return load_classifier("resnet20-cifar10-public", "cifar10")


def test_reference_scale_is_the_public_models(public, data_dir):
    """S_ref is what the scale rule measures on the public ResNet-20 (so that it gives it the authors' 1e-4)."""
    cal = calibrate(public, "cifar10", rule="scale", data_dir=data_dir)
    assert cal.details["feature_scale"] == pytest.approx(REFERENCE["scale"], rel=1e-5)
    assert cal.details["feature_scale_layers"] == pytest.approx(REFERENCE["layers"], rel=1e-5)
    assert cal.ila_weight == pytest.approx(AUTHORS_WEIGHT, rel=1e-5)
    assert weights_sha256(public) == cal.weights_sha256


def test_calibration_deterministic_and_reads_no_test_image(monkeypatch, data_dir):
    """Both rules, twice each: identical results, and every image read comes from the training split."""
    import zeropur_bench.data as data

    splits = []
    real = data.load_data

    def spy(dataset, split="test", *a, **k):
        splits.append(split)
        return real(dataset, split, *a, **k)

    monkeypatch.setattr(data, "load_data", spy)
    clf = load_classifier("resnet20-cifar10-strong", "cifar10")
    grid = (1e-4, 2e-4, 4e-4)
    runs = [calibrate(clf, "cifar10", blur="gaussian:1.2", rule=r, n=16, seed=3, grid=grid, data_dir=data_dir)
            for r in ("scale", "clean-guard", "scale", "clean-guard")]
    assert splits and set(splits) == {"train"}, splits
    for a, b in ((runs[0], runs[2]), (runs[1], runs[3])):
        assert a.ila_weight == b.ila_weight and a.details.get("curve") == b.details.get("curve")
    guard = runs[1]
    assert guard.rule == "clean-guard" and guard.split == "train" and (guard.n, guard.seed) == (16, 3)
    assert guard.ila_weight in grid and guard.details["curve"], guard.details
    # the chosen weight is the largest evaluated one within delta of the bare classifier
    ok = [c["ila_weight"] for c in guard.details["curve"]
          if c["defended_clean_acc"] >= guard.details["bare_clean_acc"] - guard.details["delta"] - 1e-12]
    assert guard.ila_weight == max(ok)
    # the slice is the engine's data_seed rule: sorted first n of a seeded permutation
    assert torch.equal(calibration_slice(50000, 16, 3), torch.randperm(50000, generator=torch.Generator()
                                                                       .manual_seed(3))[:16].sort().values)


def test_every_shipped_classifier_has_its_calibration():
    """The registry ships a default-rule calibration per paper blur, found by the weights' sha256."""
    for name in SHIPPED:
        e = registry.get(name)
        clf = load_classifier(name, e.dataset)
        blur = {"vanilla": "median:3"}.get(e.recipe, "gaussian:1.2") if e.recipe != "standard-padcrop" else "median:3"
        zp = ZeroPur(clf, profile="calibrated", stages="cf", blur=blur)
        assert zp.calibration.rule == DEFAULT_RULE and zp.calibration.source == f"registry:{name}", name
        assert zp.calibration.split == "train" and zp.config()["calibration"]["ila_weight"] == zp.ila_weight
        assert zp.ila_weight != AUTHORS_WEIGHT or name == "resnet20-cifar10-public"


def test_calibrated_cf_beats_c_on_the_strong_model(cifar10_test):
    """Shipped Strong ResNet-20, gaussian σ1.2, PGD-20 transfer on 32 test images: calibrated C-F recovers more
    adversarial inputs than C (the authors' 1e-4 leaves C-F below C here: Table 2, S-C-F 9.6%)."""
    from zeropur_bench.defense import CoarseCache

    clf = load_classifier("resnet20-cifar10-strong", "cifar10")
    x, y = cifar10_test[0][:32], cifar10_test[1][:32]
    x_adv = _pgd20(clf, x, y)
    cache = CoarseCache()
    c = ZeroPur(clf, profile="authors", stages="c", blur="gaussian:1.2", coarse_cache=cache)
    cal = ZeroPur(clf, profile="calibrated", stages="cf", blur="gaussian:1.2", coarse_cache=cache)
    authors = ZeroPur(clf, profile="authors", stages="cf", blur="gaussian:1.2", coarse_cache=cache)
    acc_c, acc_cal, acc_auth = _acc(c, x_adv, y), _acc(cal, x_adv, y), _acc(authors, x_adv, y)
    print(f"\nStrong, PGD-20 transfer, n=32: C {acc_c:.3f}, C-F calibrated {acc_cal:.3f}, C-F authors {acc_auth:.3f}")
    assert cache.hits == 2  # one coarse stage served all three variants
    assert acc_cal > acc_c > acc_auth
    # the shared coarse stage changes nothing: the same predictions without the cache
    fresh = ZeroPur(clf, profile="calibrated", stages="cf", blur="gaussian:1.2")
    with torch.no_grad():
        assert torch.equal(fresh(x_adv).argmax(1), cal(x_adv).argmax(1))


class _Scaled(nn.Module):
    """``c · inner(h / c_in)``: a stage whose output is scaled by ``c`` and whose input scale is undone."""

    def __init__(self, inner: nn.Module, c: float, c_in: float = 1.0) -> None:
        super().__init__()
        self.inner, self.c, self.c_in = inner, c, c_in

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.c * self.inner(h / self.c_in)


def _scaled_copy(clf: nn.Module, c: float) -> nn.Module:
    """layer2 and layer3 outputs × c; layer3 and the head undo it, so the logits are unchanged (ResNet-20)."""
    import copy

    m = copy.deepcopy(clf)
    net = m.net
    net.layer2 = _Scaled(net.layer2, c)
    net.layer3 = _Scaled(net.layer3, c, c_in=c)
    net.linear = _Scaled(net.linear, 1.0, c_in=c)  # pooled features / c: the same logits
    return m


def test_scaled_feature_layers_get_a_compensating_weight(public, cifar10_test, data_dir):
    """Public ResNet-20 with its fine layers' features × 0.4: the logits are unchanged, the authors' C-F loses
    its adversarial accuracy (ILA's gradient shrinks by 0.16 against LPIPS), the calibrated weight grows by
    1/0.16 and gives C-F its accuracy back."""
    c = 0.4
    scaled = _scaled_copy(public, c)
    x, y = cifar10_test[0][:32], cifar10_test[1][:32]
    with torch.no_grad():
        assert torch.allclose(scaled(x), public(x), atol=1e-4)
    x_adv = _pgd20(public, x, y)
    cal0 = calibrate(public, "cifar10", rule="scale", data_dir=data_dir)
    cal1 = calibrate(scaled, "cifar10", rule="scale", data_dir=data_dir)
    assert cal1.ila_weight == pytest.approx(cal0.ila_weight / c ** 2, rel=1e-4)
    base = _acc(ZeroPur(public, profile="authors", stages="cf"), x_adv, y)
    lost = _acc(ZeroPur(scaled, profile="authors", stages="cf"), x_adv, y)
    kept = _acc(ZeroPur(scaled, profile="calibrated", stages="cf", calibration=cal1), x_adv, y)
    print(f"\npublic C-F {base:.3f}; features x{c}: authors {lost:.3f}, calibrated {kept:.3f}")
    assert lost < base - 0.15
    assert abs(kept - base) <= 2 / 32
    # a bare module has no name: without calibration= there is nothing to look up
    with pytest.raises(UserError, match="needs a calibration"):
        ZeroPur(scaled, profile="calibrated")


def test_bad_calibration_input(public, tmp_path, data_dir):
    strong = load_classifier("resnet20-cifar10-strong", "cifar10")
    other = calibrate(strong, "cifar10", rule="scale", n=8, data_dir=data_dir)
    with pytest.raises(UserError, match="another classifier"):
        ZeroPur(public, profile="calibrated", calibration=other)
    with pytest.raises(UserError, match="larger than the training split"):
        calibrate(public, "cifar10", rule="scale", n=50001, data_dir=data_dir)
    with pytest.raises(UserError, match="profile='authors'"):
        ZeroPur(public, profile="calibrated", ila_weight=2e-4)
    with pytest.raises(UserError, match="for profile='calibrated'"):
        ZeroPur(public, profile="authors", calibration=other)
    guard_like = Calibration.from_dict({**other.to_dict(), "rule": "clean-guard", "blur": "gaussian:1.2"})
    with pytest.raises(UserError, match="fitted with blur"):
        ZeroPur(strong, profile="calibrated", blur="median:3", calibration=guard_like)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rule": "scale"}))
    with pytest.raises(UserError, match="not a zeropur-bench calibration"):
        ZeroPur(public, profile="calibrated", calibration=str(bad))


CAL = ["calibrate", "--dataset", "cifar10", "--rule", "scale", "--n", "8"]


@pytest.mark.parametrize("args,needle", [
    (["--model", "NoSuchModel2099"], "unknown model 'NoSuchModel2099'"),
    (["--model", "resnet20-cifar10-public", "--n", "60000"], "larger than the training split"),
    (["--model", "resnet20-cifar100-standard"], "--dataset cifar100"),
    (["--model", "resnet20-cifar10-public", "--delta", "150"], "--delta"),
])
def test_calibrate_cli_bad_input_one_line(tmp_path, data_dir, monkeypatch, args, needle):
    monkeypatch.setenv("ZEROPUR_BENCH_OFFLINE", "1")
    out = tmp_path / "c.json"
    res = CliRunner().invoke(main, CAL + ["--data-dir", data_dir, "--out", str(out)] + args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert "Traceback" not in res.output and not out.exists()


def test_calibrate_cli_file_round_trip(tmp_path, data_dir):
    """`calibrate` writes a file that `run --profile calibrated --calibration` uses, refused for another
    classifier and never written over a file that is not a calibration."""
    out = tmp_path / "c.json"
    args = ["--model", "resnet20-cifar10-strong", "--data-dir", data_dir, "--out", str(out)]
    res = CliRunner().invoke(main, CAL + args)
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["format"] == "zeropur-bench/calibration/v1" and d["rule"] == "scale" and d["split"] == "train"
    run = ["run", "--model", "resnet20-cifar10-strong", "--n-ex", "4", "--batch-size", "4", "--attack",
           "pgd:steps=1", "--stages", "cf", "--profile", "calibrated", "--calibration", str(out), "--zp",
           "coarse_steps=1,fine_steps=2", "--no-progress", "--data-dir", data_dir, "--out", str(tmp_path / "r.json")]
    res = CliRunner().invoke(main, run)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r.json").read_text())
    v = rec["variants"]["zeropur-cf"]["defense"]
    assert v["calibration"]["ila_weight"] == d["ila_weight"] and v["calibration"]["source"] == "file:c.json"
    assert rec["keys"]["comparison"]["defenses"][0]["calibration"]["ila_weight"] == pytest.approx(d["ila_weight"])
    res = CliRunner().invoke(main, [a if a != "resnet20-cifar10-strong" else "resnet20-cifar10-standard" for a in run])
    assert res.exit_code == 2 and "another classifier" in res.stderr, res.output
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    res = CliRunner().invoke(main, CAL + args[:-1] + [str(notes)])
    assert res.exit_code == 2 and "refusing to overwrite" in res.stderr and notes.read_text() == "mine"


def test_one_adversarial_set_serves_every_profile_and_the_blur(tmp_path, data_dir):
    """`run --defense blur --defense zeropur --profile authors --profile calibrated --profile paper`: one record,
    the blur alone, one C shared by authors and calibrated, and the paired comparisons the tables print."""
    from zeropur_bench.paired import compare
    from zeropur_bench.reports import render_table

    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, [
        "run", "--model", "resnet20-cifar10-strong", "--n-ex", "8", "--batch-size", "8", "--attack", "pgd",
        "--defense", "blur", "--defense", "zeropur", "--profile", "authors", "--profile", "paper", "--profile",
        "calibrated", "--zp", "coarse_steps=2,fine_steps=3", "--no-progress", "--data-dir", data_dir,
        "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert list(rec["variants"]) == ["blur", "zeropur-c-authors", "zeropur-cf-authors", "zeropur-c-paper",
                                     "zeropur-cf-paper", "zeropur-cf-calibrated"]
    assert rec["config"]["primary_variant"] == "zeropur-cf-calibrated"
    v = rec["variants"]
    assert v["blur"]["defense"]["resolved"] == {"method": "blur", "blur": "gaussian:1.2"}  # Strong: the paper's blur
    assert v["blur"]["defense"]["forward_passes_per_prediction"] == 1
    cal = v["zeropur-cf-calibrated"]["defense"]
    assert cal["calibration"]["source"] == "registry:resnet20-cifar10-strong"
    assert cal["resolved"]["ila_weight"] == cal["calibration"]["ila_weight"] != 1e-4
    assert v["zeropur-cf-authors"]["defense"]["calibration"] is None
    # the coarse stage is shared, not changed: the same passes per prediction as a C-F of its own
    assert cal["forward_passes_per_prediction"] == v["zeropur-cf-authors"]["defense"]["forward_passes_per_prediction"]
    labels = {c["comparison"] for c in compare(rec, ["PGD-20"])}
    assert labels == {"C-F vs C (authors)", "C-F vs C (calibrated)", "C-F vs C (paper)", "C-F calibrated vs authors"}
    rec["_path"] = str(out)
    text = render_table(2, [rec])
    assert "Blur only (gaussian:1.2)" in text and "ZeroPur-C-F (calibrated, coarse_steps=2, fine_steps=3)" in text
    assert "### Paired comparisons" in text and "C-F calibrated vs authors" in text
