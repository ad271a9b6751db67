"""Run records: one JSON file per run, written atomically, with the stable keys other tools read.

Layout (``docs/architecture.md``): ``config``, ``summary``, ``examples``, ``variants``, ``provenance``, ``cost``,
``environment``, ``model_info``. Partial results live in ``<record>.partial/`` (one JSON per finished batch)
until the run completes, so a killed run resumes at batch granularity.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = "zeropur-bench/record/v1"
PACKAGES = ("zeropur-bench", "torch", "torchvision", "robustbench", "pyautoattack", "torchattacks", "numpy")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_hash(config: dict) -> str:
    """Hash of the parts of a config that change results (not output paths or progress settings)."""
    relevant = {k: v for k, v in config.items() if k not in ("out", "progress", "batch_size_note")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    repo = Path(repo or Path(__file__).resolve().parents[1])
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    return {"packages": versions, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine(), "cpu_count": os.cpu_count(), "git_commit": git_commit()}


def load_record(path: str | os.PathLike) -> dict:
    with open(path) as f:
        rec = json.load(f)
    if rec.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} record")
    return rec


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text via a temp file + ``os.replace`` (no half-written tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
