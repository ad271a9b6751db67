"""The one device check: ``--device`` as a ``torch.device`` that exists on this machine, before any work."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError


def cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line of /proc/cpuinfo (Linux), its value; None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags_of_note() -> list[str]:
    """The vector/matrix flags that decide bf16 and fp32 speed here (AVX2, AVX-512, AMX), from /proc/cpuinfo."""
    return sorted(f for f in (cpuinfo_field("flags") or "").split() if f == "avx2" or f.startswith(("avx512", "amx")))


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively on ``device``: a CUDA GPU that supports it, or a CPU with avx512_bf16 or AMX-BF16.
    Elsewhere (an AVX2-only CPU) bf16 autocast is emulated, about 15x slower than fp32 (environment.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = set(cpu_flags_of_note())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> bool:
    """``precision`` ('fp32', 'bf16' or 'auto': bf16 where :func:`native_bf16`, else fp32) as the bf16 flag."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


PRECISIONS = ("fp32", "bf16", "auto")


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
