"""Where a record was made: package versions, platform, git commit."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from ..device import cpu_flags_of_note, cpuinfo_field

PACKAGES = ("zeropur-bench", "torch", "torchvision", "robustbench", "pyautoattack", "torchattacks", "numpy")


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    repo = Path(repo or Path(__file__).resolve().parents[2])
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() is empty there), so that a timing or a
    final-only number that moves with float rounding names the machine that made it."""
    return cpuinfo_field("model name") or platform.processor() or None


def _cpu_capability() -> str | None:
    try:
        import torch
        return torch.backends.cpu.get_cpu_capability()  # e.g. AVX2 / AVX512: which kernels torch runs
    except (ImportError, AttributeError):
        return None


def environment() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    return {"packages": versions, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine(), "cpu_count": os.cpu_count(), "git_commit": git_commit(),
            "cpu_model": cpu_model(), "cpu_flags": cpu_flags_of_note(), "cpu_capability": _cpu_capability()}
