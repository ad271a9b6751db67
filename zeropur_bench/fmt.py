"""The one formatter of values and accuracies, shared by attack labels, tables, figures and the CLI."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Sequence


def fmt_value(v: Any) -> str:
    """8/255-style for small fractions of 255 (steps, eps), else the plain value; lists as a|b|c."""
    if isinstance(v, float):
        frac = Fraction(v * 255).limit_denominator(10)
        if 0 < v <= 64 / 255 and abs(float(frac) / 255 - v) < 1e-9:
            return f"{frac}/255"
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "|".join(fmt_value(x) for x in v)
    return str(v)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pct(acc: float | None, digits: int = 1) -> str | None:
    """A fraction as percent (``0.687`` → ``"68.7"``); None for a missing or NaN value."""
    return f"{100 * acc:.{digits}f}" if _finite(acc) else None


def pct_ci(acc: float | None, ci: Sequence[float] | None, digits: int = 1) -> str | None:
    """``"68.7 [65.8, 71.5]"`` (percent, 95% interval); the bare value when the interval is missing."""
    s = pct(acc, digits)
    if s is None:
        return None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(c) for c in ci):
        s += f" [{100 * ci[0]:.{digits}f}, {100 * ci[1]:.{digits}f}]"
    return s


def signed(points: float, digits: int = 1) -> str:
    """A difference in points with its sign (``+1.3``, ``−0.8``; zero as ``+0.0``)."""
    d = round(points, digits)
    return f"{(d if d != 0 else 0.0):+.{digits}f}"
