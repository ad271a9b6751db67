"""Feature-layer detection and hooks (the embedding f and stage outputs f_l of Eq. 7–11) on any architecture."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeropur_bench.archs import build_arch
from zeropur_bench.archs.cifar_resnet import CifarResNet
from zeropur_bench.defense import detect_layers
from zeropur_bench.defense.layers import FeatureTap
from zeropur_bench.errors import UserError


class Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class UserModel(nn.Module):
    """A user's own wrapper: normalisation submodule + CIFAR ResNet (adaptive_avg_pool2d, then nn.Linear)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.norm = Normalize()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.norm(x))


@pytest.fixture(scope="module")
def user_model(resnet20) -> UserModel:
    backbone = CifarResNet(3)
    backbone.load_state_dict(resnet20.net.state_dict())
    return UserModel(backbone).eval()


def test_shared_resnet20(resnet20) -> None:
    spec = detect_layers(resnet20)
    assert spec.embedding == "net.linear"
    assert spec.stages == ("net.layer1", "net.layer2", "net.layer3")


def test_user_class_detected_and_hooks_match_manual_forward(user_model: UserModel, cifar10_test) -> None:
    spec = detect_layers(user_model)
    assert spec.embedding == "backbone.linear"
    assert spec.stages == ("backbone.layer1", "backbone.layer2", "backbone.layer3")
    x = cifar10_test[0][:8]
    with torch.no_grad(), FeatureTap(user_model, spec) as tap:
        logits, feats, emb = tap.run(x)
        b = user_model.backbone
        h1 = b.layer1(F.relu(b.bn1(b.conv1(user_model.norm(x)))))
        h3 = b.layer3(b.layer2(h1))
    torch.testing.assert_close(feats["backbone.layer1"], h1)
    torch.testing.assert_close(feats["backbone.layer3"], h3)
    torch.testing.assert_close(emb, F.adaptive_avg_pool2d(h3, 1).flatten(1))
    torch.testing.assert_close(logits, b.linear(emb))
    # hooks are gone after the block: the user's model is left as it was
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in user_model.modules())


@pytest.mark.parametrize("arch,embedding,stages", [
    ("resnet18", "linear", ("layer1", "layer2", "layer3", "layer4")),
    ("preact-resnet18", "linear", ("layer1", "layer2", "layer3", "layer4")),
    ("wrn-28-10", "fc", ("block1", "block2", "block3")),
])
def test_builtin_architectures(arch: str, embedding: str, stages: tuple) -> None:
    spec = detect_layers(build_arch(arch, 10))
    assert spec.embedding == embedding and spec.stages == stages


def test_timm_resnet() -> None:
    timm = pytest.importorskip("timm")
    spec = detect_layers(timm.create_model("resnet18", pretrained=False, num_classes=10))
    assert spec.embedding == "fc" and spec.stages == ("layer1", "layer2", "layer3", "layer4")


def test_explicit_layers_override(resnet20) -> None:
    spec = detect_layers(resnet20, layers=["net.layer2", "net.layer3.2"], embedding="net.linear")
    assert spec.stages == ("net.layer2", "net.layer3.2")
    with pytest.raises(UserError, match="net.layer1"):
        detect_layers(resnet20, layers=["net.layer9"])


def test_model_without_linear_lists_candidates() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(8, 4, 3)), nn.Flatten())
    with pytest.raises(UserError, match=r"no nn.Linear.*Candidate modules: 1"):
        detect_layers(model)


def test_model_without_stages_lists_candidates() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1)), nn.Flatten(),
                          nn.Linear(8, 10))
    with pytest.raises(UserError, match=r"layers=\[\.\.\.\].*Candidate modules: 1"):
        detect_layers(model)


class VGGStyle(nn.Module):
    """A user's VGG-style CNN: its stages are ``features.0..2`` (no layer<N> / block<N> / stage<N> names)."""

    def __init__(self) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 8), block(8, 16), block(16, 32))
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_vgg_style_stages_refused_with_the_layers_to_paste(cifar10_test) -> None:
    """Refused with the exact layers=[...] to paste; with it, ZeroPur purifies and calibrate fits a weight."""
    from zeropur_bench.defense import ZeroPur, calibrate

    torch.manual_seed(0)
    model = VGGStyle().eval()
    with pytest.raises(UserError, match=r"could not find the classifier's stages .* pass layers=\[\.\.\.\]") as exc:
        ZeroPur(model, profile="authors")
    assert "layers=['features.0', 'features.1', 'features.2']" in str(exc.value)
    assert '--zp "layers=features.0|features.1|features.2"' in str(exc.value)
    layers = ["features.0", "features.1", "features.2"]
    x = cifar10_test[0][:4]
    zp = ZeroPur(model, profile="authors", layers=layers, coarse_steps=2, fine_steps=2)
    assert zp.config()["layers"]["stages"] == layers and zp.config()["layers"]["fine"] == layers[-2:]
    out = zp.purify(x)
    assert out.shape == x.shape and not torch.equal(out, x) and (out - x).abs().max() <= 10 / 255 + 1e-6
    # calibrate on in-memory images (a test's stand-in for the training slice), with the same layers
    cal = calibrate(model, "cifar10", rule="scale", data=(x, cifar10_test[1][:4]), layers=layers)
    assert cal.ila_weight > 0 and cal.details["fine_layers"] == layers[-2:]
