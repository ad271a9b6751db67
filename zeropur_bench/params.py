"""Parameters of attacks and defenses, typed and range-checked in one place: each attack declares ``param_specs``
(a :class:`Param` per parameter, beside its default) and each registered defense its options (declared, or read
from its constructor's signature); :meth:`Attack.resolve_params` and the defense registry check every value before
anything else sees it (column labels, comparison keys, the attack or defense itself). A raw string such as
``steps=abc`` never gets further."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import UserError


def _is_int(v: Any) -> bool:
    import numpy as np

    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    import numpy as np

    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class Param:
    """One parameter of an attack or a defense. ``kind``: int | number | bool | word | numbers (a number or a list of numbers);
    ``optional``: None allowed (its default then means "derived", e.g. step = eps/4); ``low`` / ``high`` with
    ``open_low`` / ``open_high`` bound numbers; ``choices`` restricts words."""

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def describe(self) -> str:
        what = {"int": "an integer", "number": "a number", "bool": "true or false", "word": "a word",
                "numbers": "a number or a list of numbers (a|b|c)"}[self.kind]
        if self.choices is not None:
            what = "one of " + ", ".join("none" if c is None else str(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.open_low else '>='} {self.low:g}"
        return what + (" (or none for the default)" if self.optional and self.choices is None else "")

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.open_low and x == self.low)):
            return False
        return not (self.high is not None and (x > self.high or (self.open_high and x == self.high)))

    def valid(self, v: Any) -> bool:
        if v is None:
            return self.optional or (self.choices is not None and None in self.choices)
        if self.choices is not None:
            return v in self.choices
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "word":
            return isinstance(v, str)
        if self.kind == "int":
            return _is_int(v) and self._in_range(float(v))
        if self.kind == "number":
            return _is_number(v) and self._in_range(float(v))
        values = list(v) if isinstance(v, (list, tuple)) else [v]
        return bool(values) and all(_is_number(x) and self._in_range(float(x)) for x in values)


def check_params(owner: str, spec: dict[str, Param], params: dict[str, Any], kind: str = "attack") -> None:
    """One :class:`UserError` for the first value in ``params`` its :class:`Param` does not admit (``owner``: the
    attack's or defense's name, ``kind``: 'attack' or 'defense')."""
    for key, v in params.items():
        p = spec.get(key)
        if p is not None and not p.valid(v):
            word = "parameter" if kind == "attack" else "option"
            raise UserError(f"{kind} {owner!r}: {word} {key} must be {p.describe()}, got {v!r}")


# The parameters most attacks share.
STEPS = Param("int", low=0)
STEP = Param("number", low=0, optional=True)
AT_LEAST_ONE = Param("int", low=1)
FLAG = Param("bool")
