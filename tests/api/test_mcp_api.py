"""MCP servers through the app: GET /v1/mcp/tools, the restart route, and the manager's
calls (what the Responses API uses), with the suite's server (tests/mcp_server.py) over
stdio and over streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hearth.errors import InvalidRequestError, NotFoundError
from hearth.mcp.config import ServerConfig
from hearth.mcp.manager import McpCallError, McpManager
from tests.api.test_errors import assert_error
from tests.fakes import FakeEngine
from tests.mcp_server import http_server, stdio_entry

pytestmark = pytest.mark.anyio


def servers(tmp_path: Path, entries: dict[str, Any]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": entries}))
    return path


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with http_server() as url:
        yield url


@pytest.fixture
async def app(
    make_app: Callable[..., FastAPI], tmp_path: Path, http_url: str
) -> AsyncIterator[FastAPI]:
    config = servers(
        tmp_path,
        {
            "test": stdio_entry(),
            "limited": stdio_entry(allowed_tools=["add"]),
            "quick": stdio_entry(timeout_s=1),
            "missing": {"command": str(tmp_path / "no-such-server")},
            "off": stdio_entry(enabled=False),
            "remote": {"url": http_url},
        },
    )
    application = make_app(mcp_config=config)
    async with application.router.lifespan_context(application):
        yield application


def manager(app: FastAPI) -> McpManager:
    mcp = app.state.runtime.mcp
    assert isinstance(mcp, McpManager)
    return mcp


async def test_listing_starts_servers_and_shows_failures(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    states = {s.name: s.status for s in await manager(app).states()}
    assert set(states.values()) == {"stopped"}  # lazy: nothing ran before the listing
    r = await client.get("/v1/mcp/tools")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    by_name = {s["name"]: s for s in body["data"]}
    assert list(by_name) == ["test", "limited", "quick", "missing", "off", "remote"]
    test = by_name["test"]
    assert (test["transport"], test["status"], test["error"]) == ("stdio", "running", None)
    add = next(t for t in test["tools"] if t["name"] == "add")
    assert add["server"] == "test"
    assert add["description"] == "Add two integers."
    assert add["input_schema"]["properties"].keys() == {"a", "b"}
    assert {t["name"] for t in test["tools"]} >= {"add", "lookup", "slow", "fail"}
    assert [t["name"] for t in by_name["limited"]["tools"]] == ["add"]
    missing = by_name["missing"]
    assert (missing["status"], missing["tools"]) == ("failed", [])
    assert "No such file or directory" in missing["error"]
    assert str(tmp_path / "no-such-server") in missing["error"]
    assert (by_name["off"]["status"], by_name["off"]["tools"]) == ("stopped", [])
    assert by_name["remote"]["transport"] == "http"
    assert by_name["remote"]["status"] == "running"
    # Hearth itself is fine.
    assert (await client.get("/health")).status_code == 200


async def test_calls(app: FastAPI) -> None:
    mcp = manager(app)
    assert await mcp.call_tool("test", "add", {"a": 2, "b": 3}) == "5"
    assert await mcp.call_tool("test", "lookup", {"key": "beta"}) == "second"
    assert [t.name for t in await mcp.list_tools("limited")] == ["add"]
    with pytest.raises(McpCallError) as refused:
        await mcp.call_tool("limited", "lookup", {"key": "beta"})
    assert refused.value.kind == "mcp_protocol_error"
    with pytest.raises(McpCallError) as failed:
        await mcp.call_tool("test", "fail", {})
    assert failed.value.kind == "mcp_tool_execution_error"
    assert "fail" in failed.value.message
    with pytest.raises(McpCallError) as unknown:
        await mcp.call_tool("test", "nope", {})
    assert unknown.value.kind in ("mcp_protocol_error", "mcp_tool_execution_error")
    assert (mcp.has("test"), mcp.has("off"), mcp.has("nope")) == (True, False, False)
    assert mcp.auto_inject() == []
    assert mcp.timeout("quick") == 1.0
    with pytest.raises(NotFoundError):
        await mcp.list_tools("nope")
    with pytest.raises(NotFoundError):
        await mcp.list_tools("off")


async def test_a_slow_tool_times_out_and_the_server_still_answers(app: FastAPI) -> None:
    mcp = manager(app)
    with pytest.raises(McpCallError) as timed_out:
        await mcp.call_tool("quick", "slow", {})
    assert (timed_out.value.kind, timed_out.value.message) == (
        "mcp_tool_execution_error",
        "timed out after 1s",
    )
    assert await mcp.call_tool("quick", "add", {"a": 1, "b": 1}) == "2"


async def test_cancelling_the_caller_cancels_the_call(app: FastAPI) -> None:
    mcp = manager(app)
    task = asyncio.create_task(mcp.call_tool("test", "slow", {}))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert await mcp.call_tool("test", "add", {"a": 1, "b": 2}) == "3"


async def test_a_server_that_cannot_start(app: FastAPI) -> None:
    with pytest.raises(McpCallError) as failed:
        await manager(app).list_tools("missing")
    assert failed.value.kind == "mcp_protocol_error"
    assert "No such file or directory" in failed.value.message
    (state,) = [s for s in await manager(app).states() if s.name == "missing"]
    assert state.status == "failed"


async def wait_not_running(mcp: McpManager, name: str) -> str | None:
    for _ in range(100):
        (state,) = [s for s in await mcp.states() if s.name == name]
        if state.status != "running":
            return state.error
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} still running")


async def test_a_killed_server_is_restarted_on_next_use(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    mcp = manager(app)
    pid = int(await mcp.call_tool("test", "pid", {}))
    os.kill(pid, 9)
    error = await wait_not_running(mcp, "test")
    assert error is not None and "closed its connection" in error
    by_name = {s["name"]: s for s in (await client.get("/v1/mcp/tools")).json()["data"]}
    assert by_name["test"]["status"] == "running"
    assert await mcp.call_tool("test", "add", {"a": 4, "b": 4}) == "8"
    assert int(await mcp.call_tool("test", "pid", {})) != pid


async def test_the_restart_route(app: FastAPI, client: httpx.AsyncClient) -> None:
    mcp = manager(app)
    before = int(await mcp.call_tool("test", "pid", {}))
    r = await client.post("/v1/mcp/servers/test/restart")
    assert r.status_code == 200, r.text
    state = r.json()
    assert (state["name"], state["status"], state["error"]) == ("test", "running", None)
    assert "add" in {t["name"] for t in state["tools"]}
    assert int(await mcp.call_tool("test", "pid", {})) != before
    failed = (await client.post("/v1/mcp/servers/missing/restart")).json()
    assert failed["status"] == "failed" and failed["error"]
    unknown = await client.post("/v1/mcp/servers/nope/restart")
    assert_error(unknown, 404, "not_found", "server_label")


async def test_streamable_http(app: FastAPI) -> None:
    mcp = manager(app)
    assert "lookup" in {t.name for t in await mcp.list_tools("remote")}
    assert await mcp.call_tool("remote", "add", {"a": 20, "b": 22}) == "42"
    with pytest.raises(McpCallError) as failed:
        await mcp.call_tool("remote", "fail", {})
    assert failed.value.kind == "mcp_tool_execution_error"


async def test_url_servers_need_their_origin_allowed(http_url: str) -> None:
    closed = McpManager({})
    with pytest.raises(InvalidRequestError) as refused:
        await closed.url_server(http_url, None)
    assert refused.value.param == "tools"
    origin = http_url.removesuffix("/mcp")
    other = McpManager({}, allow_urls=["http://127.0.0.1:1"])
    with pytest.raises(InvalidRequestError):
        await other.url_server(http_url, None)
    mcp = McpManager({}, allow_urls=[origin])
    try:
        name = await mcp.url_server(http_url, {"X-Test": "1"})
        assert mcp.has(name)
        assert name == await mcp.url_server(http_url, {"X-Test": "1"})  # one connection
        assert "add" in {t.name for t in await mcp.list_tools(name)}
        assert await mcp.call_tool(name, "add", {"a": 1, "b": 2}) == "3"
        assert await mcp.states() == []  # only configured servers are listed
        with pytest.raises(InvalidRequestError):
            await mcp.url_server("file:///etc/passwd", None)
    finally:
        await mcp.close()


async def test_an_http_server_that_is_not_there() -> None:
    mcp = McpManager({"gone": ServerConfig("gone", url="http://127.0.0.1:9/mcp")})
    with pytest.raises(McpCallError) as failed:
        await mcp.list_tools("gone")
    assert failed.value.kind == "mcp_protocol_error"
    assert "ConnectError" in failed.value.message
    await mcp.close()


async def test_an_http_error_status(http_url: str) -> None:
    wrong_path = http_url.removesuffix("/mcp") + "/nope"
    mcp = McpManager({"wrong": ServerConfig("wrong", url=wrong_path)})
    with pytest.raises(McpCallError) as failed:
        await mcp.list_tools("wrong")
    assert failed.value.kind == "http_error"
    assert "404" in failed.value.message
    await mcp.close()


async def test_eager_start_and_stderr_in_the_log(
    make_app: Callable[..., FastAPI], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hearth.mcp")
    config = servers(tmp_path, {"test": stdio_entry(), "missing": {"command": "/no/such"}})
    application = make_app(mcp_config=config, mcp_eager=True)
    async with application.router.lifespan_context(application):
        states = {s.name: s for s in await manager(application).states()}
        assert states["test"].status == "running"
        assert states["missing"].status == "failed"
        for _ in range(100):  # the stderr reader is a thread
            if "[test] hearth test server starting (stdio)" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "[test] hearth test server starting (stdio)" in caplog.text
        assert "MCP server missing failed to start" in caplog.text
    # Stopped with Hearth.
    assert {s.status for s in await manager(application).states()} <= {"stopped", "failed"}


async def test_the_library(tmp_path: Path) -> None:
    from hearth import Hearth

    (tmp_path / "c.toml").touch()
    async with Hearth(
        factory=FakeEngine,
        models_dir=tmp_path / "models",
        config=tmp_path / "c.toml",
        data_dir=tmp_path / "data",
        mcp_config=servers(tmp_path, {"test": stdio_entry()}),
    ) as h:
        (listed,) = (await h.mcp.tools()).data
        assert (listed.name, listed.status) == ("test", "running")
        assert (await h.mcp.restart("test")).status == "running"
