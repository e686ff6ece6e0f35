"""`hearth serve --mcp-config`: the servers of the file listed with their tools, their stderr in
Hearth's log, stopped with Hearth; a malformed file stops start-up with its line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_server
from tests.mcp_server import stdio_entry

pytestmark = pytest.mark.e2e


def mcp_children(pid: int) -> list[int]:
    """Hearth's child processes running the suite's MCP server."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"tests.mcp_server" in cmdline:
                found.append(int(child))
    return found


def test_serve_lists_the_mcp_tools(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    servers = {"test": stdio_entry(), "missing": {"command": str(tmp_path / "nope")}}
    config.write_text(json.dumps({"mcpServers": servers}))
    server = start_server(tmp_path, None, "--mcp-config", str(config), "--mcp-eager")
    try:
        r = httpx.get(f"{server.url}/v1/mcp/tools", timeout=60)
        assert r.status_code == 200, r.text
        by_name = {s["name"]: s for s in r.json()["data"]}
        assert by_name["test"]["status"] == "running"
        assert {"add", "lookup", "slow", "fail"} <= {t["name"] for t in by_name["test"]["tools"]}
        assert by_name["missing"]["status"] == "failed"
        assert "No such file or directory" in by_name["missing"]["error"]
        assert "[test] hearth test server starting (stdio)" in server.output
        children = mcp_children(server.process.pid)
        assert len(children) == 1, server.output
    finally:
        server.stop()
    assert not alive(children[0]), "the MCP server outlived Hearth"


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    # A zombie waiting for its parent's reaper is gone all the same.
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_a_malformed_file_stops_start_up_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {\n  "a": {"command": "x",}\n}}\n')
    server = start_server(tmp_path, None, "--mcp-config", str(config), wait_ready=False)
    try:
        assert server.process.wait(timeout=60) == 1, server.output
    except subprocess.TimeoutExpired:
        server.stop()
        raise
    assert f"{config} line 2, column" in server.output
    assert "Traceback" not in server.output
