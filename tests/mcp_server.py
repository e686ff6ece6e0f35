"""A small MCP server for the tests, built with the SDK's MCPServer (v1's FastMCP).

python -m tests.mcp_server              stdio
python -m tests.mcp_server http PORT    streamable HTTP on 127.0.0.1:PORT, path /mcp
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("hearth-tests")

TABLE = {"alpha": "first", "beta": "second"}


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def lookup(key: str) -> str:
    """Look a key up in a small table."""
    return TABLE.get(key, f"no entry for {key}")


@server.tool()
async def slow() -> str:
    """Sleep for 30 seconds, past any test's timeout."""
    await anyio.sleep(30)
    return "done"


@server.tool()
def fail() -> str:
    """Always raise."""
    raise RuntimeError("fail was called")


@server.tool()
def pid() -> int:
    """This server's process id, so a test can kill it."""
    return os.getpid()


ROOT = Path(__file__).resolve().parents[1]


def stdio_entry(**extra: object) -> dict[str, object]:
    """This server as an mcp.json entry (stdio)."""
    args = ["-m", "tests.mcp_server"]
    return {"command": sys.executable, "args": args, "cwd": str(ROOT), **extra}


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """This server over streamable HTTP on a free loopback port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", "http", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the MCP test server exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP test server did not listen within 30 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> None:
    # A line on stderr at start, for the tests of Hearth's log.
    print(f"hearth test server starting ({' '.join(argv) or 'stdio'})", file=sys.stderr, flush=True)
    if argv[:1] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
