"""Make the published packages import together.

robustbench 1.1.1 declares the PyPI package ``pyautoattack`` but imports the GitHub name ``autoattack``
(robustbench issue #211). ``install_autoattack_alias()`` (run by ``import zeropur_bench``) puts an import
finder that answers ``autoattack`` and every ``autoattack.<sub>`` with the ``pyautoattack`` module of the same
name, so a user's own ``import robustbench``, ``import robustbench.eval`` or ``import autoattack`` works beside
this package. Where the GitHub ``autoattack`` is installed, it is found and the alias never answers. The finder
imports nothing until asked.
robustbench also imports ``pkg_resources`` (setuptools < 81 is pinned in pyproject).
Only this module and :mod:`zeropur_bench.robustbench` (the adapter of ``robustbench.eval``) import robustbench.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

_ALIAS, _TARGET = "autoattack", "pyautoattack"


class _AutoAttackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``autoattack[.sub]`` → the module ``pyautoattack[.sub]`` itself (one module object, not a copy, so classes
    such as ``EvaluationState`` are the same under both names)."""

    def __init__(self) -> None:
        self.own_specs: dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == _ALIAS:
            others = [f for f in sys.meta_path if f is not self and hasattr(f, "find_spec")]
            if any(f.find_spec(fullname, path) is not None for f in others):
                return None  # the GitHub autoattack is installed: it wins
        elif not (fullname.startswith(_ALIAS + ".") and _aliased()):
            return None  # submodules of a real autoattack load normally (not from pyautoattack's folder)
        real = _TARGET + fullname[len(_ALIAS):]
        try:
            if importlib.util.find_spec(real) is None:
                return None
        except ModuleNotFoundError:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname == _ALIAS)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_TARGET + spec.name[len(_ALIAS):])
        self.own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        # the import system set module.__spec__ to the alias spec: give the module back its own
        module.__spec__ = self.own_specs.get(module.__name__, module.__spec__)


def _aliased() -> bool:
    return getattr(sys.modules.get(_ALIAS), "__name__", None) == _TARGET


def install_autoattack_alias() -> None:
    """Put the ``autoattack`` → ``pyautoattack`` finder first on ``sys.meta_path`` (once). It must precede the
    path finder: ``import autoattack.state`` would otherwise load ``pyautoattack/state.py`` a second time."""
    if not any(isinstance(f, _AutoAttackAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoAttackAlias())


def alias_autoattack() -> None:
    """Make ``import autoattack`` (and its submodules) resolve to ``pyautoattack``."""
    install_autoattack_alias()


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
