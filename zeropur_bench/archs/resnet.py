"""ResNet-18 (CIFAR variant: 3×3 stem, no max-pool) and PreAct ResNet-18, as laid out in RobustBench 1.1.1.

Written here rather than imported from robustbench because the training path (``python -m zeropur_bench.train``)
must run where robustbench is not installed (a bare GPU machine with only torch/torchvision). The module tree and
the state_dict keys and shapes are exactly those of ``robustbench.model_zoo.architectures.resnet.ResNet(BasicBlock,
[2, 2, 2, 2])`` and ``PreActResNet(PreActBlock, [2, 2, 2, 2])``, so zoo checkpoints and ours load into either
strictly (``tests/test_train_gpu_path.py`` checks it against robustbench), and the stage names ``layer1..layer4`` that the defense hooks are the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Post-activation basic block; projection shortcut (1×1 conv + BN) when the shape changes, else an empty
    ``nn.Sequential`` (identity), as RobustBench has it."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016b); the 1×1 projection shortcut (no BN) exists only when the shape
    changes and then reads the block's raw input, as RobustBench's default (``out_shortcut=False``)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


def _stages(net: nn.Module, block: type[nn.Module], num_blocks: tuple[int, ...]) -> None:
    """``layer1..layer4`` (64-128-256-512 channels, stride 1-2-2-2) on ``net``, in RobustBench's order."""
    in_planes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
        blocks = []
        for j in range(n):
            blocks.append(block(in_planes, planes, (1 if i == 0 else 2) if j == 0 else 1))
            in_planes = planes
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))


class ResNet(nn.Module):
    """CIFAR ResNet (3×3 stem conv + BN + ReLU, four stages, 4×4 average pool, ``linear``)."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        _stages(self, BasicBlock, num_blocks)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


class PreActResNet(nn.Module):
    """CIFAR PreAct ResNet (bare 3×3 stem conv, four pre-activation stages, no final BN, 4×4 average pool,
    ``linear``), RobustBench's ``bn_before_fc=False`` layout."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        _stages(self, PreActBlock, num_blocks)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


def resnet18(num_classes: int = 10) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes)


def preact_resnet18(num_classes: int = 10) -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes)
