"""A streaming chat client that times every token: TTFT, inter-token latency, throughput."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class RequestResult:
    started: float
    ttft: float | None = None
    token_times: list[float] = field(default_factory=list)
    tokens: int = 0
    finished: float = 0.0
    error: str | None = None
    text: str = ""  # what was generated (an agent replay sends it back as history)

    @property
    def itls(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    extra: dict[str, Any] | None = None,
) -> RequestResult:
    """One streamed chat completion; tokens are counted from usage when the server sends it."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    result = RequestResult(started=time.perf_counter())
    chunks = 0
    usage_tokens = None
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return result
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage_tokens = data["usage"].get("completion_tokens")
                for choice in data.get("choices") or []:
                    if content := (choice.get("delta") or {}).get("content"):
                        result.text += content
                        now = time.perf_counter()
                        if result.ttft is None:
                            result.ttft = now - result.started
                        result.token_times.append(now)
                        chunks += 1
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    result.finished = time.perf_counter()
    result.tokens = usage_tokens if usage_tokens is not None else chunks
    return result


@dataclass
class Summary:
    requests: int
    errors: int
    tokens: int
    wall: float
    tok_s: float
    ttft_p50: float | None
    ttft_p95: float | None
    itl_p50: float | None
    itl_p95: float | None = None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarise(results: list[RequestResult]) -> Summary:
    ok = [r for r in results if r.error is None]
    start = min((r.started for r in results), default=0.0)
    end = max((r.finished for r in results), default=0.0)
    wall = max(end - start, 1e-9)
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    itls = [x for r in ok for x in r.itls]
    return Summary(
        requests=len(results),
        errors=len(results) - len(ok),
        tokens=tokens,
        wall=wall,
        tok_s=tokens / wall,
        ttft_p50=percentile(ttfts, 0.5),
        ttft_p95=percentile(ttfts, 0.95),
        itl_p50=statistics.median(itls) if itls else None,
        itl_p95=percentile(itls, 0.95),
    )


async def gather_streams(
    url: str, model: str, jobs: list[tuple[list[dict[str, str]], int]], extra: dict[str, Any]
) -> list[RequestResult]:
    """All jobs at once (each job: messages, max_tokens)."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        return await asyncio.gather(
            *[stream_chat(client, url, model, m, n, extra) for m, n in jobs]
        )


async def sequential_streams(
    url: str, model: str, jobs: list[tuple[list[dict[str, str]], int]], extra: dict[str, Any]
) -> list[RequestResult]:
    """One job after another (for cache-reuse workloads)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as client:
        return [await stream_chat(client, url, model, m, n, extra) for m, n in jobs]
