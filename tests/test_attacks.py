"""The attack suite on real data: the shared CIFAR-10 ResNet-20, the first CIFAR-10 test images, and ZeroPur with
few purification steps (for speed) for the adaptive attacks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeropur_bench.attacks import ATTACKS, make_attack
from zeropur_bench.errors import UserError

# Small settings per attack for the generic checks (shape, range, ball, determinism).
SMALL: dict[str, dict] = {
    "pgd": {"steps": 3},
    "difgsm": {"steps": 3},
    "autoattack": {"version": "rand", "eot_iter": 2, "n_iter": 4},
    "square": {"n_queries": 30},
    "bpda-eot": {"steps": 3, "eot_reps": 2, "verify_reps": 3},
    "defense-aware": {"steps": 2, "lambdas": (0.1, 10.0)},
    "pgd-eot": {"steps": 2, "eot_iter": 2, "verify_reps": 2},
    "autoattack-bpda": {"eot_iter": 2, "n_iter": 3},
    "autoattack-full": {"eot_iter": 2, "n_iter": 3},
}


@pytest.fixture(scope="module")
def tiny_zeropur(resnet20):
    """ZeroPur, coarse shifting only, 2 steps: deterministic (no random start)."""
    from zeropur_bench.defense.zeropur import ZeroPur

    return ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=2)


def _robust_acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_registry_is_complete() -> None:
    assert set(SMALL) == set(ATTACKS)
    for name in ("bpda-eot", "defense-aware", "pgd-eot", "autoattack-bpda", "autoattack-full"):
        assert ATTACKS[name].needs_defense and ATTACKS[name].adaptive_only
    for name in ("pgd", "difgsm", "autoattack", "square"):
        assert not ATTACKS[name].needs_defense


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_attack_contract(name, cifar10_test, resnet20, tiny_zeropur) -> None:
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    model = tiny_zeropur if ATTACKS[name].needs_defense else resnet20
    eps = 8 / 255
    atk = make_attack(name, model, eps=eps, seed=3, **SMALL[name])
    rng_before = torch.get_rng_state()
    modes = [m.training for m in model.modules()]
    x_adv = atk(x, y, indices=torch.arange(8))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is restored (pyautoattack reseeds it)
    info = dict(atk.last_info)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert info["forward_passes"] > 0
    assert [m.training for m in model.modules()] == modes  # each module's mode restored
    assert all(not m.training for m in resnet20.modules())
    # same seed -> same result
    again = make_attack(name, model, eps=eps, seed=3, **SMALL[name])(x, y, indices=torch.arange(8))
    assert torch.equal(x_adv, again)
    if name in ("bpda-eot", "pgd-eot", "defense-aware"):
        assert info["broken_any_step"].shape == (8,) and info["broken_final"].dtype == torch.bool
        assert not (info["broken_final"] & ~info["broken_any_step"]).any()  # final break => any-step break
    print(name, {k: v for k, v in info.items() if not torch.is_tensor(v)})


def test_l2_threat_model(cifar10_test, resnet20) -> None:
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    atk = make_attack("pgd", resnet20, eps=0.5, norm="L2", steps=5)
    assert atk.params["step"] == pytest.approx(0.05)  # App. A.2
    x_adv = atk(x, y)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    assert _robust_acc(resnet20, x_adv, y) < _robust_acc(resnet20, x, y)
    with pytest.raises(UserError, match="norms"):
        make_attack("difgsm", resnet20, norm="L2")


def test_pass_counts_are_exact(cifar10_test, resnet20) -> None:
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    atk = make_attack("pgd", resnet20, steps=3)
    atk(x, y)
    # 3 steps: 3 forward+backward passes per image, plus one forward to judge the restart
    assert atk.last_info["backward_passes"] == 3 * 8
    assert atk.last_info["forward_passes"] == 4 * 8


def _ordering(n: int, eps_255: int, cifar10_test, resnet20, aa_iter: int = 100) -> None:
    x, y = cifar10_test[0][:n], cifar10_test[1][:n]
    eps = eps_255 / 255
    accs = {}
    for label, name, kw in [("fgsm", "pgd", {"steps": 1, "step": eps, "random_start": False}),
                            ("pgd20", "pgd", {}),
                            ("aa-standard", "autoattack", {"version": "standard", "n_iter": aa_iter})]:
        accs[label] = _robust_acc(resnet20, make_attack(name, resnet20, eps=eps, **kw)(x, y), y)
    print(f"n {n}, eps {eps_255}/255, clean {_robust_acc(resnet20, x, y):.3f}: {accs}")
    assert accs["aa-standard"] <= accs["pgd20"] <= accs["fgsm"]
    assert accs["aa-standard"] < _robust_acc(resnet20, x, y)


def test_attack_strength_ordering_quick(cifar10_test, resnet20) -> None:
    """Bare ResNet-20, first 64 test images, eps 1/255: AutoAttack standard's four attacks with 20 iterations
    (Square 1000 queries) <= PGD-20 <= one-step PGD (FGSM). The 100-iteration run is the slow test below; Square's
    5000 sequential queries alone take minutes on a shared CPU."""
    _ordering(64, 1, cifar10_test, resnet20, aa_iter=20)


@pytest.mark.slow
@pytest.mark.parametrize("eps_255", [1, 2])
def test_attack_strength_ordering(eps_255, cifar10_test, resnet20) -> None:
    """The acceptance setting: first 200 test images at eps 1/255 and 2/255 (AutoAttack standard takes minutes
    on 2 CPU cores, hence slow)."""
    _ordering(200, eps_255, cifar10_test, resnet20)


def test_bpda_gradient_is_ce_gradient_at_purified_point(cifar10_test, resnet20, tiny_zeropur) -> None:
    from zeropur_bench.defense.zeropur import ZeroPur

    x, y = cifar10_test[0][:6], cifar10_test[1][:6]
    for defense in (tiny_zeropur, ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=2, random_start=True)):
        atk = make_attack("bpda-eot", defense)
        idx = torch.arange(6) + 1000
        grad, logits = atk.bpda_grad(x, y, reps=1, indices=idx)
        p = defense.purify(x, indices=idx).detach().requires_grad_(True)
        assert not torch.equal(p, x)  # purification moved the point
        (expected,) = torch.autograd.grad(F.cross_entropy(resnet20(p), y, reduction="sum"), p)
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
        # ... and differs from the gradient at the raw input (BPDA is not the bare gradient)
        xr = x.clone().requires_grad_(True)
        (bare,) = torch.autograd.grad(F.cross_entropy(resnet20(xr), y, reduction="sum"), xr)
        assert not torch.allclose(grad, bare, atol=1e-6)
    # EOT: with two copies, the gradient is the mean of the per-copy gradients at each purified copy
    stochastic = ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=2, random_start=True)
    atk = make_attack("bpda-eot", stochastic)
    idx2 = torch.cat([torch.arange(6) + 2000, torch.arange(6) + 3000])
    grad2, _ = atk.bpda_grad(x, y, reps=2, indices=idx2)
    p = stochastic.purify(x.repeat(2, 1, 1, 1), indices=idx2).detach().requires_grad_(True)
    logits = resnet20(p).view(2, 6, -1).mean(0)
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), p)
    torch.testing.assert_close(grad2, g.view(2, *x.shape).mean(0), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def adaptive_setup(cifar10_test, resnet20):
    """32 images, ZeroPur (coarse only, 3 steps), transfer PGD-20 accuracy through the defense."""
    from zeropur_bench.defense.zeropur import ZeroPur

    x, y = cifar10_test[0][:32], cifar10_test[1][:32]
    defense = ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=3)
    x_tr = make_attack("pgd", resnet20)(x, y)
    transfer = _robust_acc(defense, x_tr, y)
    return x, y, defense, transfer


@pytest.mark.parametrize("name,params", [("bpda-eot", {"steps": 10}),
                                         ("defense-aware", {"steps": 10})])
def test_adaptive_attacks_beat_transfer(name, params, adaptive_setup, resnet20) -> None:
    x, y, defense, transfer = adaptive_setup
    atk = make_attack(name, defense, **params)
    x_adv = atk(x, y, indices=torch.arange(32))
    info = atk.last_info
    any_step = 1 - info["broken_any_step"].float().mean().item()
    final = 1 - info["broken_final"].float().mean().item()
    rejudged = _robust_acc(defense, x_adv, y)  # the kept iterate, judged again by the engine's way
    print(f"{name}: transfer PGD-20 {transfer:.3f}, adaptive any-step {any_step:.3f}, final-only {final:.3f}, "
          f"re-judged x_adv {rejudged:.3f}, clean-through-defense {_robust_acc(defense, x, y):.3f}; "
          f"{ {k: v for k, v in info.items() if not torch.is_tensor(v)} }")
    assert any_step <= transfer
    assert any_step <= final
    assert rejudged == pytest.approx(any_step)  # deterministic defense: the kept iterate is what broke it
    if name == "bpda-eot":
        assert info["deterministic"] is True and info["eot_reps"] == 1 and info["verify_reps"] == 1


def test_stochastic_defense_uses_eot_and_verification(cifar10_test, resnet20) -> None:
    from zeropur_bench.defense.zeropur import ZeroPur

    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    defense = ZeroPur(resnet20, profile="authors", stages="c", coarse_steps=2, random_start=True)
    atk = make_attack("bpda-eot", defense, steps=2, eot_reps=3, verify_reps=4)
    atk(x, y)
    info = atk.last_info
    assert info["deterministic"] is False and info["eot_reps"] == 3 and info["verify_reps"] == 4
    per_step = info["broken_per_step"]
    assert per_step.shape == (3, 8)  # iterates 0, 1, 2
    assert torch.equal(info["broken_any_step"], per_step.any(0)) and torch.equal(info["broken_final"], per_step[-1])
    # verification re-judged every candidate the cheap 3-copy check flagged
    assert info["verified_candidates"] >= int(per_step.sum())


def test_autoattack_rand_collapses_eot_on_deterministic_target(cifar10_test, resnet20) -> None:
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    atk = make_attack("autoattack", resnet20, version="rand", n_iter=3)
    atk(x, y)
    assert atk.last_info["deterministic"] is True and atk.last_info["eot_iter"] == 1
    assert atk.last_info["eot_iter_requested"] == 20
    assert atk.last_info["attacks_run"] == ["apgd-ce", "apgd-dlr"]


def test_autoattack_full_differentiates_through_the_purifier(cifar10_test, resnet20, data_dir) -> None:
    """autoattack-full reaches the classifier through the purifier's own graph (median smoothing: its gradient is
    the median's, not BPDA's identity), or through the surrogate it names (JPEG: kornia's differentiable codec);
    a purifier without the full gradient, or a surrogate it does not offer, is refused with what to use."""
    from zeropur_bench.defenses import BuildContext
    from zeropur_bench.defense import registered
    from zeropur_bench.gradients import FullGradient

    ctx = BuildContext(dataset="cifar10", data_dir=data_dir)
    median = registered("median-smoothing").factory(resnet20, ctx, {})
    x, y = cifar10_test[0][:4], cifar10_test[1][:4]
    full = make_attack("autoattack-full", median, n_iter=2)
    bpda = make_attack("autoattack-bpda", median, n_iter=2)
    assert isinstance(full.differentiable(), FullGradient) and not isinstance(bpda.differentiable(), FullGradient)
    grads = []
    for atk in (full, bpda):
        xr = x.clone().requires_grad_(True)
        F.cross_entropy(atk.differentiable()(xr), y).backward()
        grads.append(xr.grad)
    # the 2x2 median passes gradient to one pixel of each window: the two gradients differ, and the full one is sparser
    assert not torch.allclose(grads[0], grads[1]) and (grads[0] == 0).float().mean() > (grads[1] == 0).float().mean()
    x_adv = full(x, y)
    assert full.last_info["version_run"] == "standard" and (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    jpeg = registered("jpeg").factory(resnet20, ctx, {})
    assert make_attack("autoattack-full", jpeg, surrogate="diff-jpeg").differentiable().surrogate == "diff-jpeg"
    with pytest.raises(UserError, match="offers no surrogate"):
        make_attack("autoattack-full", median, surrogate="diff-jpeg")
    with pytest.raises(UserError, match="needs the full gradient.*autoattack-bpda"):
        make_attack("autoattack-full", registered("bit-depth").factory(resnet20, ctx, {}))


def test_autoattack_bpda_runs_standard_against_a_deterministic_defense(cifar10_test, tiny_zeropur) -> None:
    """AutoAttack's advice for a deterministic model: 'standard' (APGD-CE, APGD-T, FAB-T, Square)."""
    x, y = cifar10_test[0][:4], cifar10_test[1][:4]
    atk = make_attack("autoattack-bpda", tiny_zeropur, n_iter=2)
    atk(x, y)
    info = atk.last_info
    assert info["deterministic"] is True and info["version_run"] == "standard" and "version_note" in info
    assert info["attacks_run"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


@pytest.mark.parametrize("name,params,eps,norm,label", [
    ("pgd", {}, 8 / 255, "Linf", "PGD-20"),
    ("pgd", {}, 0.5, "L2", "PGD-20"),
    ("pgd", {"steps": 5}, 8 / 255, "Linf", "pgd[steps=5]"),
    ("pgd", {"step": 0.0001}, 8 / 255, "Linf", "pgd[step=0.0001]"),
    ("pgd", {"random_start": False}, 8 / 255, "Linf", "pgd[random_start=False]"),
    ("pgd", {}, 4 / 255, "Linf", "pgd[eps=4/255]"),
    ("autoattack", {"version": "rand"}, 8 / 255, "Linf", "AutoAttack-rand"),
    ("autoattack", {}, 8 / 255, "Linf", "AutoAttack-standard"),
    ("autoattack", {"version": "rand", "n_iter": 2}, 8 / 255, "Linf", "autoattack[n_iter=2,version=rand]"),
    ("autoattack", {"version": "rand", "eot_iter": 1}, 8 / 255, "Linf", "autoattack[eot_iter=1,version=rand]"),
    ("autoattack-bpda", {}, 8 / 255, "Linf", "AutoAttack-rand-BPDA"),
    ("autoattack-full", {}, 8 / 255, "Linf", "AutoAttack-rand-full"),
    ("autoattack-full", {"surrogate": "diff-jpeg"}, 8 / 255, "Linf", "AutoAttack-rand-full[surrogate=diff-jpeg]"),
    ("autoattack-full", {"surrogate": "diff-jpeg", "n_iter": 2}, 8 / 255, "Linf",
     "autoattack-full[n_iter=2,surrogate=diff-jpeg]"),
    ("bpda-eot", {"steps": 10}, 8 / 255, "Linf", "bpda-eot[steps=10]"),
])
def test_labels_follow_the_configuration(name, params, eps, norm, label) -> None:
    """A paper's or library's name only with its settings (App. A.2; AutoAttack's own n_iter / EOT)."""
    cls = ATTACKS[name]
    assert cls.label(cls.resolve_params(params, eps, norm), eps, norm) == label


def test_user_errors(cifar10_test, resnet20) -> None:
    x, y = cifar10_test[0][:2], cifar10_test[1][:2]
    with pytest.raises(UserError, match="unknown attack 'nope'; known: .*pgd"):
        make_attack("nope", resnet20)
    with pytest.raises(UserError, match="unknown parameter"):
        make_attack("pgd", resnet20, stpes=10)
    for name in ("bpda-eot", "defense-aware", "pgd-eot", "autoattack-bpda"):
        with pytest.raises(UserError, match="adaptive"):
            make_attack(name, resnet20)
    with pytest.raises(UserError, match="version"):
        make_attack("autoattack", resnet20, version="fast")
    with pytest.raises(UserError, match="preset"):
        make_attack("pgd-eot", resnet20, preset="nope")
    atk = make_attack("pgd", resnet20, steps=1)
    with pytest.raises(UserError, match="NCHW"):
        atk(x[0], y)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        atk(x * 255, y)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        atk(bad, y)
    with pytest.raises(UserError, match="labels"):
        atk(x, y[:1])


def test_pgd_eot_preset(tiny_zeropur) -> None:
    atk = make_attack("pgd-eot", tiny_zeropur, preset="lee-kim")
    assert (atk.params["steps"], atk.params["step"], atk.params["eot_iter"]) == (200, 0.007, 20)
    assert make_attack("pgd-eot", tiny_zeropur, preset="lee-kim", steps=5).params["steps"] == 5


def test_options_fine_term_and_surrogate(cifar10_test, resnet20) -> None:
    from zeropur_bench.defense.zeropur import ZeroPur

    x, y = cifar10_test[0][:4], cifar10_test[1][:4]
    defense = ZeroPur(resnet20, profile="authors", stages="cf", coarse_steps=1, fine_steps=1)
    atk = make_attack("defense-aware", defense, steps=1, fine_term=True, lambdas=(1.0,))
    x_adv = atk(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and set(atk.last_info["broken_per_lambda"]) == {"1.0"}
    atk = make_attack("pgd-eot", defense, steps=1, surrogate="normalized")
    atk(x, y)
    assert atk.last_info["surrogate"] == "normalized"
    assert defense.surrogate == "sign" and defense.grad_mode == "bpda"  # the defense's settings are restored
