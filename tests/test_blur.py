"""Blur operators g (paper Table 7, Table 9) against reference implementations, on real CIFAR-10 images."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torchvision.transforms.functional as TF

from zeropur_bench.defense import make_blur
from zeropur_bench.defense.blur import TVBlur
from zeropur_bench.errors import UserError


@pytest.fixture(scope="module")
def images(cifar10_test) -> torch.Tensor:
    return cifar10_test[0][:16].clone()


@pytest.mark.parametrize("k", [3, 5])
def test_median_matches_scipy(images: torch.Tensor, k: int) -> None:
    out = make_blur(f"median:{k}")(images)
    # torch 'reflect' padding (edge pixel not repeated) is scipy's mode='mirror'
    ref = scipy.ndimage.median_filter(images.numpy(), size=(1, 1, k, k), mode="mirror")
    assert out.shape == images.shape
    np.testing.assert_array_equal(out.numpy(), ref)


@pytest.mark.parametrize("sigma", [0.6, 1.2, 1.8])
def test_gaussian_matches_torchvision(images: torch.Tensor, sigma: float) -> None:
    blur = make_blur(f"gaussian:{sigma}")
    size = 2 * int(np.ceil(3 * sigma)) + 1
    ref = TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])
    torch.testing.assert_close(blur(images), ref, atol=2e-6, rtol=0)
    assert blur.spec == f"gaussian:{sigma:g}"


def test_tv_reduces_total_variation(images: torch.Tensor) -> None:
    blur = make_blur("tv:0.05")
    out = blur(images)
    tv_in, tv_out = TVBlur.tv(images, eps=0), TVBlur.tv(out, eps=0)
    print((tv_out / tv_in).max())
    assert (tv_out < 0.8 * tv_in).all()
    # the minimised objective ½‖z − x‖² + w·TV_ε(z) decreased for every image
    obj_in = 0.05 * TVBlur.tv(images)
    obj_out = 0.5 * (out - images).pow(2).flatten(1).sum(1) + 0.05 * TVBlur.tv(out)
    assert (obj_out < obj_in).all()
    assert (out - images).abs().max() < 0.5
    stronger = make_blur("tv:0.2:50")(images)
    assert (TVBlur.tv(stronger, eps=0) < tv_out).all()


@pytest.mark.parametrize("spec", ["median:3", "gaussian:1.2", "tv:0.05:10"])
def test_blur_is_differentiable_and_batch_independent(images: torch.Tensor, spec: str) -> None:
    blur = make_blur(spec)
    x = images.clone().requires_grad_(True)
    out = blur(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    halves = torch.cat([blur(images[:5]), blur(images[5:])])
    torch.testing.assert_close(halves, out.detach(), atol=1e-6, rtol=0)


def test_callable_and_spec_strings() -> None:
    blur = make_blur(lambda z: z.flip(-1))
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(blur(x), x.flip(-1))
    assert blur.spec.startswith("callable:")
    assert make_blur("median:3").spec == "median:3"
    assert make_blur("tv:0.1").spec == "tv:0.1:50"
    with pytest.raises(UserError, match="shape"):
        make_blur(lambda z: z[:, :1])(x)


@pytest.mark.parametrize("spec", ["median:4", "median:x", "gauss:1.2", "gaussian:-1", "tv:0", "tv:1:2:3", "", 42])
def test_bad_spec_raises_user_error(spec) -> None:
    with pytest.raises(UserError, match="median:k"):
        make_blur(spec)
