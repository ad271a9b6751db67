"""Make the published packages import together.

robustbench 1.1.1 declares the PyPI package ``pyautoattack`` but imports the GitHub name ``autoattack``
(robustbench issue #211). Before robustbench is imported, ``autoattack`` and its submodules are made to resolve
to ``pyautoattack``. robustbench also imports ``pkg_resources`` (setuptools < 81 is pinned in pyproject).
This is the only module that imports robustbench.
"""
from __future__ import annotations

import hashlib
import base64
import importlib
import importlib.metadata
import sys
import warnings
from pathlib import Path
from types import ModuleType

_SUBMODULES = ("autoattack", "autopgd_base", "fab_base", "fab_pt", "square", "checks", "state", "other_utils",
               "fab_projections")


def alias_autoattack() -> None:
    """Register ``pyautoattack`` (and its submodules) under the import name ``autoattack``."""
    if "autoattack" in sys.modules and getattr(sys.modules["autoattack"], "__name__", "") == "pyautoattack":
        return
    pkg = importlib.import_module("pyautoattack")
    sys.modules["autoattack"] = pkg
    for sub in _SUBMODULES:
        try:
            mod = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:  # a submodule that needs tensorflow etc.
            continue
        sys.modules[f"autoattack.{sub}"] = mod


def import_robustbench() -> ModuleType:
    """Import robustbench with the ``autoattack`` alias in place and return the package."""
    alias_autoattack()
    with warnings.catch_warnings():
        # pkg_resources / torch.jit deprecation notices from robustbench's imports: not the user's concern.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        import robustbench  # noqa: WPS433 (import after the alias on purpose)
        import robustbench.utils  # noqa: F401
        import robustbench.data  # noqa: F401
    return robustbench


def robustbench_record_mismatches() -> list[str]:
    """Files of the installed robustbench whose sha256 differs from its own dist-info ``RECORD``.

    torchattacks 3.5.1's wheel ships a 2022 copy of ``robustbench/``; depending on install order it overwrites
    robustbench 1.1.1's files while the version string stays "1.1.1". An empty list means the files are the
    release's own.
    """
    dist = importlib.metadata.distribution("robustbench")
    bad: list[str] = []
    for f in dist.files or []:
        if f.hash is None or not str(f).startswith("robustbench/"):
            continue
        path = Path(dist.locate_file(f))
        if not path.exists():
            bad.append(f"{f} (missing)")
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        if digest != f.hash.value:
            bad.append(str(f))
    return bad
