"""The one device check: ``--device`` as a ``torch.device`` that exists on this machine, before any work."""
from __future__ import annotations

import torch

from .errors import UserError


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device usable here (cpu, cuda, cuda:N), else a :class:`UserError` saying what to use."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device '{device}'; use cpu, cuda or cuda:N") from None
    if d.type == "cpu":
        return d
    if d.type != "cuda":
        raise UserError(f"device '{device}' is not supported: zeropur-bench supports --device cpu and --device cuda "
                        "(or cuda:N)")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a build without CUDA"
        raise UserError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__}, {build}); "
                        "use --device cpu")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        "numbered from 0")
    return d
