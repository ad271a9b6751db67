"""The training-free purifiers of issue 34 on real data (the first CIFAR-10 test images) and the shipped
``resnet20-cifar10-standard``: each returns a valid image, runs by name with its paper's settings as defaults, puts
its settings in the record and in ``list``; each matches its paper's reference code (scipy's median, PIL's JPEG,
Xu et al.'s rounding, the authors' anti-adversary loop, a split-Bregman TV solver), and a randomized one draws per
example from (seed, index): reproducible, different across seeds, the same in any batch."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zeropur_bench.defenses import BuildContext
from zeropur_bench.defense import registered
from zeropur_bench.estimators import STREAM

N = 8
NAMES = ("bit-depth", "median-smoothing", "jpeg", "tvm", "random-resize-pad", "mixup-inference", "anti-adversary")
RANDOMIZED = ("tvm", "random-resize-pad", "mixup-inference")
# the papers' settings (each module's docstring says where each comes from)
PAPER = {"bit-depth": {"bits": 5}, "median-smoothing": {"size": 2}, "jpeg": {"quality": 75},
         "tvm": {"keep": 0.5, "weight": 0.03}, "random-resize-pad": {"low": 32, "high": 35, "pad_value": 0.5},
         "mixup-inference": {"variant": "ol", "lam": 0.5, "samples": 30, "pool_size": 10000},
         "anti-adversary": {"k": 2, "alpha": 0.15, "clip": False}}


@pytest.fixture(scope="module")
def standard() -> torch.nn.Module:
    from zeropur_bench.classifiers import load_classifier

    return load_classifier("resnet20-cifar10-standard", "cifar10")


@pytest.fixture(scope="module")
def images(cifar10_test) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return cifar10_test[0][:N], cifar10_test[1][:N], torch.arange(N)


def build(name: str, classifier: torch.nn.Module, data_dir: str, seed: int = 0, **options) -> torch.nn.Module:
    """The purifier as a run builds it: through the registry, with the run's seed and data folder."""
    ctx = BuildContext(seed=seed, dataset="cifar10", data_dir=data_dir)
    return registered(name).factory(classifier, ctx, options)


_BUILT: dict[str, torch.nn.Module] = {}


def default(name: str, classifier: torch.nn.Module, data_dir: str) -> torch.nn.Module:
    if name not in _BUILT:  # Mixup Inference loads 10,000 training images: build each default once
        _BUILT[name] = build(name, classifier, data_dir)
    return _BUILT[name]


@pytest.mark.parametrize("name", NAMES)
def test_output_is_a_valid_image(name: str, standard, images, data_dir: str) -> None:
    x, y, idx = images
    d = default(name, standard, data_dir)
    with torch.no_grad():
        out = d.purify_at(x, idx)
        logits = d(x, indices=idx)
    side = 35 if name == "random-resize-pad" else 32
    assert out.shape == (N, 3, side, side) and out.dtype == x.dtype
    # the authors' anti-adversary is unclipped: x + γ with |γ| <= K·α (its clip=true variant: test below)
    slack = 2 * 0.15 + 1e-6 if name == "anti-adversary" else 0.0
    assert torch.isfinite(out).all() and out.min() >= -slack and out.max() <= 1 + slack
    assert logits.shape == (N, 10) and torch.isfinite(logits).all()
    assert not torch.equal(out[:, :, :32, :32], x)  # it changes the image
    # the paper's settings are the defaults, in the registry and in the built defense's resolved settings
    assert registered(name).defaults == {**registered(name).defaults, **PAPER[name]}
    resolved = d.config()
    assert resolved["method"] == name and d.randomized is (name in RANDOMIZED)
    for k, v in PAPER[name].items():
        assert resolved["pool"]["n"] == v if k == "pool_size" else resolved[k] == v, (k, resolved)


def test_bit_depth_is_xu_et_al_rounding(standard, images, data_dir: str) -> None:
    x = images[0]
    for bits in (5, 3):
        d = build("bit-depth", standard, data_dir, bits=bits)
        want = np.rint(x.numpy() * (2 ** bits - 1)) / (2 ** bits - 1)  # their reduce_precision_py
        assert np.allclose(d.purify(x).numpy(), want, atol=1e-7)
        assert len(np.unique(d.purify(x).numpy())) <= 2 ** bits
    assert build("bit-depth", standard, data_dir).gradients == ("bpda",)


def test_median_is_scipy_median_filter(standard, images, data_dir: str) -> None:
    from scipy.ndimage import median_filter

    x = images[0]
    for k in (2, 3, 4):  # even windows: scipy's anchoring and upper middle value
        d = build("median-smoothing", standard, data_dir, size=k)
        want = median_filter(x.numpy(), size=(1, 1, k, k), mode="reflect")
        assert np.array_equal(d.purify(x).numpy(), want), k
    # differentiable: the gradient lands on the selected pixels
    xr = x[:1].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(build("median-smoothing", standard, data_dir).purify(xr).sum(), xr)
    assert g.sum().item() == pytest.approx(3 * 32 * 32) and (g >= 0).all()


def test_jpeg_is_pil_quality_75_with_kornia_gradient(standard, images, data_dir: str) -> None:
    from kornia.enhance import jpeg_codec_differentiable
    from PIL import Image

    x, y, _ = images
    d = build("jpeg", standard, data_dir)
    pil = []
    for im in (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="jpeg", quality=75)  # Das et al.'s / Guo et al.'s codec call
        pil.append(np.asarray(Image.open(buf)))
    want = torch.from_numpy(np.stack(pil)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(d.purify(x), want)
    # full gradient: the forward is the real codec, the gradient kornia's differentiable JPEG at quality 75
    xr = x.clone().requires_grad_(True)
    out = d.differentiable_purify(xr)
    assert torch.equal(out.detach(), want)
    w = torch.randn_like(x)
    (g,) = torch.autograd.grad((out * w).sum(), xr)
    xk = x.clone().requires_grad_(True)
    (gk,) = torch.autograd.grad((jpeg_codec_differentiable(xk, torch.tensor([75.0])) * w).sum(), xk)
    assert torch.allclose(g, gk) and g.abs().sum() > 0
    assert d.surrogates == ("diff-jpeg",) and set(d.gradients) == {"bpda", "full"}


def _split_bregman(img: np.ndarray, keep: np.ndarray, weight: float, eps: float = 1e-3,
                   max_iter: int = 100) -> np.ndarray:
    """Guo et al.'s TV solver, as Athalye et al. ported it: split Bregman (Goldstein & Osher 2009) with one
    Gauss-Seidel sweep per iteration over the pixels in raster order, data weight μ = 2/λ_TV on the kept pixels,
    Bregman parameter 2μ, anisotropic shrinkage, the border held at the reflected input, stopping when a sweep
    changes the images by less than ``eps`` RMS. Vectorised over images and channels only (the sweep is sequential)."""
    n, c, h, w = img.shape
    mu = 2.0 / weight
    lam = 2 * mu
    u = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    dx, dy, bx, by = (np.zeros_like(u) for _ in range(4))
    kept = keep[:, None].astype(bool)
    for _ in range(max_iter):
        change = 0.0
        for r in range(1, h + 1):
            for s in range(1, w + 1):
                old = u[:, :, r, s].copy()
                ux, uy = u[:, :, r, s + 1] - old, u[:, :, r + 1, s] - old
                rhs = (u[:, :, r + 1, s] + u[:, :, r - 1, s] + u[:, :, r, s + 1] + u[:, :, r, s - 1]
                       + dx[:, :, r, s - 1] - dx[:, :, r, s] + dy[:, :, r - 1, s] - dy[:, :, r, s]
                       - bx[:, :, r, s - 1] + bx[:, :, r, s] - by[:, :, r - 1, s] + by[:, :, r, s])
                new = np.where(kept[:, :, r - 1, s - 1], (lam * rhs + mu * img[:, :, r - 1, s - 1]) / (mu + 4 * lam),
                               rhs / 4)
                u[:, :, r, s] = new
                change += ((new - old) ** 2).sum()
                sx, sy = ux + bx[:, :, r, s], uy + by[:, :, r, s]
                dx[:, :, r, s] = np.sign(sx) * np.maximum(np.abs(sx) - 1 / lam, 0)
                dy[:, :, r, s] = np.sign(sy) * np.maximum(np.abs(sy) - 1 / lam, 0)
                bx[:, :, r, s] += ux - dx[:, :, r, s]
                by[:, :, r, s] += uy - dy[:, :, r, s]
        if math.sqrt(change / img.size) < eps:
            break
    return u[:, :, 1:-1, 1:-1]


def test_tvm_solves_guo_et_al_objective(standard, images, data_dir: str) -> None:
    from zeropur_bench.defense.purifiers.tvm import masked_tv, masked_tv_objective

    x, _, idx = images
    d = default("tvm", standard, data_dir)
    xs, ids = x[:4].double(), idx[:4]
    mask = d.mask(xs, ids)
    assert mask.shape == (4, 1, 32, 32) and set(mask.unique().tolist()) == {0.0, 1.0}  # one mask for the channels
    assert abs(d.mask(x, idx).mean().item() - 0.5) < 0.05  # keep probability 0.5
    ours = masked_tv(xs, mask, 0.03, d.iters)
    obj = masked_tv_objective(ours, xs, mask, 0.03)
    # at least as good a solution of their problem as their own solver gives
    guo = torch.from_numpy(_split_bregman(xs.numpy(), mask[:, 0].numpy(), 0.03))
    assert (obj <= masked_tv_objective(guo, xs, mask, 0.03)).all()
    # a minimiser of the stated problem: better than the solutions of neighbouring problems, than perturbations of
    # itself, and within 2% of the objective ten times the default iterations reach (Guo et al.'s solver stops
    # about 20% above it)
    for other in (masked_tv(xs, mask, 0.015, d.iters), masked_tv(xs, mask, 0.06, d.iters),
                  masked_tv(xs, 1 - mask, 0.03, d.iters), ours + 1e-3 * torch.randn_like(ours)):
        assert (obj < masked_tv_objective(other, xs, mask, 0.03)).all()
    assert torch.allclose(obj, masked_tv_objective(masked_tv(xs, mask, 0.03, 10 * d.iters), xs, mask, 0.03),
                          rtol=0.02)
    # the purifier is that solution for its drawn mask, and its full gradient runs through the solver
    assert torch.allclose(d.purify(x[:4], ids).double(), ours.clamp(0, 1), atol=1e-5)
    xr = x[:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(build("tvm", standard, data_dir, iters=20).differentiable_purify(xr, ids[:2]).sum(), xr)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_tvm_solver_blocks_give_the_one_block_solution(cifar10_test, monkeypatch) -> None:
    """Without a gradient the solver runs in blocks of images (a speed choice): the same images in the same order as
    one unrolled solve over the whole batch; with a gradient it solves the batch at once."""
    from zeropur_bench.defense.purifiers import tvm

    x = cifar10_test[0][:41].clone()
    mask = (torch.rand(len(x), 1, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    sizes: list[int] = []  # the batch size of each solver iteration
    grad = tvm._grad
    monkeypatch.setattr(tvm, "_grad", lambda u: (sizes.append(len(u)), grad(u))[1])
    with torch.no_grad():
        blocked = tvm.masked_tv(x, mask, 0.03, 3, block=7)
        whole = tvm.masked_tv(x, mask, 0.03, 3, block=len(x))
    assert sorted(set(sizes)) == [6, 7, 41]  # 5 blocks of 7 and one of 6, then the batch at once
    sizes.clear()
    graph = tvm.masked_tv(x.clone().requires_grad_(True), mask, 0.03, 3, block=7)
    assert set(sizes) == {41}  # a gradient: one unrolled solve, never blocks
    assert torch.allclose(blocked, whole, atol=1e-6) and torch.allclose(graph.detach(), whole, atol=1e-6)
    assert (blocked[:-1] - blocked[1:]).abs().amax() > 0.1  # distinct images, not one repeated


def test_random_resize_pad_is_xie_et_al(standard, images, data_dir: str) -> None:
    x, _, _ = images
    d = default("random-resize-pad", standard, data_dir)
    idx = torch.arange(64)
    xb = x.repeat(8, 1, 1, 1)
    size, top, left = d.draws(xb, idx)
    assert set(size.tolist()) == {32, 33, 34}  # r in [32, 35), every size drawn
    assert ((top >= 0) & (top <= 35 - size) & (left >= 0) & (left <= 35 - size)).all()
    out = d.purify(xb, idx)
    for b in range(0, 64, 7):  # each image: TensorFlow's nearest resize at its place, 0.5 around it
        r, t, s = int(size[b]), int(top[b]), int(left[b])
        src = (torch.arange(r) * 32) // r
        want = torch.full((3, 35, 35), 0.5)
        want[:, t:t + r, s:s + r] = xb[b][:, src][:, :, src]
        assert torch.equal(out[b], want), b
    assert (d.shape_preserving, d.gradients) == (False, ("full",))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d.differentiable_predict(xr, torch.arange(N)).logsumexp(1).sum(), xr)
    assert g.abs().sum() > 0


def test_mixup_inference_mixes_training_images_of_other_classes(standard, images, data_dir: str) -> None:
    from zeropur_bench.data import load_data

    x, y, idx = images
    d = default("mixup-inference", standard, data_dir)
    train_x, train_y, info = load_data("cifar10", "train", n=10000, data_dir=data_dir, return_info=True)
    assert d.config()["pool"] == {"dataset": "cifar10", "split": "train", "n": 10000, "sha256": info.sha256}
    with torch.no_grad():
        pred = standard(x).argmax(1)
        mixed = d.mixed(x, idx)  # (30, N, C, H, W)
    assert mixed.shape == (30, N, 3, 32, 32)
    partners = ((mixed - 0.5 * x) / 0.5 * 255).round().to(torch.uint8).flatten(0, 1)
    # every partner is a clean training image (not a test image) of a class other than the prediction
    table = {bytes(im.numpy()): int(c) for im, c in zip((train_x * 255).round().to(torch.uint8), train_y)}
    classes = torch.tensor([table[bytes(p.numpy())] for p in partners]).view(30, N)
    assert (classes != pred.view(1, -1)).all()
    assert len(classes.unique()) >= 9  # the other classes, uniformly
    test_x = {bytes(im.numpy()) for im in (load_data("cifar10", "test", n=1000, data_dir=data_dir)[0] * 255)
              .round().to(torch.uint8)}
    assert not any(bytes(p.numpy()) in test_x for p in partners)
    # MI-PL mixes with the predicted class; the prediction is the log of the averaged softmax over the 30 mixes
    pl = build("mixup-inference", standard, data_dir, variant="pl", pool_size=500, samples=5)
    pp = ((pl.mixed(x, idx) - 0.5 * x) / 0.5 * 255).round().to(torch.uint8).flatten(0, 1)
    assert (torch.tensor([table[bytes(p.numpy())] for p in pp]).view(5, N) == pred.view(1, -1)).all()
    with torch.no_grad():
        want = F.softmax(standard(mixed.flatten(0, 1)).view(30, N, 10), -1).mean(0)
        assert torch.allclose(d.predict(x, idx).exp(), want, atol=1e-6)
    assert d.gradients == ("full",)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(pl.differentiable_predict(xr, idx).logsumexp(1).sum(), xr)
    assert g.abs().sum() > 0


def test_anti_adversary_is_the_authors_layer(standard, images, data_dir: str) -> None:
    x, _, _ = images

    def authors(model, x, k=2, alpha=0.15):  # their Anti_Adv.py, on [0, 1] inputs (no normalisation)
        label = model(x).max(1)[1]
        with torch.enable_grad():
            anti = torch.zeros_like(x, requires_grad=True)
            for _ in range(k):
                (g,) = torch.autograd.grad(F.cross_entropy(model(x + anti), label), anti)
                anti.data -= alpha * g.sign()
        return model(x + anti)

    with torch.no_grad():
        assert torch.allclose(default("anti-adversary", standard, data_dir)(x), authors(standard, x), atol=1e-5)
        d = build("anti-adversary", standard, data_dir, clip=True)
        out, pred = d.purify(x), standard(x).argmax(1)
        # clipped to images, and the classifier is more confident in its own prediction than on x
        assert out.min() >= 0 and out.max() <= 1 and (out - x).abs().max() <= 0.3 + 1e-6
        assert F.cross_entropy(standard(out), pred) < F.cross_entropy(standard(x), pred)


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_draws_per_example(name: str, standard, images, data_dir: str) -> None:
    """Reproducible under a fixed seed (a fresh build), different across seeds and streams, and the same draw for
    an example in any batch (a slice, a permutation)."""
    x, _, idx = images
    small = {"tvm": {"iters": 30}, "mixup-inference": {"pool_size": 500, "samples": 4}}.get(name, {})
    a, b = build(name, standard, data_dir, **small), build(name, standard, data_dir, **small)
    other = build(name, standard, data_dir, seed=1, **small)
    with torch.no_grad():
        first = a.purify(x, idx)
        assert torch.equal(first, b.purify(x, idx))
        assert torch.equal(a(x, indices=idx), b(x, indices=idx))
        assert not torch.equal(first, other.purify(x, idx))
        assert not torch.equal(first, a.purify(x, idx + STREAM))  # a resubmission draws afresh
        assert torch.equal(a.purify(x[2:6], idx[2:6]), first[2:6])
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(a.purify(x[perm], idx[perm]), first[perm], atol=1e-6)
        assert torch.allclose(a(x[perm], indices=idx[perm]), a(x, indices=idx)[perm], atol=1e-5)


def test_records_and_list_show_every_purifier(data_dir: str) -> None:
    """Every purifier runs by name through the engine; its record holds its options and resolved settings."""
    from click.testing import CliRunner

    from zeropur_bench.cli import main
    from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
    from zeropur_bench.evaluate import evaluate
    from zeropur_bench.fmt import fmt_value

    given = {"tvm": {"iters": 50}, "mixup-inference": {"pool_size": 1000, "samples": 5}}
    config = EvalConfig(model="resnet20-cifar10-standard", n_ex=4, batch_size=4,
                        attacks=[AttackSpec("pgd", {"steps": 2})],
                        defenses=[DefenseSpec(n, options=given.get(n, {})) for n in NAMES])
    rec = evaluate(config, data_dir=data_dir, write=False)
    for name in NAMES:
        key = name + {"tvm": "[iters=50]", "mixup-inference": "[pool_size=1000,samples=5]"}.get(name, "")
        block = rec["variants"][key]["defense"]
        assert block["name"] == name and block["options"] == given.get(name, {})
        resolved = {k: v for k, v in block["resolved"].items() if k not in ("method", "seed", "pool")}
        assert block["resolved"]["method"] == name
        want = {**registered(name).defaults, **given.get(name, {})}
        assert resolved == {k: v for k, v in want.items() if k != "pool_size"}
        assert all(want[k] == v for k, v in PAPER[name].items() if k not in given.get(name, {}))
        assert block["deterministic"] is (name not in RANDOMIZED)
        assert rec["variants"][key]["summary"]["n"] == 4
    assert rec["variants"]["mixup-inference[pool_size=1000,samples=5]"]["defense"]["resolved"]["pool"]["n"] == 1000
    listing = CliRunner().invoke(main, ["list"])
    assert listing.exit_code == 0, listing.output
    for name in NAMES:
        row = next(line for line in listing.output.splitlines() if line.startswith(f"| {name} "))
        for k, v in PAPER[name].items():
            assert f"{k}={fmt_value(v)}" in row.replace(" ", ""), (name, k, row)


def test_adaptive_attacks_get_the_gradients_each_offers(data_dir: str) -> None:
    """Attacked adaptively by name: PGD through each purifier's default access runs on all seven; BPDA+EOT is
    refused (one line) where there is no BPDA, PGD+EOT where there is no full gradient."""
    from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
    from zeropur_bench.errors import UserError
    from zeropur_bench.evaluate import evaluate

    small = {"tvm": {"iters": 30}, "mixup-inference": {"pool_size": 500, "samples": 4}}

    def config(names, attack: AttackSpec) -> EvalConfig:
        return EvalConfig(model="resnet20-cifar10-standard", n_ex=4, batch_size=4, setting="adaptive",
                          attacks=[attack], defenses=[DefenseSpec(n, options=small.get(n, {})) for n in names])

    rec = evaluate(config(NAMES, AttackSpec("pgd", {"steps": 2})), data_dir=data_dir, write=False)
    assert len(rec["variants"]) == 7
    for v in rec["variants"].values():
        s = v["summary"]
        assert s["robust_acc"]["pgd[steps=2]"] <= s["defended_clean_acc"] and s["n"] == 4
    for name in ("random-resize-pad", "mixup-inference"):
        with pytest.raises(UserError, match="needs BPDA access"):
            evaluate(config([name], AttackSpec("bpda-eot", {"steps": 1})), data_dir=data_dir, write=False)
    with pytest.raises(UserError, match="needs the full gradient"):
        evaluate(config(["bit-depth"], AttackSpec("pgd-eot", {"steps": 1})), data_dir=data_dir, write=False)
