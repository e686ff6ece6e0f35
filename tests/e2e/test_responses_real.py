"""The Responses API on the real starter model through the official `openai` client: created
streamed and not (same text at temperature 0), max_output_tokens, retrieve / delete /
input_items, three chained turns, a forced function call continued by previous_response_id,
text.format json_schema, a chain across a server restart, and `kill -9` mid-generation.
The OpenAI Agents SDK runs an agent with a function tool against it too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import agents
import httpx
import jsonschema
import openai
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_created_streamed_and_not_agree(server: RunningServer) -> None:
    c = server.client()
    fields = {
        "model": STARTER_ID,
        "input": "Name three colours.",
        "instructions": "You are brief.",
        "temperature": 0,
        "max_output_tokens": 200,
    }
    whole = c.responses.create(**fields)  # type: ignore[call-overload]
    # The SDK's stream helper wants `response.completed`: an answer that ends by itself.
    assert whole.status == "completed", whole
    assert whole.id.startswith("resp_") and whole.output_text
    with c.responses.stream(**fields) as stream:  # type: ignore[arg-type]
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == whole.output_text == final.output_text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.status == whole.status


def test_max_output_tokens_is_incomplete(server: RunningServer) -> None:
    r = server.client().responses.create(
        model=STARTER_ID, input="Write a long story about a dragon.", max_output_tokens=5
    )
    assert r.status == "incomplete"
    assert r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 5


def test_retrieve_delete_and_input_items(server: RunningServer) -> None:
    c = server.client()
    items = [{"role": "user", "content": f"Remember the number {i}."} for i in range(4)]
    r = c.responses.create(model=STARTER_ID, input=items, max_output_tokens=8)  # type: ignore[arg-type]
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    page = c.responses.input_items.list(r.id, limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more
    every = [i.id for i in c.responses.input_items.list(r.id, order="asc")]  # pages through
    assert len(every) == 4 and every[:2] == [i.id for i in page.data]
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_three_chained_turns(server: RunningServer) -> None:
    c = server.client()
    first = c.responses.create(
        model=STARTER_ID, input="My name is Ada.", temperature=0, max_output_tokens=16
    )
    second = c.responses.create(
        model=STARTER_ID,
        input="What is my name?",
        previous_response_id=first.id,
        temperature=0,
        max_output_tokens=16,
    )
    third = c.responses.create(
        model=STARTER_ID,
        input="Say it again.",
        previous_response_id=second.id,
        temperature=0,
        max_output_tokens=16,
    )
    assert first.usage and second.usage and third.usage
    # Each turn reads the earlier ones: the prompt grows by the earlier outputs and inputs...
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens
    # ...and continuing finds the earlier turn's prompt in the cache.
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    assert third.usage.input_tokens_details.cached_tokens >= second.usage.input_tokens


def test_a_forced_function_call_continued(server: RunningServer) -> None:
    c = server.client()
    r = c.responses.create(
        model=STARTER_ID,
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
    )
    calls = [i for i in r.output if i.type == "function_call"]
    assert calls, r.output
    call = calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    reply = c.responses.create(
        model=STARTER_ID,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
        temperature=0,
        max_output_tokens=32,
    )
    assert reply.status in ("completed", "incomplete")
    assert reply.usage and r.usage and reply.usage.input_tokens > r.usage.input_tokens


def test_text_format_json_schema(server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
        "additionalProperties": False,
    }
    r = server.client().responses.create(
        model=STARTER_ID,
        input="Describe the weather in Rome as JSON.",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema}},
        temperature=0,
        max_output_tokens=64,
    )
    jsonschema.validate(json.loads(r.output_text), schema)


def _serve(tmp: Path, starter: Path, data: Path) -> RunningServer:
    return start_server(tmp, starter, data_dir=data)


def test_a_chain_survives_a_restart(tmp_path: Path, starter_model: Path) -> None:
    data = tmp_path / "data"
    first = _serve(tmp_path, starter_model, data)
    try:
        r = first.client().responses.create(
            model=STARTER_ID, input="My name is Ada.", max_output_tokens=8
        )
        conv = first.client().conversations.create(items=[{"role": "user", "content": "Hi."}])
    finally:
        first.stop()
    again = _serve(tmp_path, starter_model, data)
    try:
        c = again.client()
        assert c.responses.retrieve(r.id).output_text == r.output_text
        follow = c.responses.create(
            model=STARTER_ID, input="Name?", previous_response_id=r.id, max_output_tokens=8
        )
        assert follow.usage and r.usage and follow.usage.input_tokens > r.usage.input_tokens
        turn = c.responses.create(
            model=STARTER_ID, input="Again.", conversation=conv.id, max_output_tokens=8
        )
        items = list(c.conversations.items.list(conv.id, order="asc"))
        assert len(items) >= 3 and turn.output_text
    finally:
        again.stop()


def test_kill_9_mid_generation_keeps_the_database(tmp_path: Path, starter_model: Path) -> None:
    data = tmp_path / "data"
    server = _serve(tmp_path, starter_model, data)
    kept = [
        server.client().responses.create(model=STARTER_ID, input=f"n{i}", max_output_tokens=4).id
        for i in range(3)
    ]
    body = {"model": STARTER_ID, "input": "Write a long story.", "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/responses", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if "output_text.delta" in line:
                break
        os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    time.sleep(0.5)
    db = sqlite3.connect(data / "hearth.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    again = _serve(tmp_path, starter_model, data)
    try:
        for response_id in kept:
            assert again.client().responses.retrieve(response_id).id == response_id
    finally:
        again.stop()


def test_an_agent_runs_with_a_function_tool(server: RunningServer) -> None:
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"18 C and sunny in {city}"

    model = agents.OpenAIResponsesModel(
        model=STARTER_ID,
        openai_client=openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none"),
    )
    agent = agents.Agent(
        name="weather",
        instructions="Answer with the tool.",
        tools=[get_weather],
        model=model,
        model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
        tool_use_behavior="stop_on_first_tool",
    )
    result = asyncio.run(
        agents.Runner.run(
            agent,
            "What is the weather in Paris?",
            run_config=agents.RunConfig(tracing_disabled=True),
        )
    )
    assert seen, "the agent called no tool"
    assert "18 C" in str(result.final_output)


def test_a_conversation_appended_by_two_responses(server: RunningServer) -> None:
    c = server.client()
    conv = c.conversations.create(
        items=[{"role": "user", "content": "My name is Ada."}], metadata={"topic": "names"}
    )
    first = c.responses.create(
        model=STARTER_ID, input="What is my name?", conversation=conv.id, max_output_tokens=16
    )
    second = c.responses.create(
        model=STARTER_ID, input="Say it again.", conversation=conv.id, max_output_tokens=16
    )
    assert first.conversation is not None and first.conversation.id == conv.id
    assert second.usage and first.usage and second.usage.input_tokens > first.usage.input_tokens
    items = list(c.conversations.items.list(conv.id, order="asc"))
    # The seed message, then each turn's input and output, in order.
    assert len(items) == 5 and items[0].type == "message"
    texts = [p.text for i in items if i.type == "message" for p in i.content]  # type: ignore[union-attr]
    assert texts[:2] == ["My name is Ada.", "What is my name?"] and "Say it again." in texts
    assert c.conversations.retrieve(conv.id).metadata == {"topic": "names"}
    c.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError):
        c.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model=STARTER_ID, input="x", conversation=conv.id)


def test_a_custom_tool_and_ignored_hosted_tools(server: RunningServer) -> None:
    """Codex's shape: a free-form custom tool forced, hosted tools named in a header."""
    tools = [
        {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files."},
        {"type": "web_search"},
    ]
    body = {
        "model": STARTER_ID,
        "input": "Add a line 'hello' to notes.txt.",
        "tools": tools,
        "tool_choice": {"type": "custom", "name": "apply_patch"},
        "temperature": 0,
        "max_output_tokens": 96,
    }
    raw = httpx.post(f"{server.url}/v1/responses", json=body, timeout=120)
    assert raw.status_code == 200, raw.text
    assert raw.headers["x-hearth-ignored-tools"] == "web_search"
    r = raw.json()
    (call,) = [i for i in r["output"] if i["type"] == "custom_tool_call"]
    assert call["name"] == "apply_patch" and isinstance(call["input"], str) and call["input"]
    follow = server.client().responses.create(
        model=STARTER_ID,
        previous_response_id=r["id"],
        input=[{"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "done"}],
        tools=tools,  # type: ignore[arg-type]
        max_output_tokens=16,
    )
    assert follow.usage and follow.usage.input_tokens > r["usage"]["input_tokens"]


def test_cancel_a_response_mid_stream(server: RunningServer) -> None:
    body = {"model": STARTER_ID, "input": "Write a long story.", "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/responses", json=body, timeout=120) as r:
        events: list[dict[str, Any]] = []
        sent = False
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            events.append(event)
            if event["type"] == "response.output_text.delta" and not sent:
                sent = True
                response_id = events[0]["response"]["id"]  # response.created carries it
                cancelled = httpx.post(
                    f"{server.url}/v1/responses/{response_id}/cancel", timeout=30
                )
                assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    last = events[-1]
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert last["type"] == "response.failed" and last["response"]["status"] == "cancelled"
    stored = server.client().responses.retrieve(last["response"]["id"])
    assert stored.status == "cancelled" and stored.output_text


def test_truncation_auto_on_a_small_context(tmp_path: Path, starter_model: Path) -> None:
    small = start_server(tmp_path, starter_model, "--ctx-size", "256", "--parallel", "1")
    try:
        c = small.client()
        story = "Tell me about the sea, its waves, its tides and its fish. " * 6
        previous = None
        for _ in range(3):  # three long turns overflow 256 tokens
            r = c.responses.create(
                model=STARTER_ID,
                input=story,
                previous_response_id=previous,
                max_output_tokens=16,
                truncation="auto",
            )
            previous = r.id
        with pytest.raises(openai.BadRequestError) as refused:
            c.responses.create(
                model=STARTER_ID, input=story, previous_response_id=previous, max_output_tokens=16
            )
        assert refused.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
        kept = c.responses.create(
            model=STARTER_ID,
            input=story,
            previous_response_id=previous,
            max_output_tokens=16,
            truncation="auto",
        )
        assert kept.usage is not None and kept.usage.input_tokens + 16 <= 256
    finally:
        small.stop()
