"""keep_alive values with Ollama's meaning: how long a model stays loaded after its last request.

A duration string as Go writes them ("30s", "5m", "1h30m", "500ms"), or a number of seconds.
Zero unloads right after the request; a negative value (or one past a century) keeps the
model loaded for good."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator

FOREVER = math.inf
DEFAULT_KEEP_ALIVE = "5m"
# Longer is forever: timers and timestamps cannot hold 1e30 seconds from now.
MAX_FINITE = 100 * 365 * 24 * 3600.0

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")

KeepAliveValue = str | int | float


def parse_keep_alive(value: KeepAliveValue) -> float:
    """Seconds to stay loaded when idle: 0 unloads at once, math.inf never unloads."""
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration such as '5m' or a number of seconds")
    seconds = float(value) if isinstance(value, int | float) else _parse_text(value.strip())
    if math.isnan(seconds):
        raise ValueError("keep_alive must be a number")
    return FOREVER if seconds < 0 or seconds > MAX_FINITE else seconds


def _parse_text(text: str) -> float:
    if _NUMBER.fullmatch(text):
        return float(text)
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(
            f"invalid keep_alive {text!r}: use a duration such as '30s', '5m', '1h' "
            "or a number of seconds (0 unloads at once, negative keeps it loaded)"
        )
    return sign * total


def format_keep_alive(seconds: float) -> str:
    """A short human form: 'forever', '0s', '90s', '5m', '1h30m'."""
    if seconds == FOREVER:
        return "forever"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")


def _checked(value: KeepAliveValue | None) -> KeepAliveValue | None:
    if value is not None:
        parse_keep_alive(value)
    return value


# A keep_alive field of a request or a config: kept as given, validated on the way in.
KeepAliveField = Annotated[str | float | None, AfterValidator(_checked)]


def keep_alive_seconds(value: KeepAliveValue | None) -> float | None:
    """parse_keep_alive, passing None (unset) through."""
    return parse_keep_alive(value) if value is not None else None
