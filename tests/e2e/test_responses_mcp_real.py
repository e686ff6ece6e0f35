"""`mcp` tools in the Responses API on the real starter model, through the official `openai`
client, with the suite's MCP server over stdio and over streamable HTTP: a forced call whose
mcp_call carries the right output and the message after it, streamed and not; the approval
flow; a timeout; a server that cannot start; a server killed mid-session; a conversation
across a Hearth restart; and the library's session helper."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth import Hearth
from tests.e2e.conftest import STARTER_ID, RunningServer, free_port, start_server

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
STDIO = {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)}
ASK = "What is 2 + 3? Use the add tool."


def force(name: str, label: str = "test") -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "name": name}


def tool(label: str = "test", approval: str = "never") -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "require_approval": approval}


@pytest.fixture(scope="module")
def http_mcp() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", "http", str(port)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def mcp_server(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path, http_mcp: str
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("mcp")
    config = tmp / "mcp.json"
    servers = {
        "test": STDIO,
        "slowpoke": {**STDIO, "timeout_s": 2},
        "web": {"url": http_mcp},
        "broken": {"command": str(tmp / "no-such-command")},
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    server = start_server(tmp, starter_model, "--mcp-config", str(config))
    yield server
    server.stop()


def test_a_forced_call_runs_and_the_answer_follows(mcp_server: RunningServer) -> None:
    c = mcp_server.client()
    fields: dict[str, Any] = {
        "model": STARTER_ID,
        "input": ASK,
        "tools": [tool()],
        "tool_choice": force("add"),
        "temperature": 0,
        "max_output_tokens": 48,
    }
    r = c.responses.create(**fields)
    kinds = [i.type for i in r.output]
    assert kinds[:2] == ["mcp_list_tools", "mcp_call"] and kinds[-1] == "message", kinds
    done = r.output[1]
    args = json.loads(done.arguments)  # type: ignore[union-attr]
    assert done.output == str(args["a"] + args["b"])  # type: ignore[union-attr]
    assert r.output_text
    with c.responses.stream(**fields) as stream:
        seen = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.mcp_call.completed" in seen
    assert [i.type for i in final.output] == kinds
    assert final.output_text == r.output_text
    # The call and its result go round through previous_response_id.
    follow = c.responses.create(
        model=STARTER_ID,
        input="Thanks.",
        previous_response_id=r.id,
        tools=[tool()],
        max_output_tokens=8,
    )
    items = [i.type for i in c.responses.input_items.list(follow.id, order="asc")]
    assert "mcp_call" in items and "mcp_list_tools" in items


def test_the_approval_flow(mcp_server: RunningServer) -> None:
    c = mcp_server.client()
    asked = c.responses.create(
        model=STARTER_ID,
        input=ASK,
        tools=[tool(approval="always")],  # type: ignore[list-item]
        tool_choice=force("add"),  # type: ignore[arg-type]
        temperature=0,
    )
    request = asked.output[-1]
    assert request.type == "mcp_approval_request", asked.output
    approved = c.responses.create(
        model=STARTER_ID,
        previous_response_id=asked.id,
        input=[
            {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        ],  # type: ignore[list-item]
        tools=[tool(approval="always")],  # type: ignore[list-item]
        max_output_tokens=24,
    )
    call = approved.output[0]
    assert call.type == "mcp_call" and call.approval_request_id == request.id
    args = json.loads(call.arguments)
    assert call.output == str(args["a"] + args["b"])


def test_a_hung_tool_times_out(mcp_server: RunningServer) -> None:
    r = mcp_server.client().responses.create(
        model=STARTER_ID,
        input="Run slow.",
        tools=[tool("slowpoke")],  # type: ignore[list-item]
        tool_choice=force("slow", "slowpoke"),  # type: ignore[arg-type]
        max_output_tokens=64,
    )
    # The tool sleeps 30 s; the server's timeout_s of 2 ends the call with an error instead.
    (timed,) = [i for i in r.output if i.type == "mcp_call"]
    assert timed.error is not None and "timed out" in json.dumps(timed.error.model_dump())


def test_broken_and_killed_servers(mcp_server: RunningServer) -> None:
    listed = httpx.get(f"{mcp_server.url}/v1/mcp/tools", timeout=60).json()["data"]
    states = {s["name"]: s for s in listed}
    assert states["broken"]["status"] == "failed" and states["broken"]["error"]
    assert states["test"]["status"] == "running"
    assert {"add", "pid"} <= {t["name"] for t in states["test"]["tools"]}
    c = mcp_server.client()
    ask = {
        "model": STARTER_ID,
        "input": "Give the pid.",
        "tools": [tool()],
        "max_output_tokens": 64,
    }
    first = c.responses.create(**ask, tool_choice=force("pid"))  # type: ignore[call-overload]
    pid_call = next(i for i in first.output if i.type == "mcp_call")  # the forced one
    assert pid_call.error is None and pid_call.arguments.strip() in ("{}", "{ }"), pid_call
    os.kill(int(pid_call.output), signal.SIGKILL)
    time.sleep(0.5)
    again = c.responses.create(**ask, tool_choice=force("pid"))  # type: ignore[call-overload]
    second = next(i for i in again.output if i.type == "mcp_call")
    if second.error is not None:  # the call that found it dead; the next one restarts it
        again = c.responses.create(**ask, tool_choice=force("pid"))  # type: ignore[call-overload]
        second = next(i for i in again.output if i.type == "mcp_call")
    assert second.error is None and second.output != pid_call.output


def test_a_streamable_http_server(mcp_server: RunningServer) -> None:
    r = mcp_server.client().responses.create(
        model=STARTER_ID,
        input="Look up alpha.",
        tools=[tool("web")],  # type: ignore[list-item]
        tool_choice=force("lookup", "web"),  # type: ignore[arg-type]
        temperature=0,
        max_output_tokens=64,
    )
    (looked,) = [i for i in r.output if i.type == "mcp_call"]
    assert looked.server_label == "web" and looked.error is None and looked.output


def test_a_conversation_survives_a_restart(tmp_path: Path, starter_model: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"test": STDIO}}))
    data = tmp_path / "data"
    first = start_server(tmp_path, starter_model, "--mcp-config", str(config), data_dir=data)
    try:
        r = first.client().responses.create(
            model=STARTER_ID,
            input=ASK,
            tools=[tool()],  # type: ignore[list-item]
            tool_choice=force("add"),  # type: ignore[arg-type]
            max_output_tokens=64,
        )
    finally:
        first.stop()
    again = start_server(tmp_path, starter_model, "--mcp-config", str(config), data_dir=data)
    try:
        follow = again.client().responses.create(
            model=STARTER_ID,
            input="And 4 + 4?",
            previous_response_id=r.id,
            tools=[tool()],  # type: ignore[list-item]
            tool_choice=force("add"),  # type: ignore[arg-type]
            max_output_tokens=64,
        )
        kinds = [i.type for i in follow.output]
        assert "mcp_list_tools" not in kinds  # listed in the first turn, before the restart
        assert "mcp_call" in kinds
    finally:
        again.stop()


def test_the_library_session(tmp_path: Path, starter_model: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"test": STDIO}}))
    (tmp_path / "c.toml").touch()

    async def main() -> None:
        async with Hearth(
            models_dir=tmp_path / "models",
            model=[str(starter_model)],
            config=tmp_path / "c.toml",
            data_dir=tmp_path / "data",
            mcp_config=config,
        ) as h:
            session = h.session(model=STARTER_ID, instructions="Use tools.", mcp="all")
            first = await session.send(ASK, tool_choice=force("add"), max_output_tokens=64)
            assert any(i.type == "mcp_call" for i in first.output)
            kinds = [e.type async for e in session.stream("Thanks.", max_output_tokens=8)]
            assert kinds[0] == "response.created" and kinds[-1] in (
                "response.completed",
                "response.incomplete",
            )
            assert session.previous_response_id != first.id

    asyncio.run(main())
