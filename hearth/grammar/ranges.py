"""Integer ranges as GBNF: the decimal strings of exactly the integers in [lo, hi], built digit
by digit (numbers of each length between two same-length bounds)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hearth.grammar.gbnf import literal

MAX_INT_DIGITS = 16  # an unbounded side stops here, as the plain JSON integer rule does
_DIGIT = "[0-9]"


def int_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """An integer schema's inclusive bounds (None: unbounded), whatever draft wrote them."""
    lo: int | None = None
    hi: int | None = None
    if "minimum" in schema:
        lo = math.ceil(schema["minimum"])
        if schema.get("exclusiveMinimum") is True:  # draft 4: a flag on minimum
            lo = math.floor(schema["minimum"]) + 1
    if "maximum" in schema:
        hi = math.floor(schema["maximum"])
        if schema.get("exclusiveMaximum") is True:
            hi = math.ceil(schema["maximum"]) - 1
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
        bound = math.floor(ex_lo) + 1
        lo = bound if lo is None else max(lo, bound)
    if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
        bound = math.ceil(ex_hi) - 1
        hi = bound if hi is None else min(hi, bound)
    return lo, hi


def _same_length_range(a: str, b: str) -> str:
    """Digit strings of one length between a and b inclusive."""
    if a == b:
        return literal(a)
    if len(a) == 1:
        return f"[{a}-{b}]"
    if a[0] == b[0]:
        return f"{literal(a[0])} ( {_same_length_range(a[1:], b[1:])} )"
    n = len(a) - 1
    low_full, high_full = a[1:] == "0" * n, b[1:] == "9" * n
    alts = []
    if not low_full:
        alts.append(f"{literal(a[0])} ( {_same_length_range(a[1:], '9' * n)} )")
    first = int(a[0]) + (0 if low_full else 1)
    last = int(b[0]) - (0 if high_full else 1)
    if first <= last:
        alts.append(f"[{first}-{last}] {_DIGIT}{{{n}}}")
    if not high_full:
        alts.append(f"{literal(b[0])} ( {_same_length_range('0' * n, b[1:])} )")
    return " | ".join(alts)


def _natural_range(lo: int, hi: int | None) -> list[str]:
    """Alternatives for the integers lo..hi (hi None: unbounded), lo >= 0, no leading zeros."""
    alts = []
    top = len(str(hi)) if hi is not None else max(MAX_INT_DIGITS, len(str(lo)))
    for digits in range(len(str(lo)), top + 1):
        a = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(hi if hi is not None else 10**digits - 1, 10**digits - 1)
        if a <= b:
            alts.append(f"( {_same_length_range(str(a), str(b))} )")
    return alts


def int_range(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for JSON integers in [lo, hi]; None means unbounded on that side."""
    alts = []
    if lo is None or lo < 0:  # the negative part: "-" then a magnitude
        neg_lo = 1 if hi is None or hi >= 0 else -hi
        neg_hi = None if lo is None else -lo
        alts += [f'"-" {alt}' for alt in _natural_range(neg_lo, neg_hi)]
    if hi is None or hi >= 0:
        alts += _natural_range(max(lo or 0, 0), hi)
    return " | ".join(alts)
