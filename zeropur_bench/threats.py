"""The one table of threat-model names: the CLI's lower-case name → the attack / RobustBench spelling."""
from __future__ import annotations

# Attack threat models (paper App. A.2); RobustBench also has a 'corruptions' zoo, which loads classifiers only.
THREATS: dict[str, str] = {"linf": "Linf", "l2": "L2"}
ZOO_THREATS: dict[str, str] = {**THREATS, "corruptions": "corruptions"}
NORMS: tuple[str, ...] = tuple(THREATS.values())
