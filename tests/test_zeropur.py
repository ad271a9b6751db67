"""ZeroPur (Alg. 1–2) on real CIFAR-10 data with the shared pretrained ResNet-20."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeropur_bench.defense import PROFILES, ZeroPur, load_defended_model
from zeropur_bench.errors import UserError

N_DEFAULT = 200
EPS_C = PROFILES["authors"]["coarse_eps"]
EPS_F = PROFILES["authors"]["fine_eps"]


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torchattacks

    torch.manual_seed(0)
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)
    return torch.cat([atk(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)])


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _transfer(resnet20: nn.Module, cifar10_test, n: int) -> dict:
    x, y = cifar10_test[0][:n], cifar10_test[1][:n]
    x_adv = _pgd(resnet20, x, y)
    zp = ZeroPur(resnet20, profile="authors", stages="cf", blur="median:3")
    adv = zp.purify_stages(x_adv)
    clean = zp.purify_stages(x)
    return {"x": x, "y": y, "x_adv": x_adv, "adv": adv, "clean": clean,
            "bare_adv": _acc(resnet20, x_adv, y), "coarse": _acc(resnet20, adv["coarse"], y),
            "cf": _acc(resnet20, adv["purified"], y), "clean_cf": _acc(resnet20, clean["purified"], y)}


@pytest.fixture(scope="module")
def transfer(resnet20, cifar10_test) -> dict:
    """PGD-20 (transfer from the bare classifier) on the first 200 test images, purified once (authors, median:3)."""
    return _transfer(resnet20, cifar10_test, N_DEFAULT)


def _check_floors(r: dict) -> None:
    print({k: r[k] for k in ("bare_adv", "coarse", "cf", "clean_cf")})
    assert r["bare_adv"] <= 0.02
    assert r["coarse"] >= 0.55
    assert r["cf"] >= 0.73
    assert r["clean_cf"] >= 0.80


def test_transfer_pgd_accuracy_floors(transfer: dict) -> None:
    _check_floors(transfer)


@pytest.mark.slow
def test_transfer_pgd_accuracy_floors_500(resnet20, cifar10_test) -> None:
    _check_floors(_transfer(resnet20, cifar10_test, 500))


def test_output_in_eps_ball_and_unit_box(transfer: dict) -> None:
    x_adv = transfer["x_adv"]
    for out, eps in ((transfer["adv"]["coarse"], EPS_C), (transfer["adv"]["purified"], EPS_F)):
        assert (out - x_adv).abs().max() <= eps + 1e-6
        assert out.min() >= 0 and out.max() <= 1
    # purification actually moved the images (a no-op would pass the bounds too)
    assert (transfer["adv"]["purified"] - x_adv).abs().max() > EPS_F / 2


def test_objectives_move_in_the_right_direction(resnet20, transfer: dict) -> None:
    zp = ZeroPur(resnet20, profile="authors")
    x_adv, coarse, fine = transfer["x_adv"][:32], transfer["adv"]["coarse"][:32], transfer["adv"]["purified"][:32]
    with torch.no_grad():
        d_adv, d_coarse = zp.coarse_objective(x_adv), zp.coarse_objective(coarse)
        mild_start = zp.fine_objective(x_adv, x_adv, coarse)
        mild_fine = zp.fine_objective(fine, x_adv, coarse)
    assert d_adv.shape == (32,) and (d_adv.abs() <= 1 + 1e-5).all()
    assert d_coarse.mean() > d_adv.mean() + 0.05  # Alg. 1 maximises Eq. 7
    assert mild_start.abs().max() < 1e-3
    assert (mild_fine > 0).float().mean() > 0.9  # Alg. 2 maximises Eq. 11
    feats = zp.stage_features(x_adv[:4])
    assert set(feats) == {"net.layer1", "net.layer2", "net.layer3", "embedding"}
    assert feats["net.layer3"].shape == (4, 64, 8, 8) and feats["embedding"].shape == (4, 64)


def test_coarse_objective_differentiable_through_blur(resnet20, transfer: dict) -> None:
    zp = ZeroPur(resnet20, profile="authors", blur="gaussian:1.2")
    x = transfer["x_adv"][:4].clone().requires_grad_(True)
    (g_full,) = torch.autograd.grad(zp.coarse_objective(x).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    target = zp.stage_features(zp.blur(x2).detach())["embedding"]
    d_first = F.cosine_similarity(zp.stage_features(x2)["embedding"], target, dim=1)
    (g_first,) = torch.autograd.grad(d_first.sum(), x2)
    assert torch.isfinite(g_full).all()
    assert (g_full - g_first).abs().max() > 1e-3 * g_first.abs().max()  # the blur branch contributes


def test_no_grad_and_inference_mode_give_identical_output(resnet20, transfer: dict) -> None:
    zp = ZeroPur(resnet20, profile="authors", coarse_steps=3, fine_steps=3)
    x = transfer["x_adv"][:8]
    ref = zp.purify(x)
    with torch.no_grad():
        assert torch.equal(zp.purify(x), ref)
    with torch.inference_mode():
        assert torch.equal(zp.purify(x.clone()), ref)
        logits = zp(x.clone())
    with torch.no_grad():
        assert torch.equal(logits, resnet20(ref))


@pytest.mark.parametrize("profile", ["authors", "paper"])
def test_batch_independence(resnet20, transfer: dict, profile: str) -> None:
    zp = ZeroPur(resnet20, profile=profile)
    x = transfer["x_adv"][:32]
    full = zp.purify(x)
    halves = torch.cat([zp.purify(x[:16], indices=torch.arange(16)),
                        zp.purify(x[16:], indices=torch.arange(16, 32))])
    with torch.no_grad():
        assert torch.equal(resnet20(full).argmax(1), resnet20(halves).argmax(1))
    assert (full == halves).float().mean() >= 0.999


def test_zero_steps_return_input_bitwise(resnet20, transfer: dict) -> None:
    x = transfer["x_adv"][:8]
    for profile in ("authors", "paper"):
        zp = ZeroPur(resnet20, profile=profile, coarse_steps=0, fine_steps=0)
        assert torch.equal(zp.purify(x), x)
    with torch.no_grad():
        assert torch.equal(ZeroPur(resnet20, profile="authors", coarse_steps=0, fine_steps=0)(x), resnet20(x))


def test_classifier_parameters_untouched_and_eval(resnet20, transfer: dict) -> None:
    flags = {n: p.requires_grad for n, p in resnet20.named_parameters()}
    zp = ZeroPur(resnet20, profile="authors", coarse_steps=2, fine_steps=2)
    zp.train()
    x = transfer["x_adv"][:4].clone().requires_grad_(True)
    zp.purify(x)
    zp(x).sum().backward()  # BPDA: the gradient reaches x ...
    assert x.grad is not None and x.grad.abs().sum() > 0
    zp.differentiable_purify(x[:2].detach().requires_grad_(True)).sum().backward()  # the full gradient
    assert all(p.grad is None for p in resnet20.parameters())  # ... never the parameters
    assert {n: p.requires_grad for n, p in resnet20.named_parameters()} == flags
    assert all(not m.training for m in resnet20.modules())
    assert not zp.training  # a purifier stays in eval mode whatever train() asks (issue 32)


@pytest.fixture()
def user_resnet(resnet20) -> nn.Module:
    """A copy of ResNet-20 with trainable parameters (requires_grad True), as a user might pass it."""
    import copy

    model = copy.deepcopy(resnet20)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def test_purify_leaves_no_parameter_grads(user_resnet, transfer: dict) -> None:
    zp = ZeroPur(user_resnet, profile="authors", coarse_steps=2, fine_steps=2)
    zp.purify(transfer["x_adv"][:4])
    zp.differentiable_purify(transfer["x_adv"][:2].clone().requires_grad_(True))
    assert all(p.grad is None for p in user_resnet.parameters())
    assert all(p.requires_grad for p in user_resnet.parameters())


def test_reproducible_under_seed(resnet20, transfer: dict) -> None:
    x = transfer["x_adv"][:8]
    opts = dict(profile="paper", stages="c", coarse_steps=2)
    a = ZeroPur(resnet20, seed=3, **opts).purify(x)
    b = ZeroPur(resnet20, seed=3, **opts).purify(x)
    c = ZeroPur(resnet20, seed=4, **opts).purify(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the random start is a function of (seed, image index) only
    d = ZeroPur(resnet20, seed=3, **opts).purify(x[4:], indices=torch.arange(4, 8))
    assert (d == a[4:]).float().mean() >= 0.999


def test_bpda_gradient_is_straight_through(resnet20, transfer: dict) -> None:
    zp = ZeroPur(resnet20, profile="authors", coarse_steps=2, fine_steps=2)
    x, y = transfer["x_adv"][:6].clone().requires_grad_(True), transfer["y"][:6]
    (g,) = torch.autograd.grad(F.cross_entropy(zp(x), y, reduction="sum"), x)
    p = zp.purify(x.detach()).requires_grad_(True)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(resnet20(p), y, reduction="sum"), p)
    torch.testing.assert_close(g, g_ref)


def test_grad_mode_none_raises_on_backward(resnet20, transfer: dict) -> None:
    zp = ZeroPur(resnet20, profile="authors", coarse_steps=1, fine_steps=1, grad_mode="none")
    x = transfer["x_adv"][:2].clone().requires_grad_(True)
    logits = zp(x)
    with torch.no_grad():
        assert torch.equal(logits, resnet20(zp.purify(x)))
    with pytest.raises(UserError, match="grad_mode='none'"):
        logits.sum().backward()
    with pytest.raises(UserError, match="grad_mode"):
        ZeroPur(resnet20, profile="authors", grad_mode="exact")
    with pytest.raises(AttributeError):  # fixed at construction: attacks wrap the defense instead
        zp.grad_mode = "full"


class TinyNet(nn.Module):
    """Smooth (tanh) 2-stage conv net for float64 gradcheck."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Conv2d(4, 4, 3, padding=1)
        self.layer2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.layer2(torch.tanh(self.layer1(torch.tanh(self.stem(x))))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


@pytest.mark.parametrize("profile", ["authors", "paper"])
def test_full_mode_gradcheck_float64(profile: str) -> None:
    torch.manual_seed(0)
    net = TinyNet().double().eval()
    zp = ZeroPur(net, profile=profile, blur="gaussian:0.7", grad_mode="full", surrogate="normalized",
                 coarse_steps=2, coarse_step=0.02, coarse_eps=0.3, fine_steps=2, fine_step=0.02, fine_eps=0.3,
                 random_start=False)
    assert zp.config()["layers"]["stages"] == ["layer1", "layer2"]
    x = (0.3 + 0.4 * torch.rand(2, 3, 4, 4, dtype=torch.float64)).requires_grad_(True)
    # the steps carry gradient: the Jacobian is not the clamp-masked identity
    (g,) = torch.autograd.grad(zp.purify(x).sum(), x)
    assert (g - 1).abs().max() > 1e-4
    assert torch.autograd.gradcheck(zp.purify, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_autoattack_rand_bpda_runs(resnet20, cifar10_test) -> None:
    from pyautoattack import AutoAttack

    zp = ZeroPur(resnet20, profile="authors", coarse_steps=2, fine_steps=2)
    x, y = cifar10_test[0][:4], cifar10_test[1][:4]
    adversary = AutoAttack(zp, eps=8 / 255, norm="Linf", version="rand", seed=0)
    adversary.attacks_to_run = ["apgd-ce"]
    adversary.apgd.n_iter = 5
    adversary.apgd.eot_iter = 2
    adversary.apgd.n_restarts = 1
    grads = []
    hook = zp.register_full_backward_hook(lambda mod, g_in, g_out: grads.append(g_in[0]))
    try:
        out = adversary.run_standard_evaluation(x, y, batch_size=4)
    finally:
        hook.remove()
    x_adv = out[0] if isinstance(out, tuple) else out
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    # APGD asked for gradients through ZeroPur and got nonzero ones (BPDA)
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_bf16_channels_last_runs(resnet20, transfer: dict) -> None:
    x, y = transfer["x_adv"][:16], transfer["y"][:16]
    import copy

    model = copy.deepcopy(resnet20)
    zp = ZeroPur(model, profile="authors", dtype="bf16", channels_last=True, coarse_steps=3, fine_steps=3)
    out = zp.purify(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert (out - x).abs().max() <= EPS_F + 1e-6 and out.min() >= 0 and out.max() <= 1
    assert zp.config()["dtype"] == "bf16"


def test_config_is_json_and_complete(resnet20) -> None:
    zp = ZeroPur(resnet20, profile="paper", stages="cf", blur="gaussian:1.8", seed=7, momentum=0.5)
    cfg = json.loads(json.dumps(zp.config()))
    assert cfg["profile"] == "paper" and cfg["blur"] == "gaussian:1.8" and cfg["seed"] == 7
    assert cfg["momentum"] == 0.5 and cfg["random_start"] is True and cfg["blur_target_detached"] is True
    assert cfg["coarse_step"] == pytest.approx(2 / 255) and cfg["fine_step"] == pytest.approx(1 / 255)
    assert cfg["layers"]["fine"] == ["net.layer1", "net.layer2", "net.layer3"] and cfg["layers"]["lpips"] == []
    auth = ZeroPur(resnet20, profile="authors").config()
    assert auth["fine_step"] == pytest.approx(0.2 / 255) and auth["layers"]["fine"] == ["net.layer2", "net.layer3"]
    assert auth["ila_weight"] == 1e-4 and auth["lpips_weight"] == 1.0


def test_bad_input_and_options_raise_user_error(resnet20) -> None:
    zp = ZeroPur(resnet20, profile="authors", coarse_steps=1, fine_steps=1)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        zp.purify(torch.full((1, 3, 32, 32), 2.0))
    with pytest.raises(UserError, match="NaN"):
        zp.purify(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(UserError, match="N, C, H, W"):
        zp.purify(torch.rand(3, 32, 32))
    with pytest.raises(UserError, match="indices"):
        zp.purify(torch.rand(2, 3, 32, 32), indices=torch.arange(3))
    with pytest.raises(UserError, match="profile"):
        ZeroPur(resnet20, profile="fast")
    with pytest.raises(UserError, match="valid options"):
        ZeroPur(resnet20, profile="authors", coarse_stpes=3)
    with pytest.raises(UserError, match="stages"):
        ZeroPur(resnet20, profile="authors", stages="f")
    with pytest.raises(UserError, match="median:k"):
        ZeroPur(resnet20, profile="authors", blur="box:3")


def test_load_defended_model(resnet20_path: str) -> None:
    zp = load_defended_model("resnet20", "cifar10", checkpoint=resnet20_path, profile="paper", stages="c")
    assert isinstance(zp, ZeroPur) and zp.config()["stages"] == "c"
    assert zp.config()["layers"]["embedding"] == "net.linear"


def test_one_default_profile_for_python_the_cli_and_specs(resnet20) -> None:
    """Issue 32 item 4: the same words give the same settings from Python, from a defense spec and from the CLI."""
    from zeropur_bench.cli.options import RunOptions, build_configs
    from zeropur_bench.config import DefenseSpec
    from zeropur_bench.defenses import get_defense
    from zeropur_bench.profile_names import DEFAULT_PROFILE

    assert DEFAULT_PROFILE == "calibrated"
    # Python: the public ResNet-20 has a shipped calibration for the default blur, found by its weights' sha256
    zp = ZeroPur(resnet20)
    assert zp.profile == DEFAULT_PROFILE and zp.calibration is not None
    assert zp.config() == ZeroPur(resnet20, profile="calibrated").config()
    assert zp.ila_weight == pytest.approx(7.071067811865475e-05) and zp.ila_weight != 1e-4
    # a defense spec without a profile (run configs, --defense zeropur), and the CLI without --profile
    assert get_defense("zeropur").defaults["profile"] == DEFAULT_PROFILE
    assert DefenseSpec(stages="cf").options.get("profile", DEFAULT_PROFILE) == DEFAULT_PROFILE
    (config,) = build_configs(RunOptions(model="resnet20-cifar10-public", defenses=("zeropur",), attacks=("pgd",)))
    assert {d.options["profile"] for d in config.defenses} == {DEFAULT_PROFILE}


def test_default_profile_on_a_classifier_without_a_calibration(resnet20) -> None:
    """A classifier with no shipped calibration: C-F under the default profile is refused with both fixes named
    (never a silent 1e-4); C needs no calibration (no fine stage) and purifies as the authors' C does."""
    import copy

    other = copy.deepcopy(resnet20)
    with torch.no_grad():
        other.net.linear.weight.mul_(1.001)  # other weights: no shipped calibration matches their sha256
    with pytest.raises(UserError, match=r"calibrate.*profile='authors'"):
        ZeroPur(other, coarse_steps=1, fine_steps=1)
    c = ZeroPur(other, stages="c", coarse_steps=2)
    assert c.profile == "calibrated" and c.calibration is None and c.config()["ila_weight"] is None
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = ZeroPur(other, profile="authors", stages="c", coarse_steps=2)
    assert torch.equal(c.purify(x), ref.purify(x))
    assert not torch.equal(c.purify(x), x)  # it did purify
    with pytest.raises(UserError, match="no ILA weight"):
        c.fine_objective(x, x, x, full=True)
