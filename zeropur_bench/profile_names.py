"""ZeroPur's profile names and the one default profile, for every entry point: ``ZeroPur(classifier)`` in Python,
a ``zeropur`` defense spec without a profile (run configs, ``--defense zeropur``), sweeps, and the command line's
``--profile``. Torch-free, so that the command line can offer the choices without loading the engine; the
profiles' settings are in :mod:`zeropur_bench.defense.profiles`.

Why ``calibrated`` (issue 20; README "The calibrated profile"): the authors' fixed ILA weight of 1e-4 only suits
classifiers whose features are as large as the public ResNet-20's, and ``calibrated`` reproduces Table 2's C-F
cells on our ResNet-20s where ``authors`` does not. ``authors`` (the authors' public code, bit for bit) stays one
keyword away: ``profile='authors'`` / ``--profile authors``.
"""
from __future__ import annotations

PROFILE_NAMES = ("authors", "paper", "calibrated")
DEFAULT_PROFILE = "calibrated"
# C runs no fine stage, so under these profiles (which differ only there) ZeroPur-C is one defense
SAME_C_PROFILES = ("authors", "calibrated")
