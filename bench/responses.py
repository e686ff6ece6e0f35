"""The Responses API's store, side by side in one run:

    python -m bench.run --suite responses

1. Continuing is cheap: a 6-turn conversation under a ~1,000-token system prompt, each turn
   by previous_response_id, against the same turns sent whole to /v1/chat/completions with
   a fresh nonce leading each prompt (so no cache can help): TTFT of turns 2-6.
2. The store's cost: the same short request with store true and false, alternating.
3. Reading from a full store: GET /v1/responses/{id} with 10,000 responses stored (written
   with the store itself before the server starts)."""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import peers as P
from bench.compute import med

TURNS = [
    "Tell me about the sea.",
    "And about rivers?",
    "Which is older?",
    "Name one famous river.",
    "Where does it flow?",
    "Thank you. One more fact?",
]
SYSTEM = " ".join(
    f"Rule {i}: answer plainly, stay on topic, and keep each answer to one short paragraph."
    for i in range(60)
)  # about 1,000 tokens with SmolLM2's tokenizer


def _ttft_response(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, str]:
    """(seconds to the first text delta, the response id) of one streamed /v1/responses."""
    start = time.perf_counter()
    first: float | None = None
    response_id = ""
    with client.stream("POST", f"{url}/v1/responses", json={**body, "stream": True}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if first is None and '"response.output_text.delta"' in line:
                first = time.perf_counter() - start
            if '"response.completed"' in line or '"response.incomplete"' in line:
                response_id = line.split('"id":"', 1)[1].split('"', 1)[0]
    assert first is not None and response_id
    return first, response_id


def _ttft_chat(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, str]:
    start = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            piece = choices[0].get("delta", {}).get("content")
            if piece:  # the first chunk carries only the role
                if first is None:
                    first = time.perf_counter() - start
                text.append(piece)
    assert first is not None
    return first, "".join(text)


def _conversation(url: str, model: str) -> tuple[list[float], list[float]]:
    """TTFT per turn: chained responses, and the same turns whole through chat, cold."""
    chained: list[float] = []
    cold: list[float] = []
    history: list[dict[str, str]] = []
    previous: str | None = None
    common = {"model": model, "temperature": 0}
    with httpx.Client(timeout=600) as client:
        for turn in TURNS:
            body: dict[str, Any] = {
                **common,
                "instructions": SYSTEM,
                "input": turn,
                "max_output_tokens": 32,
            }
            if previous:
                body["previous_response_id"] = previous
            t, previous = _ttft_response(client, url, body)
            chained.append(t)
            # The same prompt whole, led by a nonce: nothing of it is in any cache.
            nonce = f"[{uuid.uuid4().hex}] "
            messages = [{"role": "system", "content": nonce + SYSTEM}, *history]
            messages.append({"role": "user", "content": turn})
            t, answer = _ttft_chat(client, url, {**common, "messages": messages, "max_tokens": 32})
            cold.append(t)
            history += [{"role": "user", "content": turn}, {"role": "assistant", "content": answer}]
    return chained, cold


def _store_cost(url: str, model: str, rounds: int) -> tuple[float, float]:
    """Median latency of the same short request, stored and not (alternating)."""
    got: dict[bool, list[float]] = {True: [], False: []}
    with httpx.Client(timeout=600) as client:
        for i in range(rounds * 10):
            for store in (True, False) if i % 2 == 0 else (False, True):
                body = {
                    "model": model,
                    "input": f"Say {i}.",
                    "max_output_tokens": 8,
                    "store": store,
                }
                start = time.perf_counter()
                client.post(f"{url}/v1/responses", json=body).raise_for_status()
                got[store].append(time.perf_counter() - start)
    return med(got[True]), med(got[False])


def _fill(data: Path, n: int) -> list[str]:
    """n stored responses, written with the store itself (a generation each would take
    minutes): a short turn's worth of items and body each."""
    from hearth.store.store import Store, StoredResponse

    store = Store(data / "hearth.db", ttl_seconds=None, archive_dir=data / "conversation_logs")
    ids = []
    try:
        now = int(time.time())
        for i in range(n):
            rid = f"resp_bench{i:06d}"
            item = {"type": "message", "id": f"msg_in{i}", "role": "user", "content": f"q{i}"}
            out = {
                "type": "message",
                "id": f"msg_out{i}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"a{i}", "annotations": []}],
            }
            body = {
                "id": rid,
                "object": "response",
                "created_at": now,
                "status": "completed",
                "model": "bench",
                "output": [out],
                "output_text": f"a{i}",
            }
            store.put_response(
                StoredResponse(rid, now, "bench", "completed", None, None, [item], [out], body)
            )
            ids.append(rid)
    finally:
        store.close()
    return ids


def responses(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    data = logs / "responses-data"
    ids = _fill(data, 10_000)
    server = P.hearth(model, threads, 4, 8192, logs, "--data-dir", str(data))
    lines: list[str] = []
    try:
        server.start()
        chained_all: list[float] = []
        cold_all: list[float] = []
        first_turns: list[float] = []
        for _ in range(rounds):
            chained, cold = _conversation(server.url, server.model)
            first_turns.append(chained[0])
            chained_all += chained[1:]
            cold_all += cold[1:]
        c, k = med(chained_all), med(cold_all)
        lines += [
            "| turns 2-6 | chained (previous_response_id) TTFT p50 | whole history, cold, "
            "TTFT p50 | ratio |",
            "|---|---|---|---|",
            f"| {len(chained_all)} turns | {c * 1000:.0f} ms | {k * 1000:.0f} ms | {c / k:.3f}x |",
            "",
            f"Turn 1 of the first conversation (nothing cached): {first_turns[0] * 1000:.0f} ms "
            "TTFT; later conversations find its instructions in the cache.",
            "",
        ]
        stored, unstored = _store_cost(server.url, server.model, rounds)
        lines += [
            "| 8-token response | store: true p50 | store: false p50 | ratio |",
            "|---|---|---|---|",
            f"| {rounds * 10} each | {stored * 1000:.1f} ms | {unstored * 1000:.1f} ms | "
            f"{stored / unstored:.3f}x |",
            "",
        ]
        times = []
        with httpx.Client(timeout=60) as client:
            for rid in random.Random(0).sample(ids, 300):
                start = time.perf_counter()
                client.get(f"{server.url}/v1/responses/{rid}").raise_for_status()
                times.append(time.perf_counter() - start)
        p50 = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[-1]
        lines.append(
            f"`GET /v1/responses/{{id}}` with 10,000 stored, 300 random ids: p50 "
            f"{p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms."
        )
    finally:
        server.stop()
    for line in lines:
        print(line, flush=True)
    return "\n".join(lines)
