"""The same streamed workload through two dialects of one server: Anthropic's /v1/messages
against OpenAI's /v1/chat/completions (what a dialect's translator and framing cost).

    python -m bench.run --suite dialects

Greedy, 128 tokens. Each route gets prompts of its own in each round (no prefix of one is in
the KV cache for the other); rounds alternate which route goes first; medians shown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench import peers as P
from bench.client import RequestResult, stream_chat, summarise
from bench.compute import fmt, med, story_jobs


async def stream_message(
    client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]], n: int
) -> RequestResult:
    """One streamed /v1/messages request, timed per text delta; tokens from its usage."""
    body = {"model": model, "messages": messages, "max_tokens": n, "temperature": 0, "stream": True}
    result = RequestResult(started=time.perf_counter())
    try:
        async with client.stream("POST", f"{url}/v1/messages", json=body) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return result
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                if data["type"] == "content_block_delta" and data["delta"].get("text"):
                    now = time.perf_counter()
                    if result.ttft is None:
                        result.ttft = now - result.started
                    result.token_times.append(now)
                elif data["type"] == "message_delta":
                    result.tokens = data["usage"]["output_tokens"]
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    result.finished = time.perf_counter()
    return result


async def _round(url: str, model: str, route: str, n: int, rnd: int) -> list[RequestResult]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        # Prompts of their own per route and round: neither route finds the other's prompt
        # in the KV cache.
        jobs = story_jobs(n, 128, rnd * 2 + (route == "msg"))
        if route == "chat":
            calls = [stream_chat(client, url, model, m, k) for m, k in jobs]
        else:
            calls = [stream_message(client, url, model, m, k) for m, k in jobs]
        return list(await asyncio.gather(*calls))


def dialects(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """/v1/messages against /v1/chat/completions on one server, streams at 1 and 8."""
    server = P.hearth(model, threads, 8, 4096, logs)
    lines = [
        "| case | chat tok/s | messages tok/s | ratio | chat TTFT p50 | messages TTFT p50 | "
        "TTFT difference |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        server.start()
        for n in (1, 8):
            got: dict[str, tuple[list[float], list[float]]] = {r: ([], []) for r in ("chat", "msg")}
            for rnd in range(rounds):
                routes = ["chat", "msg"] if rnd % 2 == 0 else ["msg", "chat"]
                for route in routes:
                    s = summarise(asyncio.run(_round(server.url, server.model, route, n, rnd)))
                    assert s.errors == 0, route
                    got[route][0].append(s.tok_s)
                    got[route][1].append(s.ttft_p50 or float("nan"))
            (ct, cf), (mt, mf) = [(med(a), med(b)) for a, b in got.values()]
            lines.append(
                f"| stream c={n}, 128 tok | {fmt(ct)} | {fmt(mt)} | {mt / ct:.3f}x | "
                f"{fmt(cf, 'ms')} | {fmt(mf, 'ms')} | {(mf - cf) * 1000:+.1f} ms |"
            )
            print(lines[-1], flush=True)
    finally:
        server.stop()
    return "\n".join(lines)
