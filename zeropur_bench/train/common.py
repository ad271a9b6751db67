"""The pieces of a training run that do not depend on its state: the learning-rate schedule, the per-epoch
generator, the device, atomic checkpoint writes, the folder lock, the test-set evaluation and the progress bar."""
from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..device import check_device
from ..errors import UserError
from ..fsio import write_bytes_atomic


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, schedule: str = "cosine") -> float:
    """Linear warm-up from ``base_lr / warmup_steps`` to ``base_lr``, then decay to 0 (per step): cosine, or
    linear for ``schedule='cyclic'``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cyclic":
        return base_lr * (1 - t)
    return base_lr * 0.5 * (1 + math.cos(math.pi * t))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``: data order and augmentation depend on ``(seed, epoch)`` only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that is usable here (:func:`zeropur_bench.device.check_device`)."""
    return check_device(device)


def device_info(dev: torch.device) -> dict[str, str]:
    """What a log entry / metadata records about the device: its name, and the GPU's model on CUDA."""
    info = {"device": str(dev)}
    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
    return info


def to_cpu(obj: Any) -> Any:
    """A (nested) state_dict with every tensor on the CPU (``_metadata`` kept), so checkpoints load anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """Images from :func:`zeropur_bench.data.load_data` as uint8."""
    # load_data returns exact k/255 floats of the npz's uint8: keep uint8 in memory (4× less), convert per batch
    return (x * 255).round().to(torch.uint8)


@contextlib.contextmanager
def no_tf32(dev: torch.device) -> Iterator[None]:
    """Plain fp32 convolutions / matmuls on CUDA (cuDNN uses TF32 for fp32 convolutions by default)."""
    if dev.type != "cuda":
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch prefers the fp32_precision API; the flags still work
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def write_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` through the package's one atomic writer."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out``: two processes training into one folder would overwrite each other."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another process is training into '{out}'; wait for it to finish (or stop it), "
                            f"or use another --out") from None
        yield


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             bf16: bool = False, channels_last: bool = False, batch_size: int = 500) -> torch.Tensor:
    """Per-example correctness of ``net`` (eval mode) on uint8 images ``x``, on ``x``'s device (bf16 autocast or
    plain fp32: TF32 off on CUDA). The result stays on that device."""
    was = net.training
    net.eval()
    out = []
    with no_tf32(x.device) if not bf16 else contextlib.nullcontext():
        for i in range(0, len(x), batch_size):
            xb = (x[i:i + batch_size].float() / 255 - mean) / std
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(net(xb).argmax(1) == y[i:i + batch_size])
    net.train(was)
    return torch.cat(out)


class ProgressBar:
    """A rich progress bar with loss / accuracy when writing to a terminal, else nothing (epoch lines only)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        self.task = None
        self.stats = ""
        if enabled and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            except ImportError:  # a bare machine (e.g. a GPU box with torch only): epoch lines only
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                     console=Console(stderr=True), transient=False)
            self.progress.start()

    def new(self, desc: str, total: int) -> None:
        """Start the bar of a new epoch of ``total`` steps."""
        if self.progress is not None:
            self.task = self.progress.add_task(desc, total=total, stats="")

    def update(self, stats: str | None = None) -> None:
        """One step done; ``stats`` replaces the shown loss / accuracy (``None``: keep the last ones)."""
        if self.progress is not None and self.task is not None:
            self.stats = self.stats if stats is None else stats
            self.progress.update(self.task, advance=1, stats=self.stats)

    def close(self) -> None:
        """Stop the bar (its last state stays on the terminal)."""
        if self.progress is not None:
            self.progress.stop()
