"""Where ZeroPur reads features: named forward hooks on any classifier.

f (paper Eq. 7) is the embedding = the input of the classifier's final ``nn.Linear``; f_l (Eq. 9–11) are stage
outputs. Detection works by module names, so it covers the built-in CIFAR ResNets (``layer1..3``), ResNet-18 /
PreAct (``layer1..4``), RobustBench's WideResNet (``block1..3``), timm ResNets (``layer1..4``) and any user model
whose stages are direct children named ``layer<N>``/``block<N>``/``stage<N>`` of one parent module. The authors'
code rebuilt sub-networks from ``children()`` at every step, which breaks on models that pool inside ``forward``;
hooks see exactly what the model's own forward computes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import UserError

__all__ = ["LayerSpec", "detect_layers", "FeatureTap"]

_STAGE_RE = re.compile(r"(layer|block|stage)(\d+)")


@dataclass(frozen=True)
class LayerSpec:
    """Names (as in ``model.named_modules()``) of the embedding module and the stage modules, in forward order."""

    embedding: str
    stages: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"embedding": self.embedding, "stages": list(self.stages)}


def _candidates(model: nn.Module) -> list[str]:
    """Module names a user could pass as ``layers=`` (containers below the root, first two levels)."""
    names = []
    for name, mod in model.named_modules():
        if name and name.count(".") <= 1 and len(list(mod.children())) > 0:
            names.append(name)
    return names


_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def suggest_layers(model: nn.Module) -> list[str]:
    """Stage names to paste when detection fails: in the ``nn.Sequential`` holding most of the convolutions,
    its children that are blocks with convolutions, else the module before each pooling layer (a flat VGG-style
    stack); [] when neither is there."""
    best, best_convs = None, 0
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            convs = sum(isinstance(m, nn.Conv2d) for m in mod.modules())
            if convs > best_convs:
                best, best_convs = (name, mod), convs
    if best is None:
        return []
    name, seq = best
    children = list(seq.named_children())
    prefix = f"{name}." if name else ""
    blocks = [f"{prefix}{n}" for n, m in children if len(list(m.children())) > 0
              and any(isinstance(t, nn.Conv2d) for t in m.modules())]
    if len(blocks) >= 2:
        return blocks
    return [f"{prefix}{children[i - 1][0]}" for i, (_, m) in enumerate(children) if i and isinstance(m, _POOLS)]


def _paste(model: nn.Module) -> str:
    names = suggest_layers(model)
    candidates = f"Candidate modules: {', '.join(_candidates(model)) or '(none)'}"
    if len(names) < 2:
        return candidates
    return (f"For this model, e.g. layers={names!r} (Python), or on the command line --zp "
            f"\"layers={'|'.join(names)}\". {candidates}")


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def detect_layers(model: nn.Module, layers: Sequence[str] | None = None, embedding: str | None = None) -> LayerSpec:
    """Find the embedding module (last ``nn.Linear`` by module order) and the stage modules.

    ``layers`` (explicit stage names, in forward order) and ``embedding`` (name of the module whose INPUT is the
    embedding) override detection. Raises :class:`UserError` listing candidate names when detection fails.
    """
    modules = dict(model.named_modules())
    if embedding is None:
        linears = _linear_names(model)
        if not linears:
            raise UserError(
                "ZeroPur needs the classifier's embedding (the input of its final nn.Linear) but the model has no "
                f"nn.Linear module; pass embedding='<module name>' (the module whose input is the embedding). "
                f"Candidate modules: {', '.join(_candidates(model)) or '(none)'}")
        embedding = linears[-1]
    elif embedding not in modules:
        raise UserError(f"embedding module {embedding!r} not found in the classifier; candidate modules: "
                        f"{', '.join(_candidates(model)) or '(none)'}")

    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        missing = [n for n in layers if n not in modules]
        if missing or not layers:
            raise UserError(f"layers {missing or layers} not found in the classifier; pass module names from: "
                            f"{', '.join(_candidates(model)) or '(none)'}")
        return LayerSpec(embedding, tuple(layers))

    groups: dict[str, list[tuple[int, int, str]]] = {}
    for order, (name, _) in enumerate(model.named_modules()):
        parent, _, leaf = name.rpartition(".")
        m = _STAGE_RE.fullmatch(leaf)
        if m:
            groups.setdefault(f"{parent}|{m.group(1)}", []).append((int(m.group(2)), order, name))
    if not groups:
        raise UserError(
            "could not find the classifier's stages (modules named layer<N>, block<N> or stage<N>); pass "
            f"layers=[...] with the stage module names in forward order. {_paste(model)}")
    # The group with most stages wins; ties go to the shallowest, then the first in module order.
    best = max(groups.values(), key=lambda g: (len(g), -g[0][2].count("."), -g[0][1]))
    stages = tuple(name for _, _, name in sorted(best))
    return LayerSpec(embedding, stages)


class FeatureTap:
    """Context manager that hooks the embedding and the stage modules for the duration of a ``with`` block.

    Inside the block ``tap.features`` maps each stage name to its latest output and ``tap.embedding`` holds the
    latest (flattened) input of the embedding module. Hooks are registered once per ``with`` (one purification
    call), not per step, and are removed on exit, so the user's model is left untouched.
    """

    def __init__(self, model: nn.Module, spec: LayerSpec, stages: Iterable[str] | None = None) -> None:
        self.model = model
        self.spec = spec
        self.stage_names = tuple(spec.stages if stages is None else stages)
        self.features: dict[str, torch.Tensor] = {}
        self.embedding: torch.Tensor | None = None
        self._handles: list = []
        self._depth = 0

    def _stage_hook(self, name: str):
        def hook(_mod: nn.Module, _inp, out) -> None:
            if isinstance(out, (tuple, list)):
                out = out[0]
            self.features[name] = out
        return hook

    def _emb_hook(self, _mod: nn.Module, inp) -> None:
        self.embedding = inp[0].flatten(1)

    def __enter__(self) -> "FeatureTap":
        self._depth += 1
        if self._depth == 1:
            modules = dict(self.model.named_modules())
            self._handles.append(modules[self.spec.embedding].register_forward_pre_hook(self._emb_hook))
            for name in self.stage_names:
                self._handles.append(modules[name].register_forward_hook(self._stage_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            for h in self._handles:
                h.remove()
            self._handles.clear()
            self.features = {}
            self.embedding = None

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Forward ``x``; return (logits, stage outputs, embedding). Must be called inside the ``with`` block."""
        self.features = {}
        self.embedding = None
        logits = self.model(x)
        missing = [n for n in self.stage_names if n not in self.features]
        if self.embedding is None or missing:
            raise UserError(
                f"the classifier's forward did not run module(s) {missing or [self.spec.embedding]}; pass "
                "layers=[...] / embedding=... naming modules its forward actually uses")
        feats, emb = self.features, self.embedding
        self.features, self.embedding = {}, None
        return logits, feats, emb
