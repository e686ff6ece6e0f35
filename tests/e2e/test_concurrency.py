"""Continuous batching as a user sees it: concurrent streams interleave, short requests are
not stuck behind long ones, and a client that goes away frees its sequence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e


def body(
    max_tokens: int, content: str = "Tell me a long story about a dragon.", **kw: object
) -> dict:  # type: ignore[type-arg]
    return {
        "model": STARTER_ID,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "ignore_eos": True,
        **kw,
    }


def openai_args(max_tokens: int, content: str = "Tell me a long story about a dragon.") -> dict:  # type: ignore[type-arg]
    args = body(max_tokens, content)
    extra = {"ignore_eos": args.pop("ignore_eos")}
    return {**args, "extra_body": extra}


async def stream_times(server: RunningServer, max_tokens: int, content: str) -> list[float]:
    client = server.async_client()
    times = []
    stream = await client.chat.completions.create(**openai_args(max_tokens, content), stream=True)  # type: ignore[call-overload]
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.monotonic())
    await client.close()
    return times


def test_eight_concurrent_streams_interleave(server: RunningServer) -> None:
    async def main() -> list[list[float]]:
        topics = ["dragons", "the sea", "a city", "robots", "trees", "music", "winter", "bread"]
        return await asyncio.gather(
            *[stream_times(server, 48, f"Write about {t}.") for t in topics]
        )

    results = asyncio.run(main())
    assert all(len(times) >= 40 for times in results)  # every stream completed
    # Interleaved, not one after another: every stream had produced tokens before any finished.
    assert max(t[0] for t in results) < min(t[-1] for t in results)


def test_short_request_finishes_before_long_ones(server: RunningServer) -> None:
    async def main() -> tuple[list[float], float]:
        longs = [asyncio.create_task(stream_times(server, 200, f"Story {i}.")) for i in range(4)]
        await asyncio.sleep(1.0)  # the long ones are decoding
        client = server.async_client()
        await client.chat.completions.create(**openai_args(5))  # type: ignore[call-overload]
        short_done = time.monotonic()
        await client.close()
        long_ends = [t[-1] for t in await asyncio.gather(*longs)]
        return long_ends, short_done

    long_ends, short_done = asyncio.run(main())
    assert short_done < min(long_ends)


def test_a_short_prompt_is_not_stuck_behind_a_long_one_being_read(
    server_factory: Callable[..., RunningServer],
) -> None:
    # Prompts are read shortest first: a question sent while a long document is still being
    # read gets its first token long before the document's request does. (A server of its
    # own: the document stays cached in a sequence, which the shared server's tests count.)
    server = server_factory("--parallel", "2", "--cache-ram", "0")
    document = " ".join(f"Fact {i}: the box holds {i * 7} stones." for i in range(300))

    async def main() -> tuple[list[float], list[float]]:
        long = asyncio.create_task(stream_times(server, 4, f"{document}\nSum up."))
        await asyncio.sleep(0.5)  # its prompt is being read (about 4,000 tokens)
        short = await stream_times(server, 4, "Say hi.")
        return await long, short

    long, short = asyncio.run(main())
    assert long and short
    assert short[0] < long[0]


def test_disconnected_client_frees_its_sequence(server: RunningServer) -> None:
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{server.url}/v1/chat/completions", json=body(3000, stream=True)
        ) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        got = 0
        for line in lines:
            if line.startswith("data: "):
                got += 1
                if got >= 5:
                    break
        busy = [s for m in server.status()["models"] for s in m["slots"] if s["state"] != "idle"]
        assert busy  # the sequence is generating while the client listens
        # Leaving the `with` closes the connection mid-stream.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        slots = [s for m in server.status()["models"] for s in m["slots"]]
        if all(s["state"] == "idle" for s in slots):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"sequence still busy after the client left: {slots}")
    # And it stopped decoding: no slot grew to anywhere near the 3000 tokens asked for.
    assert max(s["cached_tokens"] for s in slots) < 1000
    # The freed sequence serves the next request.
    r2 = httpx.post(f"{server.url}/v1/chat/completions", json=body(3), timeout=30)
    assert r2.status_code == 200
