"""The MCP servers as the routes and the library show them; no HTTP here."""

from __future__ import annotations

import asyncio
import contextlib

from hearth.api.mcp.protocol import McpServerInfo, McpServerList, McpToolInfo
from hearth.mcp.manager import McpCallError, McpManager, ServerState


def server_info(state: ServerState) -> McpServerInfo:
    """A manager's state on the wire."""
    return McpServerInfo(
        name=state.name,
        transport=state.transport,
        status=state.status,
        error=state.error,
        tools=[
            McpToolInfo(
                name=t.name, description=t.description, input_schema=t.input_schema, server=t.server
            )
            for t in state.tools
        ],
    )


async def list_servers(mcp: McpManager) -> McpServerList:
    """Every configured server. Enabled ones not running are started first (all at once), so
    their tools show; one that cannot start shows as failed, with its error."""

    async def start(name: str) -> None:
        with contextlib.suppress(McpCallError):
            await mcp.list_tools(name)

    states = await mcp.states()
    await asyncio.gather(
        *(start(s.name) for s in states if s.status != "running" and mcp.has(s.name))
    )
    return McpServerList(data=[server_info(s) for s in await mcp.states()])


async def restart(mcp: McpManager, name: str) -> McpServerInfo:
    """Stop one server and start it again; unknown names are NotFoundError (404)."""
    return server_info(await mcp.restart(name))
