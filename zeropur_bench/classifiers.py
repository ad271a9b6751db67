"""Classifiers: an ``nn.Module`` in eval mode, parameters frozen, mapping [0, 1] images to logits.

Two sources:

* a RobustBench zoo name, through ``robustbench.utils.load_model`` (offline when the checkpoint is already at
  ``<model_dir>/<dataset>/<threat_model>/<name>.pt``);
* a built-in architecture (:data:`zeropur_bench.archs.ARCHS`) plus a local checkpoint, wrapped in
  :class:`Normalized` so the normalisation lives inside the model.

Checkpoints are only ever read with ``torch.load(..., weights_only=True)`` or safetensors: a pickle that would
run code is refused.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence, overload

import torch
from torch import nn

from .archs import ARCHS, build_arch
from .data import DATASETS, check_dataset
from .errors import UserError
from .registry import file_sha256
from .threats import ZOO_THREATS

# Normalisation of the public CIFAR ResNets in ../shared/weights (akamaster): ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL_DIR = "models"


class Normalized(nn.Module):
    """``net((x - mean) / std)``: a bare network with its input normalisation inside (``channels_last``: the
    normalised input in that memory format, as training feeds a channels_last network)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], channels_last: bool = False
                 ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.net, self.channels_last = net, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


@dataclass
class ModelInfo:
    """What was loaded; records carry it."""

    name: str
    dataset: str
    source: str  # "robustbench" | "builtin"
    arch: str
    num_classes: int
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    normalization: dict | None = None
    recipe: str | None = None  # training recipe, from the registry (by name or by the file's sha256)
    registered_as: str | None = None  # the registry name this file is known by
    meta: dict = field(default_factory=dict)  # what the checkpoint says about itself (recipe, accuracy, ...)

    def to_dict(self) -> dict:
        return asdict(self)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Read a checkpoint without running code: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; check the path (--checkpoint)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from .registry import read_metadata

        try:
            tensors = load_file(str(path), device=str(map_location))
            meta = read_metadata(path)
        except Exception as exc:  # a truncated or foreign file
            raise UserError(f"cannot read safetensors checkpoint '{path}': {str(exc).splitlines()[0][:200]}") from None
        # fp16-shipped weights run in fp32
        tensors = {k: (v.float() if v.dtype == torch.float16 else v) for k, v in tensors.items()}
        return {"state_dict": tensors, **meta} if meta else tensors
    with open(path, "rb") as f:
        magic = f.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch zip archive, or a legacy pickle
        raise UserError(f"cannot read checkpoint '{path}': it is neither a PyTorch checkpoint nor a .safetensors "
                        f"file; pass the classifier's saved state_dict")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"refusing to load '{path}': its pickle holds more than tensors and plain containers, "
                        f"so loading it could run code ({first}). Re-save it as a plain state_dict "
                        f"(torch.save(model.state_dict(), ...)) or as safetensors.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"cannot read checkpoint '{path}': {str(exc).splitlines()[0][:200]}") from None


def extract_state_dict(obj: Any, path: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict]:
    """The state_dict and any metadata from the common layouts: raw state_dict, ``{'state_dict': ...}``,
    ``{'model': ...}`` / ``{'model_state_dict': ...}``, with ``module.`` / ``model.`` prefixes stripped."""
    meta: dict = {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], Mapping):
                meta = {k: v for k, v in obj.items() if k != key and not isinstance(v, torch.Tensor)}
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"'{path}' is not a state_dict (a mapping of parameter names to tensors), nor a dict with "
                        f"one under 'state_dict' / 'model_state_dict' / 'model'")
    sd = dict(obj)
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd, meta


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad_(False)``: attacks and purification only need input gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


def _builtin(arch: str, dataset: str, checkpoint: str | None, mean: Sequence[float] | None,
             std: Sequence[float] | None) -> tuple[nn.Module, ModelInfo]:
    num_classes = DATASETS[dataset]["num_classes"]
    if checkpoint is None:
        raise UserError(f"built-in architecture '{arch}' needs --checkpoint PATH (a state_dict file); "
                        f"for a RobustBench zoo model give its zoo name instead")
    sd, meta = extract_state_dict(safe_load(checkpoint), checkpoint)
    norm = meta.get("normalization") if isinstance(meta.get("normalization"), Mapping) else None
    mean = tuple(mean or (norm or {}).get("mean") or IMAGENET_MEAN)
    std = tuple(std or (norm or {}).get("std") or IMAGENET_STD)
    net = build_arch(arch, num_classes)
    out_w = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
    if out_w and out_w[-1].shape[0] != num_classes:
        raise UserError(f"checkpoint '{checkpoint}' has {out_w[-1].shape[0]} output classes but {dataset} has "
                        f"{num_classes}; use the matching --dataset or checkpoint")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"checkpoint '{checkpoint}' does not fit architecture '{arch}': "
                        f"{' '.join(lines[1:3])[:300]}. Check --model (built-in: {', '.join(ARCHS)})") from None
    keep = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    info = ModelInfo(name=arch, dataset=dataset, source="builtin", arch=arch, num_classes=num_classes,
                     checkpoint=str(checkpoint), checkpoint_sha256=file_sha256(checkpoint),
                     normalization={"mean": list(mean), "std": list(std)}, meta=keep)
    return Normalized(net, mean, std), info


@contextlib.contextmanager
def _torch_load_weights_only() -> Iterator[None]:
    """robustbench calls ``torch.load`` without ``weights_only``; force it (torch's own default can be switched
    off by TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)."""
    original = torch.load

    @functools.wraps(original)
    def safe(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe
    try:
        yield
    finally:
        torch.load = original


def zoo_names(dataset: str, threat_model: str) -> list[str]:
    from ._compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return list(model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)])


def _zoo(name: str, dataset: str, threat_model: str, model_dir: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    from ._compat import import_robustbench

    rb = import_robustbench()
    names = zoo_names(dataset, threat_model)
    if name not in names:
        from . import registry

        shipped = list(registry.entries())
        close = difflib.get_close_matches(name, names + list(ARCHS) + shipped, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model '{name}' for {dataset}/{threat_model}: neither a shipped classifier, a "
                        f"built-in architecture ({', '.join(ARCHS)}) nor a RobustBench zoo name.{hint} "
                        "`zeropur-bench list` shows them.")
    root = Path(model_dir or DEFAULT_MODEL_DIR)
    path = root / dataset / threat_model / f"{name}.pt"
    existed = path.exists()
    from .data import OFFLINE_VAR, offline

    if not existed and offline():
        raise UserError(f"RobustBench model '{name}' is not at '{path}' and offline mode (${OFFLINE_VAR}) forbids "
                        f"downloading it: copy the file there (--model-dir), or use a shipped classifier, e.g. "
                        f"--model resnet20-{dataset}-standard")
    try:
        with _torch_load_weights_only():
            model = rb.utils.load_model(name, model_dir=str(root), dataset=dataset, threat_model=threat_model)
    except pickle.UnpicklingError as exc:
        raise UserError(f"refusing to load '{path}': its pickle holds more than tensors ({str(exc)[:120]})") from None
    except Exception as exc:  # download failure offline (ConnectionError, gdown errors, ...)
        if not existed and path.exists():
            path.unlink()  # never leave a half-downloaded checkpoint behind
        raise UserError(f"could not load RobustBench model '{name}': its checkpoint is not at '{path}' and the "
                        f"download failed ({type(exc).__name__}). Offline, copy the file there (--model-dir), or "
                        f"use a built-in architecture with a local file, e.g. --model resnet20 --checkpoint "
                        f"../shared/weights/cifar10/resnet20.th") from None
    info = ModelInfo(name=name, dataset=dataset, source="robustbench", arch=name,
                     num_classes=DATASETS[dataset]["num_classes"],
                     checkpoint=str(path) if path.exists() else None,
                     checkpoint_sha256=file_sha256(path) if path.exists() else None)
    return model, info


@overload
def load_classifier(model: str, dataset: str = ..., threat_model: str = ..., checkpoint: str | None = ...,
                    model_dir: str | os.PathLike | None = ..., device: str | torch.device = ...,
                    mean: Sequence[float] | None = ..., std: Sequence[float] | None = ...,
                    return_info: Literal[False] = ...) -> nn.Module: ...
@overload
def load_classifier(model: str, dataset: str = ..., threat_model: str = ..., checkpoint: str | None = ...,
                    model_dir: str | os.PathLike | None = ..., device: str | torch.device = ...,
                    mean: Sequence[float] | None = ..., std: Sequence[float] | None = ...,
                    *, return_info: Literal[True]) -> tuple[nn.Module, ModelInfo]: ...


def load_classifier(model: str, dataset: str = "cifar10", threat_model: str = "Linf", checkpoint: str | None = None,
                    model_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    return_info: bool = False):
    """A frozen classifier in eval mode mapping [0, 1] images to logits.

    ``model`` is a shipped classifier's registry name (``resnet20-cifar10-standard``, see
    :mod:`zeropur_bench.registry`), a built-in architecture name (needs ``checkpoint``) or a RobustBench zoo name
    (checkpoint read from ``model_dir``). A checkpoint whose sha256 is registered gets its recipe in the info. ``mean``/``std`` override the normalisation of a built-in architecture (default: what
    the checkpoint records, else ImageNet statistics as the shared CIFAR ResNets use).
    """
    check_dataset(dataset)
    tm = ZOO_THREATS.get(str(threat_model).lower())
    if tm is None:
        raise UserError(f"unknown threat model '{threat_model}'; known: {', '.join(ZOO_THREATS)}")
    from . import registry

    entry = registry.get(model)
    if entry is not None:
        if entry.dataset != dataset:
            raise UserError(f"classifier '{model}' is a {entry.dataset} classifier; use --dataset {entry.dataset} "
                            f"(or another model)")
        if checkpoint is not None:
            raise UserError(f"'{model}' is a shipped classifier with its own weights; drop --checkpoint (or use "
                            f"--model {entry.arch} --checkpoint PATH)")
        path = registry.path_of(entry)
        sha = file_sha256(path)
        if sha != entry.sha256:  # checked before the file is read as a checkpoint
            raise UserError(f"classifier '{entry.name}': its file '{path}' has sha256 {sha}, the registry expects "
                            f"{entry.sha256}; the file was changed: reinstall the package (or restore the file)")
        net, info = _builtin(entry.arch, dataset, str(path), mean, std)
        info.name = entry.name
    elif model in ARCHS:
        net, info = _builtin(model, dataset, checkpoint, mean, std)
    else:
        if checkpoint is not None:
            raise UserError(f"--checkpoint is for built-in architectures ({', '.join(ARCHS)}); '{model}' is not one")
        net, info = _zoo(model, dataset, tm, model_dir)
    known = registry.by_sha256(info.checkpoint_sha256)
    if known is not None:
        info.recipe, info.registered_as = known.recipe, known.name
    net = freeze(net.to(device))
    return (net, info) if return_info else net
