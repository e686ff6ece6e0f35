"""The Responses API on the fake engine: the response object, the stream's event sequence and
numbering, function and custom tool calls, text.format, chained turns through the store,
retrieve / delete / input_items / cancel / replay, truncation, and errors. The official
`openai` client runs against the real model in tests/e2e/test_responses_real.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, engine
from tests.api.test_errors import assert_error

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def body(**extra: Any) -> dict[str, Any]:
    return {"model": FAKE_ID, "input": "hi", "max_output_tokens": 4, **extra}


def sse(text: str) -> list[dict[str, Any]]:
    """Each event's data; its `event:` line always names its type."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if not lines:
            continue
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        out.append(data)
    return out


async def create(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/responses", json=body(**extra))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_response_object(client: httpx.AsyncClient) -> None:
    out = await create(client, instructions="Be brief.", metadata={"k": "v"})
    assert out["id"].startswith("resp_") and out["object"] == "response"
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    (msg,) = out["output"]
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"][0]["type"] == "output_text"
    assert msg["content"][0]["text"] == out["output_text"] == "alpha beta gamma delta "
    usage = out["usage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert out["instructions"] == "Be brief." and out["metadata"] == {"k": "v"}
    assert out["completed_at"] >= out["created_at"]
    done = await create(client, max_output_tokens=64, input="x")
    assert done["status"] in ("completed", "incomplete")


async def test_the_stream_sequence(app: FastAPI, client: httpx.AsyncClient) -> None:
    (await engine(app)).replies.append("<think>Add.</think>4")
    r = await client.post("/v1/responses", json=body(stream=True, max_output_tokens=32))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "response.reasoning_text.delta" in kinds and "response.output_text.delta" in kinds
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == "Add."
    assert final["output_text"] == "4"
    added = [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["item"]["id"] for e in events if e["type"] == "response.output_item.done"]
    assert added == done == [i["id"] for i in final["output"]]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "4"
    stored = (await client.get(f"/v1/responses/{final['id']}")).json()
    assert stored["output"] == final["output"] and stored["status"] == "completed"
    replay = sse((await client.get(f"/v1/responses/{final['id']}?stream=true")).text)
    assert replay == events


async def test_function_calls_and_their_outputs(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies.append("Looking." + CALL)
    first = await create(client, tools=[WEATHER], max_output_tokens=64)
    kinds = [i["type"] for i in first["output"]]
    assert kinds == ["message", "function_call"]
    call = first["output"][1]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["call_id"] and call["status"] == "completed"
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "18 C"}
    second = await create(client, previous_response_id=first["id"], input=[output])
    assert second["previous_response_id"] == first["id"]
    prompt = fake.prompts[-1]
    assert "18 C" in prompt and "Paris" in prompt and "hi" in prompt
    fake.replies.append("Looking." + CALL)
    events = sse((await client.post("/v1/responses", json=body(tools=[WEATHER], stream=True))).text)
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert "".join(d["delta"] for d in deltas) == done["arguments"]
    assert done["name"] == "get_weather"


async def test_custom_tools_and_ignored_tools(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    patch = '<tool_call>\n{"name": "apply_patch", "arguments": {"input": "*** x"}}\n</tool_call>'
    fake.replies.append(patch)
    tools = [
        {"type": "custom", "name": "apply_patch", "description": "Edit files."},
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": []},
    ]
    r = await client.post("/v1/responses", json=body(tools=tools, max_output_tokens=64))
    assert r.status_code == 200, r.text
    assert r.headers["x-hearth-ignored-tools"] == "file_search, web_search"
    (call,) = r.json()["output"]
    assert call["type"] == "custom_tool_call" and call["input"] == "*** x"
    result = {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "done"}
    again = await create(client, previous_response_id=r.json()["id"], input=[result])
    assert again["status"] in ("completed", "incomplete")
    assert "done" in fake.prompts[-1]


async def test_three_chained_turns_carry_everything(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fake = await engine(app)
    first = await create(client, input="one", instructions="Secret rules.")
    second = await create(client, input="two", previous_response_id=first["id"])
    third = await create(client, input="three", previous_response_id=second["id"])
    prompt = fake.prompts[-1]
    for part in ("one", "two", "three", first["output_text"].strip()):
        assert part in prompt
    assert "Secret rules." not in prompt  # instructions are not inherited
    items = (await client.get(f"/v1/responses/{third['id']}/input_items?order=asc")).json()
    assert items["object"] == "list" and items["data"]
    assert items["data"][-1]["content"] == [{"type": "input_text", "text": "three"}]


async def test_store_false_and_delete(client: httpx.AsyncClient) -> None:
    unstored = await create(client, store=False)
    r = await client.get(f"/v1/responses/{unstored['id']}")
    assert_error(r, 404, "not_found", "response_id")
    r = await client.post("/v1/responses", json=body(previous_response_id=unstored["id"]))
    assert_error(r, 404, "not_found", "previous_response_id")
    kept = await create(client)
    deleted = (await client.delete(f"/v1/responses/{kept['id']}")).json()
    assert deleted == {"id": kept["id"], "object": "response", "deleted": True}
    assert (await client.get(f"/v1/responses/{kept['id']}")).status_code == 404
    assert (await client.delete(f"/v1/responses/{kept['id']}")).status_code == 404


def texts(page: dict[str, Any]) -> list[str]:
    return [i["content"][0]["text"] for i in page["data"]]


async def test_input_items_pages(client: httpx.AsyncClient) -> None:
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    out = await create(client, input=items)
    url = f"/v1/responses/{out['id']}/input_items"
    page = (await client.get(url, params={"limit": 2, "order": "asc"})).json()
    assert texts(page) == ["m0", "m1"] and page["has_more"]
    rest = (await client.get(url, params={"after": page["last_id"], "order": "asc"})).json()
    assert texts(rest) == ["m2", "m3", "m4"] and not rest["has_more"]
    newest = (await client.get(url, params={"limit": 1})).json()
    assert texts(newest) == ["m4"]
    assert_error(await client.get(url, params={"limit": 0}), 400, "invalid_request", "limit")


async def test_text_format_json_schema(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies.append('{"n": 1}')
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"format": {"type": "json_schema", "name": "n", "schema": schema}}
    out = await create(client, text=fmt, max_output_tokens=32)
    assert json.loads(out["output_text"]) == {"n": 1}
    assert fake.requests[-1].grammar is not None
    assert out["text"]["format"]["type"] == "json_schema"


async def test_cancel_a_running_response(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.gate = asyncio.Event()
    task = asyncio.create_task(client.post("/v1/responses", json=body(max_output_tokens=50)))
    for _ in range(200):
        await asyncio.sleep(0.01)
        running = list(app.state.runtime.responses._running)
        if running:
            break
    (response_id,) = running
    cancelled = await client.post(f"/v1/responses/{response_id}/cancel")  # tokens held back
    assert cancelled.status_code == 200 and cancelled.json()["id"] == response_id
    fake.gate.set()
    out = (await task).json()
    assert out["status"] == "cancelled" and out["error"]["code"] == "cancelled"
    assert len(out["output_text"].split()) < 50
    stored = (await client.get(f"/v1/responses/{response_id}")).json()
    assert stored["status"] == "cancelled"


async def test_truncation_auto_drops_the_oldest_turns(client: httpx.AsyncClient) -> None:
    long = " ".join(["word"] * 80)
    first = await create(client, input=long, max_output_tokens=8)
    second = await create(client, input=long, previous_response_id=first["id"], max_output_tokens=8)
    tight = {"input": long, "previous_response_id": second["id"], "max_output_tokens": 8}
    refused = await client.post("/v1/responses", json=body(**tight))
    assert_error(refused, 400, "context_length_exceeded", "messages")
    ok = await create(client, **tight, truncation="auto")
    assert ok["status"] in ("completed", "incomplete") and ok["truncation"] == "auto"


async def test_truncation_auto_keeps_room_for_the_whole_answer(client: httpx.AsyncClient) -> None:
    # The prompt fits but leaves less than max_output_tokens: without truncation the answer
    # ends where the context does; with `auto`, old turns go until all of it fits.
    long = " ".join(["word"] * 60)
    first = await create(client, input=long, max_output_tokens=8)
    asked = {"input": long, "previous_response_id": first["id"], "max_output_tokens": 150}
    cut = await create(client, **asked)
    assert cut["usage"]["input_tokens"] + 150 > 256
    assert cut["usage"]["input_tokens"] + cut["usage"]["output_tokens"] <= 256
    kept = await create(client, **asked, truncation="auto")
    assert kept["usage"]["input_tokens"] < cut["usage"]["input_tokens"]
    assert kept["usage"]["input_tokens"] + 150 <= 256
    # Nothing left to drop: the request is refused, not cut short.
    alone = await client.post(
        "/v1/responses", json=body(input=long, max_output_tokens=250, truncation="auto")
    )
    assert_error(alone, 400, "context_length_exceeded", "max_tokens")


@pytest.mark.parametrize(
    ("extra", "status", "code", "param"),
    [
        ({"input": [{"type": "bogus"}]}, 400, "invalid_request", "input.0"),
        ({"input": [{"role": "robot", "content": "x"}]}, 400, "invalid_request", "input.0.role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            400,
            "invalid_request",
            "input.0.content.0",
        ),
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            400,
            "invalid_request",
            "input.0.call_id",
        ),
        ({"input": []}, 400, "invalid_request", "input"),
        (
            {"input": [{"role": "user", "content": "x", "id": 7}]},
            400,
            "invalid_request",
            "input.0.id",
        ),
        ({"conversation": {}}, 400, "invalid_request", "conversation"),
        ({"model": "nope"}, 404, "model_not_found", "model"),
        ({"previous_response_id": "resp_missing"}, 404, "not_found", "previous_response_id"),
        ({"conversation": "conv_missing"}, 404, "not_found", "conversation"),
        ({"temperature": 5}, 400, "invalid_request", "temperature"),
        ({"tool_choice": "sometimes"}, 400, "invalid_request", "tool_choice"),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, extra: dict[str, Any], status: int, code: str, param: str
) -> None:
    r = await client.post("/v1/responses", json=body(**extra))
    assert_error(r, status, code, param)
    assert (await client.post("/v1/responses", json=body())).status_code == 200


async def test_a_response_is_stored_before_its_stream_ends(app: FastAPI) -> None:
    """A client that stops reading at response.completed may continue it at once."""
    from hearth.api.responses.protocol import ResponseCreateRequest

    service = app.state.runtime.responses
    created = await service.create(ResponseCreateRequest.model_validate(body(stream=True)))
    stream = created.result
    async for event in stream:
        if (
            getattr(event, "type", "") == "response.completed"
            or getattr(event, "type", "") == "response.incomplete"
        ):
            response_id = event.model_extra["response"]["id"]
            break
    follow = ResponseCreateRequest.model_validate(body(previous_response_id=response_id))
    again = await service.create(follow)  # no 404: it was written before the event went out
    assert again.result.previous_response_id == response_id
    await stream.aclose()


@pytest.mark.parametrize("bias", [{"x": 1.0}, {"999999": 1.0}, {"5": 1000.0}])
async def test_bad_logit_bias_is_a_400_naming_it(
    client: httpx.AsyncClient, bias: dict[str, float]
) -> None:
    r = await client.post(
        "/v1/responses", json={"model": FAKE_ID, "input": "hi", "logit_bias": bias}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "logit_bias"
    ok = await client.post("/v1/responses", json={"model": FAKE_ID, "input": "hi"})
    assert ok.status_code == 200
