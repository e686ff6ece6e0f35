"""Anthropic's Messages API on the real starter model, through the official `anthropic`
client: messages streamed and not, stop sequences, a forced tool_use and its tool_result
round trip, streamed input_json_delta pieces, count_tokens, and the client's error types."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# The client no longer has sampling arguments (Anthropic's newer models fix them); the API
# still takes temperature, top_p and top_k, as Hearth does, so they go in the body.
GREEDY = {"temperature": 0}


def client(server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)


def test_a_message_streamed_and_not_agree(server: RunningServer) -> None:
    c = client(server)
    fields = {
        "model": STARTER_ID,
        "max_tokens": 24,
        "extra_body": GREEDY,
        "system": "You are brief.",
        "messages": [{"role": "user", "content": "Name three colours."}],
    }
    whole = c.messages.create(**fields)  # type: ignore[call-overload]
    assert whole.role == "assistant" and whole.content[0].type == "text"
    text = whole.content[0].text
    assert text
    with c.messages.stream(**fields) as stream:  # type: ignore[arg-type]
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    counted = c.messages.count_tokens(
        model=STARTER_ID, system="You are brief.", messages=fields["messages"]
    )
    assert counted.input_tokens == whole.usage.input_tokens


def test_stop_sequences(server: RunningServer) -> None:
    c = client(server)
    fields = {
        "model": STARTER_ID,
        "max_tokens": 40,
        "extra_body": GREEDY,
        "messages": [{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
    }
    free = c.messages.create(**fields)  # type: ignore[call-overload]
    text = free.content[0].text
    assert "4" in text, text
    stopped = c.messages.create(**fields, stop_sequences=["4"])  # type: ignore[call-overload]
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "4"
    assert stopped.content[0].text == text.split("4")[0]


def test_a_forced_tool_use_and_its_result(server: RunningServer) -> None:
    c = client(server)
    fields = {
        "model": STARTER_ID,
        "max_tokens": 64,
        "extra_body": GREEDY,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": ASK,
    }
    msg = c.messages.create(**fields)  # type: ignore[call-overload]
    assert msg.stop_reason == "tool_use"
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    jsonschema.validate(use.input, WEATHER["input_schema"])
    # Streamed, the input arrives as input_json_delta pieces that join into the same input.
    pieces: list[str] = []
    with c.messages.stream(**fields) as stream:  # type: ignore[arg-type]
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                pieces.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert len(pieces) > 1
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed.input == use.input
    # The result goes back; the model answers in text.
    reply = c.messages.create(
        model=STARTER_ID,
        max_tokens=40,
        extra_body=GREEDY,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *ASK,  # type: ignore[list-item]
            {"role": "assistant", "content": msg.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}
                ],
            },
        ],
    )
    assert reply.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert reply.usage.input_tokens > msg.usage.input_tokens


def test_errors_reach_the_client_as_its_own_types(server: RunningServer) -> None:
    c = client(server)
    with pytest.raises(anthropic.NotFoundError) as missing:
        c.messages.create(model="nope", max_tokens=4, messages=ASK)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.create(
            model=STARTER_ID,
            max_tokens=4,
            messages=[  # type: ignore[list-item]
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        }
                    ],
                }
            ],
        )
    assert "vision" in bad.value.message
    assert c.messages.create(model=STARTER_ID, max_tokens=4, messages=ASK).content  # type: ignore[arg-type]


def test_structured_output_follows_the_schema(server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    msg = client(server).messages.create(
        model=STARTER_ID,
        max_tokens=48,
        messages=ASK,  # type: ignore[arg-type]
        output_config={"format": {"type": "json_schema", "schema": schema}},  # type: ignore[typeddict-item]
        extra_body=GREEDY,
    )
    jsonschema.validate(json.loads(msg.content[0].text), schema)  # type: ignore[union-attr]


def test_any_tool_and_system_blocks(server: RunningServer) -> None:
    msg = client(server).messages.create(
        model=STARTER_ID,
        max_tokens=64,
        system=[{"type": "text", "text": "You call tools."}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=ASK,  # type: ignore[arg-type]
        extra_body=GREEDY,
    )
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert msg.stop_reason == "tool_use" and len(uses) == 1
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])


def test_the_api_key_goes_as_x_api_key(server_factory: Callable[..., RunningServer]) -> None:
    keyed = server_factory("--api-key", "sekrit")
    good = anthropic.Anthropic(base_url=keyed.url, api_key="sekrit", max_retries=0)
    assert good.messages.create(model=STARTER_ID, max_tokens=2, messages=ASK).content  # type: ignore[arg-type]
    bad = anthropic.Anthropic(base_url=keyed.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.create(model=STARTER_ID, max_tokens=2, messages=ASK)  # type: ignore[arg-type]
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def _message(**extra: Any) -> dict[str, Any]:
    return {"model": STARTER_ID, "max_tokens": 2, "messages": ASK, **extra}


def _blocks(role: str, *blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": role, "content": list(blocks)}]


# (id, route, JSON body or raw bytes, status, Anthropic error type)
BAD: list[tuple[str, str, Any, int, str]] = [
    ("no max_tokens", "/v1/messages", {"model": STARTER_ID, "messages": ASK}, 400, "invalid"),
    ("max_tokens 0", "/v1/messages", _message(max_tokens=0), 400, "invalid"),
    ("max_tokens past context", "/v1/messages", _message(max_tokens=10**6), 400, "invalid"),
    ("top_k past int32", "/v1/messages", _message(top_k=2**31), 400, "invalid"),
    ("no messages", "/v1/messages", _message(messages=[]), 400, "invalid"),
    (
        "system role",
        "/v1/messages",
        _message(messages=[{"role": "system", "content": "x"}]),
        400,
        "invalid",
    ),
    ("17 stop sequences", "/v1/messages", _message(stop_sequences=["x"] * 17), 400, "invalid"),
    (
        "unknown block",
        "/v1/messages",
        _message(messages=_blocks("user", {"type": "nope"})),
        400,
        "invalid",
    ),
    (
        "tool_use from the user",
        "/v1/messages",
        _message(
            messages=_blocks("user", {"type": "tool_use", "id": "a", "name": "f", "input": {}})
        ),
        400,
        "invalid",
    ),
    (
        "tool_result from the assistant",
        "/v1/messages",
        _message(messages=_blocks("assistant", {"type": "tool_result", "tool_use_id": "a"})),
        400,
        "invalid",
    ),
    (
        "tool without a name",
        "/v1/messages",
        _message(tool_choice={"type": "tool"}, tools=[WEATHER]),
        400,
        "invalid",
    ),
    (
        "unsupported schema keyword",
        "/v1/messages",
        _message(
            tools=[{**WEATHER, "input_schema": {"type": "object", "not": {}}}],
            tool_choice={"type": "any"},
        ),
        400,
        "invalid",
    ),
    (
        "output schema keyword",
        "/v1/messages",
        _message(output_config={"format": {"type": "json_schema", "schema": {"not": {}}}}),
        400,
        "invalid",
    ),
    ("unknown model", "/v1/messages", _message(model="nope"), 404, "not_found_error"),
    ("count without messages", "/v1/messages/count_tokens", {"model": STARTER_ID}, 400, "invalid"),
    ("not UTF-8", "/v1/messages", b'{"model": "\xff"}', 400, "invalid"),
    ("nested too deep", "/v1/messages", b"[" * 10000 + b"]" * 10000, 400, "invalid"),
    (
        "NaN temperature",
        "/v1/messages",
        json.dumps(_message()).encode()[:-1] + b', "temperature": NaN}',
        400,
        "invalid",
    ),
]


@pytest.mark.parametrize(
    ("name", "route", "payload", "status", "kind"), BAD, ids=[c[0] for c in BAD]
)
def test_bad_input_gets_anthropics_error_and_the_server_lives_on(
    server: RunningServer, name: str, route: str, payload: Any, status: int, kind: str
) -> None:
    url = f"{server.url}{route}"
    if isinstance(payload, bytes):
        r = httpx.post(url, content=payload, headers={"content-type": "application/json"})
    else:
        r = httpx.post(url, json=payload, timeout=60)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == ("invalid_request_error" if kind == "invalid" else kind)
    alive = client(server).messages.create(model=STARTER_ID, max_tokens=2, messages=ASK)  # type: ignore[arg-type]
    assert alive.content, f"after {name}"
