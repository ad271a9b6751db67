"""Attacks behind one interface, registered by name (``ATTACKS``; build with ``make_attack``).

Transfer attacks (``pgd``, ``difgsm``, ``autoattack``, ``square``) take any model: the bare classifier in the
transfer setting, the defense in the adaptive one. ``bpda-eot``, ``defense-aware``, ``pgd-eot``,
``autoattack-bpda`` and ``autoattack-full`` need the defense object (``needs_defense``) and are adaptive-only.
"""
from __future__ import annotations

from .base import ATTACKS, NORM_DEFAULTS, Attack, make_attack, register
from . import pgd, difgsm, autoattack, square, bpda_eot, defense_aware, pgd_eot  # noqa: F401,E402  (registration)
from .autoattack import AutoAttack, AutoAttackBPDA, AutoAttackFull
from .bpda_eot import BPDAEOT
from .defense_aware import DefenseAware
from .difgsm import DIFGSM
from .pgd import PGD
from .pgd_eot import PGDEOT
from .square import Square

__all__ = ["ATTACKS", "NORM_DEFAULTS", "Attack", "make_attack", "register", "PGD", "DIFGSM", "AutoAttack",
           "AutoAttackBPDA", "AutoAttackFull", "Square", "BPDAEOT", "DefenseAware", "PGDEOT"]
