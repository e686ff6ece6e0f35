"""Per-minute series of the request log for the UI's charts: requests, errors, tokens,
generation speed and median TTFT, zero-filled so every minute of the window has a point."""

from __future__ import annotations

import statistics
from typing import Any

from hearth.store.store import Sample

STEP_SECONDS = 60


def series(samples: list[Sample], *, now: float, minutes: int) -> list[dict[str, Any]]:
    """`samples` as Store.request_samples gives them. Generation speed is completion tokens
    over the time after the first token, summed over the minute's requests (so long answers
    weigh more, as they do for a person waiting)."""
    end = (int(now) // STEP_SECONDS + 1) * STEP_SECONDS  # the current minute is the last
    start = end - minutes * STEP_SECONDS
    buckets: list[dict[str, Any]] = [
        {"time": start + i * STEP_SECONDS, "requests": 0, "errors": 0, "tokens": 0}
        for i in range(minutes)
    ]
    ttfts: list[list[float]] = [[] for _ in range(minutes)]
    gen_tokens = [0] * minutes
    gen_seconds = [0.0] * minutes
    for when, status, tokens, ttft_ms, latency_ms in samples:
        i = int((when - start) // STEP_SECONDS)
        if not 0 <= i < minutes:
            continue
        b = buckets[i]
        b["requests"] += 1
        b["errors"] += status >= 400
        b["tokens"] += tokens
        if ttft_ms is not None:
            ttfts[i].append(ttft_ms)
            # One token says nothing of speed: it came with the first.
            if tokens > 1 and latency_ms > ttft_ms:
                gen_tokens[i] += tokens - 1
                gen_seconds[i] += (latency_ms - ttft_ms) / 1000
    for i, b in enumerate(buckets):
        speed = gen_tokens[i] / gen_seconds[i] if gen_seconds[i] else None
        b["tokens_per_second"] = None if speed is None else round(speed, 2)
        b["ttft_ms"] = round(statistics.median(ttfts[i]), 2) if ttfts[i] else None
    return buckets
