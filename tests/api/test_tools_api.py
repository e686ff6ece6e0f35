"""Tool calls, reasoning and structured output on the wire, with scripted fake-engine replies.
The real model is tested end to end in tests/e2e; here, the exact shape of what clients get."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, chat_body, engine
from tests.api.test_chat_protocol import sse_events

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
TWO_CALLS = (
    'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>'
)


async def post(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=chat_body(**body))


async def test_tool_calls_in_a_full_response(app: FastAPI, client: httpx.AsyncClient) -> None:
    (await engine(app)).replies.append(TWO_CALLS)
    r = await post(client, tools=[WEATHER, TIME])
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Checking."
    calls = message["tool_calls"]
    assert [c["type"] for c in calls] == ["function", "function"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"tz": "CET"},
    ]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)
    assert "reasoning_content" not in message  # extensions appear only when there is reasoning


async def test_tool_call_deltas_stream_like_openai(app: FastAPI, client: httpx.AsyncClient) -> None:
    (await engine(app)).replies.append(TWO_CALLS)
    r = await post(client, tools=[WEATHER, TIME], stream=True)
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    assert content == "Checking."
    tool_deltas = [tc for d in deltas for tc in d.get("tool_calls", [])]
    firsts = [tc for tc in tool_deltas if "id" in tc]
    assert [(tc["index"], tc["type"], tc["function"]["name"]) for tc in firsts] == [
        (0, "function", "get_weather"),
        (1, "function", "get_time"),
    ]
    assert all(tc["function"]["arguments"] == "" for tc in firsts)
    later = [tc for tc in tool_deltas if "id" not in tc]
    assert all(
        set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"} for tc in later
    )
    assert len([tc for tc in later if tc["index"] == 0]) > 1  # arguments arrive in pieces
    for index, expected in ((0, {"city": "Paris"}), (1, {"tz": "CET"})):
        args = "".join(tc["function"]["arguments"] for tc in tool_deltas if tc["index"] == index)
        assert json.loads(args) == expected
    reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [x for x in reasons if x] == ["tool_calls"]


async def test_parallel_tool_calls_false_keeps_one(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies.append(TWO_CALLS)
    r = await post(client, tools=[WEATHER, TIME], parallel_tool_calls=False)
    assert [c["function"]["name"] for c in r.json()["choices"][0]["message"]["tool_calls"]] == [
        "get_weather"
    ]
    assert "( " not in (fake.requests[-1].grammar or "").split("tool-calls ::=")[-1].split("\n")[0]


async def test_tools_reach_a_template_without_tool_support(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fake = await engine(app)  # no template in the GGUF: ChatML, which knows no tools
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    r = await post(client, messages=messages, tools=[WEATHER])
    assert r.status_code == 200
    prompt = fake.prompts[-1]
    assert prompt.startswith("<|im_start|>system\n") and '"name": "get_weather"' in prompt
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in prompt
    )
    assert "<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response><|im_end|>" in prompt
    assert fake.requests[-1].grammar is not None  # auto: a call, once begun, must be valid


async def test_tool_choice_none_leaves_tools_out(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies.append(TWO_CALLS)
    r = await post(client, tools=[WEATHER], tool_choice="none")
    assert "get_weather" not in fake.prompts[-1]
    assert fake.requests[-1].grammar is None
    message = r.json()["choices"][0]["message"]
    assert message["content"] == TWO_CALLS and "tool_calls" not in message


async def test_reasoning_parsed_and_raw(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies += ["<think>\nAdd them.\n</think>\n\n4", "<think>\nAdd them.\n</think>\n\n4"]
    message = (await post(client)).json()["choices"][0]["message"]
    assert message["content"] == "4"
    assert message["reasoning_content"] == message["reasoning"] == "Add them."
    raw = (await post(client, reasoning_format="raw")).json()["choices"][0]["message"]
    assert raw["content"] == "<think>\nAdd them.\n</think>\n\n4"
    assert "reasoning_content" not in raw


async def test_reasoning_deltas(app: FastAPI, client: httpx.AsyncClient) -> None:
    (await engine(app)).replies.append("<think>Add them.</think>4")
    r = await post(client, stream=True)
    deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(r.text)[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Add them."
    assert "".join(d.get("reasoning", "") for d in deltas) == "Add them."
    assert "".join(d.get("content") or "" for d in deltas) == "4"


async def test_server_option_makes_raw_the_default(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(reasoning_format="raw")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            (await engine(app)).replies += ["<think>x</think>y", "<think>x</think>y"]
            assert (await post(c)).json()["choices"][0]["message"]["content"] == "<think>x</think>y"
            parsed = (await post(c, reasoning_format="parsed")).json()["choices"][0]["message"]
            assert (parsed["content"], parsed["reasoning_content"]) == ("y", "x")


async def test_template_kwargs_and_reasoning_effort_reach_the_template(
    make_app: Callable[..., FastAPI], tmp_path: Any
) -> None:
    template = tmp_path / "t.jinja"
    template.write_text(
        "{{ messages[0]['content'] }}|thinking={{ enable_thinking }}|effort={{ reasoning_effort }}"
    )
    app = make_app(chat_template_file=template)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            r = await post(
                c, chat_template_kwargs={"enable_thinking": False}, reasoning_effort="low"
            )
            assert r.status_code == 200
            assert (await engine(app)).prompts[-1] == "hi|thinking=False|effort=low"


async def test_response_format_and_grammar_reach_the_engine(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fake = await engine(app)
    await post(client, response_format={"type": "json_object"})
    assert "json-object" in (fake.requests[-1].grammar or "")
    schema = {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"]}
    await post(
        client,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    )
    assert '"\\"x\\"" | "\\"y\\""' in (fake.requests[-1].grammar or "")
    await post(client, grammar='root ::= "yes" | "no"')
    assert fake.requests[-1].grammar == 'root ::= "yes" | "no"'
    await post(client, response_format={"type": "text"})
    assert fake.requests[-1].grammar is None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]},
         "tool_choice", "nope"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
         "tools.0.function.name", "name"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "unique"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"s": {"type": "string", "pattern": "a+"}}}}}],
          "tool_choice": "required"}, "tools.0.function.parameters", "pattern"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"n": {"type": "number", "maximum": 3}}}}}},
         "response_format.json_schema.schema", "maximum"),
        ({"response_format": {"type": "xml"}}, "response_format", "xml"),
        ({"grammar": 'root ::= "a" | b'}, "grammar", "'b'"),
        ({"grammar": 'root ::= "a"', "tools": [WEATHER]}, "grammar", "tools"),
        ({"grammar": 'root ::= "a"', "response_format": {"type": "json_object"}},
         "response_format", "not both"),
        ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs", "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id",
         "tool_call_id"),
        ({"reasoning_format": "hidden"}, "reasoning_format", "reasoning_format"),
    ],
)  # fmt: skip
async def test_bad_requests_are_400_and_the_server_keeps_answering(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, words: str
) -> None:
    r = await post(client, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    assert (await post(client, max_tokens=2)).status_code == 200


async def test_completions_take_grammar_and_response_format(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fake = await engine(app)
    body = {"model": FAKE_ID, "prompt": "hi", "max_tokens": 2}
    r = await client.post("/v1/completions", json={**body, "grammar": 'root ::= "y"'})
    assert r.status_code == 200 and fake.requests[-1].grammar == 'root ::= "y"'
    fmt = {"type": "json_object"}
    await client.post("/v1/completions", json={**body, "response_format": fmt})
    assert "json-object" in (fake.requests[-1].grammar or "")
    r = await client.post("/v1/completions", json={**body, "grammar": "root ::= x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "grammar"


async def test_unsupported_schema_in_auto_mode_is_parsed_not_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fancy = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "string", "pattern": "^a$"}},
    }
    r = await post(client, tools=[fancy], max_tokens=2)
    assert r.status_code == 200
    assert "pattern" not in ((await engine(app)).requests[-1].grammar or "")
