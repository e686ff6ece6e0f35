"""Retention: --responses-ttl durations, and the periodic task that expires old state."""

from __future__ import annotations

import asyncio
import logging
import math
import re

from hearth.store.store import Store

log = logging.getLogger("hearth.store")

DEFAULT_TTL = "30d"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"((\d+(?:\.\d*)?|\.\d+)([smhd]))+")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd])")


def parse_ttl(value: str | float) -> float | None:
    """Seconds from a duration ("30d", "12h", "1h30m", "90s") or a number of seconds;
    0 or "forever" keeps everything (None)."""
    if isinstance(value, bool):
        raise ValueError("responses_ttl must be a duration such as '30d' or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if text == "forever":
            return None
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION.fullmatch(text):
                raise ValueError(
                    f"invalid responses_ttl {value!r}: use a duration such as '30d', '12h', "
                    "'90s', a number of seconds, or 0 / 'forever' to keep everything"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("responses_ttl must not be negative")
    return None if seconds == 0 or math.isinf(seconds) else seconds


def retention_interval(ttl_seconds: float | None) -> float:
    """How often to look for expired state: a tenth of the TTL, between 1 s and 1 h."""
    return 3600.0 if ttl_seconds is None else min(3600.0, max(1.0, ttl_seconds / 10))


def start_retention(store: Store, interval_s: float) -> asyncio.Task[None]:
    """Expire now, then every `interval_s`, off the event loop, until cancelled. A failed
    pass is logged and the next one tried: retention never stops the server."""

    async def loop() -> None:
        while True:
            try:
                removed = await asyncio.to_thread(store.expire)
                if removed:
                    log.info("retention: removed %d expired conversations and responses", removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(interval_s)

    return asyncio.create_task(loop(), name="retention")
