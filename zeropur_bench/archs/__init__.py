"""Built-in architectures for local checkpoints, registered by name.

CIFAR ResNet-20/32/44/56 are our own module (option-A shortcuts, see ``cifar_resnet``). ResNet-18 (the CIFAR
variant with a 3×3 stem used by the paper), PreAct ResNet-18 and WideResNet-28-10 are our own modules too
(``resnet``, ``wide_resnet``) with exactly RobustBench 1.1.1's module tree and state_dict keys, so zoo checkpoints
and ours share one layout: the training path must run where robustbench is not installed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import UserError
from .cifar_resnet import CifarResNet
from .resnet import preact_resnet18, resnet18
from .wide_resnet import wrn_28_10


@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: Callable[[int], nn.Module]
    description: str
    params_m: float  # millions of parameters at 10 classes
    stages: tuple[str, ...]  # stage modules (names inside the bare net), in order


ARCHS: dict[str, ArchSpec] = {
    f"resnet{6 * n + 2}": ArchSpec(f"resnet{6 * n + 2}", (lambda c, n=n: CifarResNet(n, c)),
                                   f"CIFAR ResNet-{6 * n + 2} (He et al. 2016, option-A shortcuts)",
                                   round((0.27, 0.46, 0.66, 0.85)[i], 2), ("layer1", "layer2", "layer3"))
    for i, n in enumerate((3, 5, 7, 9))
}
ARCHS.update({
    "resnet18": ArchSpec("resnet18", resnet18, "ResNet-18, CIFAR variant (3×3 stem; RobustBench's layout)", 11.2,
                         ("layer1", "layer2", "layer3", "layer4")),
    "preact-resnet18": ArchSpec("preact-resnet18", preact_resnet18, "PreAct ResNet-18 (RobustBench's layout)", 11.2,
                                ("layer1", "layer2", "layer3", "layer4")),
    "wrn-28-10": ArchSpec("wrn-28-10", wrn_28_10, "WideResNet-28-10 (RobustBench's layout)", 36.5,
                          ("block1", "block2", "block3")),
})


def build_arch(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised built-in architecture."""
    if name not in ARCHS:
        raise UserError(f"unknown architecture '{name}'; built-in: {', '.join(ARCHS)}")
    return ARCHS[name].build(num_classes)
