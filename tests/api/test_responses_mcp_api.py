"""`mcp` tools in the Responses API, with the suite's MCP server (tests/mcp_server.py, over
stdio) and scripted fake-engine replies: the listing item, a call Hearth runs and the answer
after it (whole and streamed), errors and timeouts as mcp_call errors, the approval flow over
two requests, the round trip through previous_response_id, and bad MCP tools."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, engine
from tests.api.test_errors import assert_error
from tests.api.test_responses_api import sse

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def call(name: str, args: dict[str, Any]) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {json.dumps(args)}}}\n</tool_call>'


@pytest.fixture
async def app(make_app: Callable[..., FastAPI], tmp_path: Path) -> AsyncIterator[FastAPI]:
    server = {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)}
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps({"mcpServers": {"test": server, "slowpoke": {**server, "timeout_s": 1}}})
    )
    application = make_app(mcp_config=config)
    async with application.router.lifespan_context(application):
        yield application


def mcp_tool(**extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "test", "require_approval": "never", **extra}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": FAKE_ID, "input": "What is 2 + 3?", "tools": [mcp_tool()], **extra}


async def test_a_call_hearth_runs_then_the_answer(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    replies = [call("add", {"a": 2, "b": 3}), "The sum is 5."]
    fake.replies += replies
    r = await client.post("/v1/responses", json=body())
    assert r.status_code == 200, r.text
    out = r.json()
    kinds = [i["type"] for i in out["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"]
    listing, done, message = out["output"]
    assert {"add", "lookup", "fail"} <= {t["name"] for t in listing["tools"]}
    assert done["name"] == "add" and done["server_label"] == "test"
    assert json.loads(done["arguments"]) == {"a": 2, "b": 3}
    assert done["output"] == "5" and done["error"] is None and done["status"] == "completed"
    assert message["content"][0]["text"] == "The sum is 5." == out["output_text"]
    assert "5" in fake.prompts[-1]  # the second round read the call's result
    # Both rounds' tokens are counted (the fake writes a token per 3 characters).
    assert out["usage"]["output_tokens"] == sum(-(-len(x) // 3) for x in replies)
    assert out["usage"]["input_tokens"] > len(fake.requests[-1].prompt)


async def test_streamed_mcp_events(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies += [call("lookup", {"key": "alpha"}), "It is first."]
    events = sse((await client.post("/v1/responses", json=body(stream=True))).text)
    kinds = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for kind in (
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
    ):
        assert kind in kinds, kind
    assert kinds.index("response.mcp_call.completed") < kinds.index("response.output_text.delta")
    final = events[-1]
    assert final["type"] == "response.completed"
    call_item = final["response"]["output"][1]
    assert call_item["output"] == "first"
    added = [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["item"]["id"] for e in events if e["type"] == "response.output_item.done"]
    assert added == done == [i["id"] for i in final["response"]["output"]]


async def test_errors_and_timeouts_are_mcp_call_errors(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    fake = await engine(app)
    fake.replies += [call("fail", {}), "It failed."]
    out = (await client.post("/v1/responses", json=body())).json()
    failed = out["output"][1]
    assert failed["status"] == "failed" and failed["output"] is None
    assert failed["error"]["type"] == "mcp_tool_execution_error"
    assert "Error executing tool fail" in json.dumps(failed["error"])  # the SDK's words
    fake.replies += [call("slow", {}), "Too slow."]
    slow = {"type": "mcp", "server_label": "slowpoke", "require_approval": "never"}
    out = (await client.post("/v1/responses", json=body(tools=[slow]))).json()
    timed = out["output"][1]
    assert timed["error"]["type"] == "mcp_tool_execution_error"
    assert "timed out" in json.dumps(timed["error"])
    assert out["status"] == "completed"


async def test_the_approval_flow(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies += [call("add", {"a": 1, "b": 1})]
    asked = (
        await client.post("/v1/responses", json=body(tools=[mcp_tool(require_approval="always")]))
    ).json()
    kinds = [i["type"] for i in asked["output"]]
    assert kinds == ["mcp_list_tools", "mcp_approval_request"]
    request = asked["output"][1]
    assert request["name"] == "add" and json.loads(request["arguments"]) == {"a": 1, "b": 1}
    fake.replies += ["Two."]
    answer = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": True,
    }
    r = await client.post(
        "/v1/responses",
        json=body(
            input=[answer],
            previous_response_id=asked["id"],
            tools=[mcp_tool(require_approval="always")],
        ),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert [i["type"] for i in out["output"]] == ["mcp_call", "message"]  # listed already
    assert out["output"][0]["output"] == "2"
    assert out["output"][0]["approval_request_id"] == request["id"]
    # The whole exchange is read again by a third turn.
    fake.replies += ["Yes."]
    third = await client.post(
        "/v1/responses",
        json=body(input="Sure?", previous_response_id=out["id"], tools=[mcp_tool()]),
    )
    assert third.status_code == 200
    assert "2" in fake.prompts[-1] and "Two." in fake.prompts[-1]


async def test_bad_mcp_tools(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/responses", json=body(tools=[mcp_tool(server_label="nope")]))
    assert_error(r, 400, "invalid_request", "tools.0.server_label")
    url = {"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9/mcp"}
    r = await client.post("/v1/responses", json=body(tools=[url]))
    assert_error(r, 400, "invalid_request", "tools")
    bad = {"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}
    r = await client.post("/v1/responses", json=body(input=[bad]))
    assert_error(r, 400, "invalid_request", "input.0.approval_request_id")


async def test_function_and_mcp_tools_mix(app: FastAPI, client: httpx.AsyncClient) -> None:
    """MCP calls run in Hearth; a function call in the same request goes back to the client."""
    fake = await engine(app)
    fn = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    fake.replies += [call("add", {"a": 4, "b": 4}), call("get_weather", {"city": "Oslo"})]
    out = (await client.post("/v1/responses", json=body(tools=[mcp_tool(), fn]))).json()
    kinds = [i["type"] for i in out["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "function_call"], kinds
    assert out["output"][1]["output"] == "8"
    assert out["output"][2]["name"] == "get_weather" and out["status"] == "completed"


async def test_auto_inject_and_max_tool_calls(
    make_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    server = {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)}
    config = tmp_path / "auto.json"
    config.write_text(json.dumps({"mcpServers": {"auto": {**server, "auto_inject": True}}}))
    app = make_app(mcp_config=config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            fake = await engine(app)
            fake.replies += [call("add", {"a": 1, "b": 2}), "Three."]
            out = (await client.post("/v1/responses", json=body(tools=None))).json()
            assert [i["type"] for i in out["output"]] == ["mcp_list_tools", "mcp_call", "message"]
            # One call allowed: the answer after it is made with tools off, so a second
            # call the model writes is only text.
            fake.replies += [call("add", {"a": 1, "b": 1}), call("add", {"a": 2, "b": 2})]
            limited = body(tools=None, max_tool_calls=1)
            out = (await client.post("/v1/responses", json=limited)).json()
            kinds = [i["type"] for i in out["output"]]
            assert kinds.count("mcp_call") == 1 and kinds[-1] == "message", kinds
            # An explicit empty list is no tools at all, the injected ones included.
            fake.replies += ["Plain."]
            out = (await client.post("/v1/responses", json=body(tools=[]))).json()
            assert [i["type"] for i in out["output"]] == ["message"]
