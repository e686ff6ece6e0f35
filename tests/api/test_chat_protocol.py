"""Chat Completions wire format, against the fake engine."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, chat_body

pytestmark = pytest.mark.anyio


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


async def test_non_streaming_shape(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=3))
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == FAKE_ID
    assert body["choices"][0]["message"] == {
        "content": "alpha beta gamma ",
        "refusal": None,
        "role": "assistant",
    }
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 3


async def test_streaming_shape(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json=chat_body(max_tokens=3, stream=True, n=2, stream_options={"include_usage": True}),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    for index in (0, 1):
        mine = [
            c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index
        ]
        assert mine[0]["delta"]["role"] == "assistant"
        reasons = [ch["finish_reason"] for ch in mine if ch["finish_reason"]]
        assert reasons == ["length"]  # exactly once
        assert mine[-1]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_no_usage_chunk_unless_asked(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=2, stream=True))
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert ": keep-alive" in r.text  # the prompt-progress event became an SSE comment


async def test_stop_string_list_and_string(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=8, stop="gam"))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "alpha beta "
    assert choice["finish_reason"] == "stop"
    r = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=8, stop=["zzz", "beta"])
    )
    assert r.json()["choices"][0]["message"]["content"] == "alpha "


async def test_max_completion_tokens_is_honoured(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_completion_tokens=2))
    assert r.json()["usage"]["completion_tokens"] == 2


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    body = chat_body(max_tokens=1, store=False, metadata={"a": "b"}, service_tier="auto", foo=1)
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200


async def test_content_parts_are_joined(client: httpx.AsyncClient) -> None:
    body = chat_body(max_tokens=1)
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "a"}]}]
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


async def test_completions_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/completions",
        json={"model": FAKE_ID, "prompt": ["one", "two"], "max_tokens": 2, "n": 2},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["completion_tokens"] == 8


async def test_completions_stream_with_echo(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/completions",
        json={"model": FAKE_ID, "prompt": "say", "max_tokens": 2, "stream": True, "echo": True},
    )
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == "sayalpha beta "
    assert sse_events(r.text)[-1] == "[DONE]"


async def test_a_failure_mid_stream_still_ends_the_stream(
    make_app: Callable[..., FastAPI],
) -> None:
    """Not only Hearth's own errors: any exception mid-stream is one error event, then [DONE]."""
    app = make_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            assert (await c.post("/v1/chat/completions", json=chat_body())).status_code == 200
            (loaded,) = app.state.runtime.models.loaded()
            loaded.engine.fail_with = RuntimeError("boom")
            r = await c.post("/v1/chat/completions", json=chat_body(max_tokens=5, stream=True))
            events = sse_events(r.text)
            assert events[-1] == "[DONE]"
            error = json.loads(events[-2])["error"]
            assert error["type"] == "server_error" and "boom" in error["message"]
            assert json.loads(events[1])["choices"][0]["delta"]["content"]  # text came first
            loaded.engine.fail_with = None
            r = await c.post("/v1/chat/completions", json=chat_body(max_tokens=2))
            assert r.status_code == 200
