"""The same streamed workload through the dialects of one server: Anthropic's /v1/messages,
Ollama's /api/chat and OpenAI's /v1/responses, each against OpenAI's /v1/chat/completions
(what a dialect's translator and framing cost).

    python -m bench.run --suite dialects

Greedy, 128 tokens. Each route gets prompts of its own in each round (no prefix of one is in
the KV cache for another); rounds rotate which route goes first; medians shown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench import peers as P
from bench.client import RequestResult, stream_chat, summarise
from bench.compute import fmt, med, story_jobs


async def _named_events(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    read: Callable[[dict[str, Any], RequestResult], bool],
) -> RequestResult:
    """One streamed request of `event:`/`data:` SSE; `read(event, result)` takes the usage
    from an event and says whether it carried text (timed as a token)."""
    result = RequestResult(started=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return result
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if read(json.loads(line[6:]), result):
                    now = time.perf_counter()
                    if result.ttft is None:
                        result.ttft = now - result.started
                    result.token_times.append(now)
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    result.finished = time.perf_counter()
    return result


def _message_event(data: dict[str, Any], result: RequestResult) -> bool:
    if data["type"] == "message_delta":
        result.tokens = data["usage"]["output_tokens"]
    return data["type"] == "content_block_delta" and bool(data["delta"].get("text"))


async def stream_message(
    client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]], n: int
) -> RequestResult:
    """One streamed /v1/messages request, timed per text delta; tokens from its usage."""
    body = {"model": model, "messages": messages, "max_tokens": n, "temperature": 0, "stream": True}
    return await _named_events(client, f"{url}/v1/messages", body, _message_event)


async def stream_ollama(
    client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]], n: int
) -> RequestResult:
    """One streamed /api/chat request (NDJSON), timed per content line; tokens from the final
    line's eval_count."""
    body = {
        "model": model,
        "messages": messages,
        "options": {"num_predict": n, "temperature": 0},
        "stream": True,
    }
    result = RequestResult(started=time.perf_counter())
    try:
        async with client.stream("POST", f"{url}/api/chat", json=body) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return result
            async for line in r.aiter_lines():
                data = json.loads(line)
                if data.get("done"):
                    result.tokens = data["eval_count"]
                elif data["message"].get("content"):
                    now = time.perf_counter()
                    if result.ttft is None:
                        result.ttft = now - result.started
                    result.token_times.append(now)
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    result.finished = time.perf_counter()
    return result


async def stream_responses(
    client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]], n: int
) -> RequestResult:
    """One streamed /v1/responses request (store: false, as a stateless client sends it),
    timed per text delta; tokens from the terminal event's usage."""
    body = {
        "model": model,
        "input": messages,
        "max_output_tokens": n,
        "temperature": 0,
        "stream": True,
        "store": False,
    }
    return await _named_events(client, f"{url}/v1/responses", body, _response_event)


def _response_event(data: dict[str, Any], result: RequestResult) -> bool:
    if data["type"] in ("response.completed", "response.incomplete"):
        result.tokens = data["response"]["usage"]["output_tokens"]
    return bool(data["type"] == "response.output_text.delta")


Streamer = Callable[
    [httpx.AsyncClient, str, str, list[dict[str, str]], int], Awaitable[RequestResult]
]
ROUTES: dict[str, Streamer] = {
    "chat": stream_chat,
    "messages": stream_message,
    "ollama": stream_ollama,
    "responses": stream_responses,
}
NAMES = {"messages": "/v1/messages", "ollama": "/api/chat", "responses": "/v1/responses"}


async def _round(url: str, model: str, route: str, n: int, rnd: int) -> list[RequestResult]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        # Prompts of their own per route and round: no route finds another's prompt in the
        # KV cache.
        jobs = story_jobs(n, 128, rnd * len(ROUTES) + list(ROUTES).index(route))
        call = ROUTES[route]
        return list(await asyncio.gather(*(call(client, url, model, m, k) for m, k in jobs)))


def dialects(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """/v1/messages and /api/chat against /v1/chat/completions on one server, streams at 1
    and 8."""
    server = P.hearth(model, threads, 8, 4096, logs)
    lines = [
        "| case | route | chat tok/s | route tok/s | ratio | chat TTFT p50 | route TTFT p50 | "
        "TTFT difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = list(ROUTES)
    try:
        server.start()
        for n in (1, 8):
            got: dict[str, tuple[list[float], list[float]]] = {r: ([], []) for r in names}
            for rnd in range(rounds):
                shift = rnd % len(names)  # each route goes first in turn
                for route in names[shift:] + names[:shift]:
                    s = summarise(asyncio.run(_round(server.url, server.model, route, n, rnd)))
                    assert s.errors == 0, route
                    got[route][0].append(s.tok_s)
                    got[route][1].append(s.ttft_p50 or float("nan"))
            ct, cf = med(got["chat"][0]), med(got["chat"][1])
            for route in names[1:]:
                rt, rf = med(got[route][0]), med(got[route][1])
                lines.append(
                    f"| stream c={n}, 128 tok | {NAMES[route]} | {fmt(ct)} | {fmt(rt)} | "
                    f"{rt / ct:.3f}x | {fmt(cf, 'ms')} | {fmt(rf, 'ms')} | "
                    f"{(rf - cf) * 1000:+.1f} ms |"
                )
                print(lines[-1], flush=True)
    finally:
        server.stop()
    return "\n".join(lines)
