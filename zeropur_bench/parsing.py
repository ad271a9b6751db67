"""Option text → typed values, in one place: numbers (``8/255``, ``1e-3``), ``key=value`` lists, ``NAME:key=value``
specs (``--attack``, ``--zp``, ``--defense``, ``check --zp``) and seeds.

Every parser here refuses in one line (:class:`~zeropur_bench.errors.UserError`) what no later code could use:
an overflow (``1e400``, an integer beyond 64 bits), a non-finite value (``inf``, ``nan``) and a key given twice
(``steps=2,steps=3``: which one was meant?). Range checks belong to whoever owns the value (an attack's
``Param``, a ZeroPur profile, ``EvalConfig``); these only make sure a value *is* a usable number.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from .errors import UserError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1  # what torch's seeds and integer tensors hold
_NON_FINITE = ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan", "+nan", "-nan")


def _finite(value: float, text: str, what: str) -> float:
    if not math.isfinite(value):
        raise UserError(f"{what} must be a finite number, got '{text}'"
                        + ("" if text.strip().lower() in _NON_FINITE else " (too large)"))
    return value


def _number(text: str, what: str) -> float:
    """``text`` as a finite float (``a/b`` as a fraction); ValueError / ZeroDivisionError if it is no number."""
    t = text.strip()
    if "/" in t:  # a fraction of integers (or decimals): its float, refused when it overflows
        try:
            return _finite(float(Fraction(t)), text, what)
        except OverflowError:
            raise UserError(f"{what} must be a finite number, got '{text}' (too large)") from None
    return _finite(float(t), text, what)  # never Fraction('1e999999999'): that builds a billion-digit integer


def parse_number(text: str, what: str = "value") -> float:
    """'8/255', '0.031', '0.5' → a finite float; anything else, ``1e400`` and ``nan`` included, is a
    :class:`UserError` naming ``what``."""
    try:
        return _number(str(text), what)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{what} must be a number or a fraction like 8/255, got '{text}'") from None


def parse_int(text: str, what: str = "value", low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """An integer in ``[low, high]`` (by default: one that fits 64 bits)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{what} must be an integer, got '{text}'") from None
    return check_int(value, what, low, high)


def check_int(value: Any, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """``value`` itself if it is an integer (not a bool) in ``[low, high]``, else a :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{what} must be an integer in [{low}, {high}], got {value}")
    return value


def check_seed(value: Any, what: str = "seed") -> int:
    """A seed: an integer that fits 64 bits (torch's generators take no more)."""
    return check_int(value, what)


def parse_value(text: str, what: str = "value") -> Any:
    """A typed value: true/false, none/null, an integer (64 bits at most), a finite number or fraction, ``a|b|c``
    a list, else the text. ``what`` names the value in a refusal (an overflow or a non-finite number)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if low in _NON_FINITE:
        raise UserError(f"{what} must be a finite number, got '{text.strip()}'")
    try:
        value = int(text)
    except ValueError:
        pass
    else:
        if not INT64_MIN <= value <= INT64_MAX:
            raise UserError(f"{what} must fit 64 bits, got '{text.strip()}' (too large)")
        return value
    if "|" in text:  # a list, e.g. lambdas=0.1|1|10
        return [parse_value(t, what) for t in text.split("|")]
    if "/" in text or any(ch.isdigit() for ch in text):
        try:
            return _number(text, what)
        except (ValueError, ZeroDivisionError):
            pass
    return text


def parse_kv(items: str, what: str) -> dict[str, Any]:
    """``'coarse_steps=5,fine-steps=20'`` → ``{'coarse_steps': 5, 'fine_steps': 20}`` (``what`` names the option
    in a refusal: a missing '=', a key given twice, an overflowing or non-finite number)."""
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in items.split(","))):
        if "=" not in item:
            raise UserError(f"{what}: expected KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        key = k.strip().replace("-", "_")
        if not key:
            raise UserError(f"{what}: expected KEY=VALUE, got '{item}'")
        if key in out:
            raise UserError(f"{what}: {key} is given twice; give each key once")
        out[key] = parse_value(v, f"{what}: {key}")
    return out


def parse_spec(text: str, what: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:key=value,...`` (``pgd:steps=40``) → ``(name, params)``, params as :func:`parse_kv`."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise UserError(f"{what}: expected NAME or NAME:key=value,..., got '{text}'")
    return name.strip(), parse_kv(rest, what)


__all__ = ["INT64_MAX", "INT64_MIN", "check_int", "check_seed", "parse_int", "parse_kv", "parse_number", "parse_spec",
           "parse_value"]
