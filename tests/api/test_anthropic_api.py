"""Anthropic's Messages API on the fake engine: message and stream shapes, the event
sequence, stop reasons, tool_use blocks, count_tokens, x-api-key, and Anthropic's error
shape for every kind of bad request. The official client runs against the real model in
tests/e2e/test_anthropic_real.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID

pytestmark = pytest.mark.anyio

WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": FAKE_ID,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; the name always matches the data's type."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        out.append((lines["event"], data))
    return out


async def test_a_message_and_its_usage(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/messages", json=body(system="Be brief."))
    assert r.status_code == 200
    msg = r.json()
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["id"].startswith("msg")
    assert msg["content"] == [{"type": "text", "text": "alpha beta gamma delta "}]
    assert msg["stop_reason"] == "max_tokens" and msg["stop_sequence"] is None
    assert msg["usage"]["output_tokens"] == 4 and msg["usage"]["input_tokens"] > 0
    stopped = (await client.post("/v1/messages", json=body(stop_sequences=["gamma"]))).json()
    assert stopped["content"][0]["text"] == "alpha beta "
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "gamma")


async def test_the_stream_sends_anthropics_event_sequence(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/messages", json=body(stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]  # one ping after the start, as Anthropic's
    rest = [n for n in names[2:] if n != "ping"]  # more pings while the prompt is read
    deltas = len(rest) - 4
    assert deltas > 0
    assert rest == [
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert "data: [DONE]" not in r.text
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "alpha beta gamma delta "
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 4


async def test_tool_use_blocks_streamed_and_whole(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    calls = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            await client.post("/v1/messages", json=body(max_tokens=1))  # load the model
            engine = app.state.runtime.models._loaded[FAKE_ID].engine
            ask = body(tools=[WEATHER], tool_choice={"type": "any"}, max_tokens=64)
            engine.replies.append("Let me look." + calls)
            whole = (await client.post("/v1/messages", json=ask)).json()
            assert whole["stop_reason"] == "tool_use"
            text, use = whole["content"]
            assert text == {"type": "text", "text": "Let me look."}
            assert use["type"] == "tool_use" and use["name"] == "get_weather"
            assert use["input"] == {"city": "Paris"}
            engine.replies.append("Let me look." + calls)
            events = sse((await client.post("/v1/messages", json={**ask, "stream": True})).text)
            starts = [d["content_block"] for n, d in events if n == "content_block_start"]
            assert [b["type"] for b in starts] == ["text", "tool_use"]
            assert starts[1]["input"] == {} and starts[1]["name"] == "get_weather"
            pieces = [
                d["delta"]["partial_json"]
                for n, d in events
                if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
            ]
            assert json.loads("".join(pieces)) == {"city": "Paris"}
            stops = [d["index"] for n, d in events if n == "content_block_stop"]
            assert stops == [0, 1]
            # The tool result goes back as a tool turn the template sees.
            follow = body(
                tools=[WEATHER],
                messages=[
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": whole["content"]},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": use["id"], "content": "18 C"}
                        ],
                    },
                ],
            )
            assert (await client.post("/v1/messages", json=follow)).status_code == 200
            assert "<tool_response>\n18 C\n</tool_response>" in engine.prompts[-1]


async def test_a_system_message_later_in_the_conversation(make_app: Callable[..., FastAPI]) -> None:
    """Anthropic takes role "system" after a user turn (Claude Code sends its environment
    so); the template sees it where it stands, after the user's turn."""
    app = make_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            later = [{"type": "text", "text": "Answer in French."}]
            ask = body(
                system="Be brief.",
                messages=[
                    {"role": "user", "content": "Hello?"},
                    {"role": "system", "content": later},
                ],
            )
            assert (await client.post("/v1/messages", json=ask)).status_code == 200
            engine = app.state.runtime.models._loaded[FAKE_ID].engine
            prompt = engine.prompts[-1]
            assert prompt.index("Be brief.") < prompt.index("Hello?")
            assert prompt.index("Hello?") < prompt.index("Answer in French.")
            image = {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}
            bad = body(
                messages=[{"role": "user", "content": "Hi"}, {"role": "system", "content": [image]}]
            )
            r = await client.post("/v1/messages", json=bad)
            assert r.status_code == 400 and "text blocks only" in r.json()["error"]["message"]
            first = body(messages=[{"role": "system", "content": "x"}])
            r = await client.post("/v1/messages", json=first)
            assert r.status_code == 400 and "follow a user turn" in r.json()["error"]["message"]


async def test_output_config_constrains_the_answer(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            fmt = {"format": {"type": "json_schema", "schema": schema}}
            r = await client.post("/v1/messages", json=body(output_config=fmt))
            assert r.status_code == 200
            engine = app.state.runtime.models._loaded[FAKE_ID].engine
            assert engine.requests[-1].grammar is not None
            bad = {"format": {"type": "json_schema", "schema": {"type": "object", "not": {}}}}
            r = await client.post("/v1/messages", json=body(output_config=bad))
            assert r.status_code == 400
            assert "not" in r.json()["error"]["message"]


async def test_count_tokens_matches_the_messages_input_tokens(client: httpx.AsyncClient) -> None:
    counted = await client.post(
        "/v1/messages/count_tokens",
        json={"model": FAKE_ID, "system": "Be brief.", "messages": body()["messages"]},
    )
    assert counted.status_code == 200
    msg = (await client.post("/v1/messages", json=body(system="Be brief."))).json()
    assert counted.json() == {"input_tokens": msg["usage"]["input_tokens"]}


@pytest.mark.parametrize(
    ("payload", "status", "kind"),
    [
        ({k: v for k, v in body().items() if k != "max_tokens"}, 400, "invalid_request_error"),
        (body(model="nope"), 404, "not_found_error"),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": ""},
                            }
                        ],
                    }
                ]
            ),
            400,
            "invalid_request_error",
        ),
        (body(tool_choice={"type": "tool", "name": "missing"}, tools=[WEATHER]), 400, None),
        (body(messages=[{"role": "user", "content": [{"type": "nope"}]}]), 400, None),
        (body(temperature=7), 400, None),
    ],
)
async def test_errors_come_in_anthropics_shape(
    client: httpx.AsyncClient, payload: dict[str, Any], status: int, kind: str | None
) -> None:
    r = await client.post("/v1/messages", json=payload)
    assert r.status_code == status
    err = r.json()
    assert err["type"] == "error" and set(err["error"]) == {"type", "message"}
    assert err["error"]["type"] == (kind or "invalid_request_error")
    assert err["error"]["message"]
    # The next request is served as usual.
    assert (await client.post("/v1/messages", json=body())).status_code == 200


async def test_bodies_that_are_not_json_get_anthropics_shape(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/messages", content=b"\xff{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_x_api_key_is_an_api_key(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(api_key="sekrit")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            refused = await client.post("/v1/messages", json=body())
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
            wrong = await client.post("/v1/messages", json=body(), headers={"x-api-key": "no"})
            assert wrong.status_code == 401
            ok = await client.post("/v1/messages", json=body(), headers={"x-api-key": "sekrit"})
            assert ok.status_code == 200
            bearer = {"authorization": "Bearer sekrit"}
            assert (await client.post("/v1/messages", json=body(), headers=bearer)).is_success
            # OpenAI's routes take the x-api-key too, and keep their own error shape.
            chat = {"model": FAKE_ID, "messages": [{"role": "user", "content": "hi"}]}
            r = await client.post("/v1/chat/completions", json=chat)
            assert r.status_code == 401 and set(r.json()["error"]) >= {"message", "code"}
            key = {"x-api-key": "sekrit"}
            assert (await client.post("/v1/chat/completions", json=chat, headers=key)).is_success
