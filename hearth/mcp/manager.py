"""McpManager: the MCP servers of mcp.json, started on first use, kept running, restarted
after they die, stopped with Hearth. The protocol is the `mcp` SDK's (`mcp.Client`).

Each running server is one asyncio task that owns the SDK's `async with` blocks (anyio's
cancel scopes must be entered and left in the same task) and holds them open until it is
told to stop or its connection ends. Callers, in their own tasks, use the connected
`Client` directly: the SDK correlates concurrent requests, wakes every waiter with
CONNECTION_CLOSED when the connection goes, and sends `notifications/cancelled` for a call
whose caller was cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit

import anyio

from hearth.errors import InvalidRequestError, NotFoundError
from hearth.mcp.config import ServerConfig

# The SDK takes half a second to import: only a server that starts (or a call) needs it, so
# a Hearth with no MCP servers starts without it. Each use imports it where it runs.
if TYPE_CHECKING:
    import httpx2
    import mcp_types
    from mcp import Client
    from mcp.client import Transport

log = logging.getLogger("hearth.mcp")

ErrorKind = Literal["mcp_protocol_error", "mcp_tool_execution_error", "http_error"]
MAX_URL_SERVERS = 16  # servers named by URL in requests, kept running; the oldest goes first
MAX_TOOL_PAGES = 100  # a server whose tools/list never ends cannot hang Hearth
# Starting takes longer than a quick call (an interpreter, npx fetching a package), so a
# server's timeout_s bounds its start only when it is longer than this.
MIN_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class McpTool:
    """One tool a server offers."""

    server: str
    name: str
    description: str | None
    input_schema: dict[str, Any]


@dataclass
class ServerState:
    """What /v1/mcp/tools shows of one server."""

    name: str
    transport: Literal["stdio", "http"]
    status: Literal["running", "stopped", "failed"]
    error: str | None
    tools: list[McpTool]


class McpCallError(Exception):
    """kind: OpenAI's mcp_call error types."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


class _Server:
    """One server's connection: the task that owns it, and what it last reported."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.status: Literal["running", "stopped", "failed"] = "stopped"
        self.error: str | None = None
        self.tools: list[McpTool] = []
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._http_status: int | None = None  # the last HTTP error status this connection saw

    def state(self) -> ServerState:
        return ServerState(
            self.config.name, self.config.transport, self.status, self.error, list(self.tools)
        )

    async def client(self) -> Client:
        """The connected client, starting the server first when it is not running."""
        async with self._lock:
            if self._client is not None:
                return self._client
            await self._join()
            return await self._start()

    async def _start(self) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        # A start nobody waits for any more (timed out, cancelled) must not warn at exit.
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._stop = asyncio.Event()
        self._http_status = None
        self._task = asyncio.create_task(
            self._run(ready, self._stop), name=f"mcp:{self.config.name}"
        )
        limit = max(self.config.timeout_s, MIN_START_TIMEOUT_S)
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(ready)
        except TimeoutError:
            await self._join()
            message = f"did not start within {limit:g}s"
            self._fail(message)
            raise McpCallError("mcp_protocol_error", message) from None
        except asyncio.CancelledError:
            await self._join()  # a caller that leaves mid-start leaves no half-started server
            raise

    async def _run(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        name = self.config.name
        gone = False

        def went_away() -> None:
            nonlocal gone
            gone = True
            self._client = None
            stop.set()

        from mcp import Client

        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack, went_away)
                client = await stack.enter_async_context(Client(transport, cache=None))
                self.tools = await self._list(client)
                self._client, self.status, self.error = client, "running", None
                log.info("MCP server %s running: %d tools", name, len(self.tools))
                ready.set_result(client)
                await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:  # any failure is this server's, never Hearth's
            error = self.describe(exc)
            self._fail(error.message)
            if ready.done():
                log.error("MCP server %s stopped: %s", name, error.message)
            else:
                log.error("MCP server %s failed to start: %s", name, error.message)
                ready.set_exception(error)
        finally:
            self._client = None
        if self.status == "running":  # the wait above ended: stopped, or the server went away
            if gone:
                self._fail("the server closed its connection (exited?)")
                log.warning("MCP server %s exited; it restarts on next use", name)
            else:
                self.status, self.tools = "stopped", []

    async def _transport(
        self, stack: contextlib.AsyncExitStack, went_away: Callable[[], None]
    ) -> Transport:
        import httpx2
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        if self.config.url is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=self.config.headers,
                    # The SDK's defaults: a response stream may stay open for minutes.
                    timeout=httpx2.Timeout(30, read=300),
                    event_hooks={"response": [self._saw_response]},
                )
            )
            return streamable_http_client(self.config.url, http_client=http)
        params = StdioServerParameters(
            command=self.config.command or "",
            args=list(self.config.args),
            env=self.config.env,
            cwd=self.config.cwd,
        )
        errlog = _log_pipe(self.config.name)
        stack.callback(errlog.close)  # after the process is gone: the reader then sees EOF
        return _watched(stdio_client(params, errlog=errlog), went_away)

    async def _saw_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.saw_status(response.status_code)

    def saw_status(self, status: int | None) -> None:
        """Forget (None) or note an HTTP error status, for the next failure's kind."""
        self._http_status = status

    async def _list(self, client: Client) -> list[McpTool]:
        """Every page of tools/list; only allowed_tools, when the config names them."""
        allowed = self.config.allowed_tools
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += [
                McpTool(self.config.name, t.name, t.description, dict(t.input_schema))
                for t in page.tools
                if allowed is None or t.name in allowed
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    def _fail(self, message: str) -> None:
        self.status, self.error, self.tools = "failed", message, []

    def describe(self, exc: BaseException) -> McpCallError:
        """A failure of the connection as an mcp_call error: HTTP statuses are http_error."""
        import httpx2

        leaves = list(_leaves(exc))
        message = "; ".join(_message(e) for e in leaves) or type(exc).__name__
        status = self._http_status
        for leaf in leaves:
            if isinstance(leaf, httpx2.HTTPStatusError):
                status = leaf.response.status_code
        if status is not None:
            return McpCallError("http_error", f"HTTP {status}: {message}")
        return McpCallError("mcp_protocol_error", message)

    async def stop(self) -> None:
        """Stop the server (its process is gone when this returns)."""
        async with self._lock:
            await self._join()
            if self.status == "running":
                self.status = "stopped"

    async def _join(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        # The SDK's own shutdown is bounded (stdin closed, then SIGTERM, then SIGKILL);
        # asyncio.wait neither raises the task's end nor swallows our caller's cancellation.
        await asyncio.wait({task}, timeout=15)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        if self.status == "running":
            self.status, self.tools = "stopped", []

    async def lost(self, client: Client, exc: BaseException) -> McpCallError:
        """A call found this connection closed: let it go (the next use starts the server
        again) and say why, from the connection's own end where it has one."""
        if self._client is client:
            self._client = None
            self._stop.set()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=5)
        if self.status == "failed" and self.error:
            return McpCallError(self.describe(exc).kind, self.error)
        return self.describe(exc)


class McpManager:
    """Every configured MCP server, by name, plus servers requests named by URL."""

    def __init__(self, configs: dict[str, ServerConfig], *, allow_urls: list[str] | None = None):
        self._servers = {name: _Server(config) for name, config in configs.items()}
        self._allow = {_origin(url) for url in allow_urls or []}
        self._url_servers: OrderedDict[str, _Server] = OrderedDict()
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()  # (server, ok)

    async def start(self, *, eager: bool = False) -> None:
        """With eager, start every enabled server now; failures are recorded, never raised."""
        if not eager:
            return
        servers = [s for s in self._servers.values() if s.config.enabled]
        await asyncio.gather(*(self._try_start(s) for s in servers))

    async def _try_start(self, server: _Server) -> None:
        with contextlib.suppress(McpCallError):
            await server.client()

    async def close(self) -> None:
        """Stop every server; their processes are gone when this returns."""
        servers = [*self._servers.values(), *self._url_servers.values()]
        await asyncio.gather(*(s.stop() for s in servers))

    def has(self, name: str) -> bool:
        """Whether a request may use this name: an enabled configured server, or a URL one."""
        server = self._servers.get(name)
        return (server is not None and server.config.enabled) or name in self._url_servers

    def auto_inject(self) -> list[str]:
        """Names of the enabled servers offered to requests that name no tools."""
        return [n for n, s in self._servers.items() if s.config.enabled and s.config.auto_inject]

    def timeout(self, name: str) -> float:
        """Seconds one call to this server may take."""
        return self._get(name).config.timeout_s

    async def list_tools(self, name: str) -> list[McpTool]:
        """The server's tools (starting it if need be), filtered by its allowed_tools."""
        server = self._get(name)
        await server.client()
        return list(server.tools)

    async def call_tool(self, name: str, tool: str, arguments: dict[str, Any]) -> str:
        """Call a tool; its text content, joined. Failures are McpCallError."""
        try:
            text = await self._call_tool(name, tool, arguments)
        except McpCallError:
            self.calls[name, "error"] += 1
            raise
        self.calls[name, "ok"] += 1
        return text

    async def _call_tool(self, name: str, tool: str, arguments: dict[str, Any]) -> str:
        import mcp_types
        from mcp import MCPError

        server = self._get(name)
        allowed = server.config.allowed_tools
        if allowed is not None and tool not in allowed:
            raise McpCallError("mcp_protocol_error", f"tool {tool!r} is not allowed on {name!r}")
        client = await server.client()
        timeout = server.config.timeout_s
        server.saw_status(None)
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                message = f"timed out after {timeout:g}s"
                raise McpCallError("mcp_tool_execution_error", message) from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                raise await server.lost(client, exc) from None
            raise server.describe(exc) from None
        except Exception as exc:  # a reply the SDK could not read, a transport failure
            raise server.describe(exc) from None
        text = _text(result)
        if result.is_error:
            raise McpCallError("mcp_tool_execution_error", text or "the tool reported an error")
        return text

    async def url_server(self, url: str, headers: dict[str, str] | None) -> str:
        """A server a request names by URL: refused unless --mcp-allow-urls lists its origin.
        Returns the name to use with list_tools and call_tool."""
        if urlsplit(url).scheme not in ("http", "https") or _origin(url) not in self._allow:
            raise InvalidRequestError(
                f"MCP server_url {url!r} is not allowed: only servers in the MCP config, or "
                "URLs whose origin --mcp-allow-urls lists",
                param="tools",
            )
        # One connection per URL and headers (a token in them is a different identity).
        digest = hashlib.sha256(json.dumps([url, headers], sort_keys=True).encode()).hexdigest()
        name = f"url:{digest[:16]}"
        if name in self._url_servers:
            self._url_servers.move_to_end(name)
            return name
        self._url_servers[name] = _Server(ServerConfig(name=name, url=url, headers=headers))
        while len(self._url_servers) > MAX_URL_SERVERS:
            _, oldest = self._url_servers.popitem(last=False)
            await oldest.stop()
        return name

    async def states(self) -> list[ServerState]:
        """Every configured server as it stands; one not started is stopped, with no tools."""
        return [server.state() for server in self._servers.values()]

    async def restart(self, name: str) -> ServerState:
        """Stop the server and start it again (a failure shows in the state)."""
        server = self._get(name)
        await server.stop()
        if server.config.enabled:
            await self._try_start(server)
        return server.state()

    def _get(self, name: str) -> _Server:
        server = self._servers.get(name) or self._url_servers.get(name)
        if server is None:
            raise NotFoundError(f"no MCP server named {name!r}", param="server_label")
        if not server.config.enabled:
            raise NotFoundError(f"MCP server {name!r} is disabled", param="server_label")
        return server


def _text(result: mcp_types.CallToolResult) -> str:
    import mcp_types

    parts = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(block.model_dump_json(by_alias=True, exclude_none=True))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _message(exc: BaseException) -> str:
    from mcp import MCPError

    if isinstance(exc, MCPError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        # "[Errno 2] No such file or directory: 'x'" reads better without the number.
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _origin(url: str) -> str:
    """scheme://host:port, default ports written out, so equal origins compare equal."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _log_pipe(name: str) -> TextIO:
    """A file the server's stderr goes to; a thread logs each line with the server's name."""
    read_fd, write_fd = os.pipe()

    def forward() -> None:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line := line.rstrip():
                    log.info("[%s] %s", name, line)

    threading.Thread(target=forward, name=f"mcp-stderr:{name}", daemon=True).start()
    return os.fdopen(write_fd, "w")


@contextlib.asynccontextmanager
async def _watched(
    transport: Transport, on_close: Callable[[], None]
) -> AsyncIterator[tuple[Any, Any]]:
    """The transport's streams, calling on_close when the server's side ends (a stdio
    server that exits), so an idle server that died is restarted on its next use."""
    from mcp.shared.message import SessionMessage

    async with transport as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            async with send:
                async for item in read:
                    await send.send(item)
            on_close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                yield receive, write
            finally:
                tg.cancel_scope.cancel()
