"""zeropur-bench: ZeroPur zero-shot adversarial purification as a RobustBench / AutoAttack benchmark plugin.

    from zeropur_bench import ZeroPur, load_defended_model, load_classifier, load_data
    defense = ZeroPur(classifier, profile="authors", stages="cf", blur="median:3")
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._compat import install_autoattack_alias

# robustbench 1.1.1 imports `autoattack`, PyPI ships `pyautoattack` (robustbench #211): after `import zeropur_bench` a
# user's own `import robustbench.eval` / `import autoattack` works. Cheap: nothing is imported until asked.
install_autoattack_alias()

from .classifiers import load_classifier
from .data import load_data
from .errors import UserError

__all__ = ["ZeroPur", "load_defended_model", "load_classifier", "load_data", "evaluate", "EvalConfig", "UserError",
           "Purifier", "register_defense", "BPDA", "FullGradient", "__version__"]


def __getattr__(name: str):
    # Lazy: importing the package stays cheap for the CLI's --help.
    if name in ("ZeroPur", "load_defended_model"):
        from . import defense

        return getattr(defense, name)
    if name in ("Purifier", "register_defense"):
        from . import defense  # the built-in defenses first: a user's name never shadows one
        from .defenses import register_defense
        from .purifier import Purifier

        return Purifier if name == "Purifier" else register_defense
    if name in ("BPDA", "FullGradient"):
        from . import gradients

        return getattr(gradients, name)
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate
    if name in ("EvalConfig", "AttackSpec", "DefenseSpec"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'zeropur_bench' has no attribute {name!r}")
