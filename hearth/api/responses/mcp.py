"""`mcp` tools in a Responses request: which configured servers (and which of their tools) the
model is offered, whether a call needs the client's approval, and running a call through the
MCP manager into an `mcp_call` item's output or error."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from hearth.api.responses import protocol as wire
from hearth.api.responses.items import Item
from hearth.errors import InvalidRequestError
from hearth.mcp.manager import McpCallError, McpManager, McpTool
from hearth.pipeline.request import Tool

log = logging.getLogger("hearth.api")


@dataclass(frozen=True, slots=True)
class Binding:
    """One MCP tool offered to the model as a function of the same name."""

    server: str  # the manager's name for the server
    label: str  # the request's server_label, as items name it
    tool: McpTool
    approval: bool  # the client approves each call first


@dataclass(slots=True)
class Setup:
    """The request's MCP tools, and the listings to report (`mcp_list_tools` items): the
    tools, or why a server could not list them."""

    bindings: dict[str, Binding] = field(default_factory=dict)
    listings: list[tuple[str, list[McpTool], str | None]] = field(default_factory=list)

    def tools(self) -> list[Tool]:
        return [
            Tool(
                name=name,
                description=b.tool.description,
                parameters=b.tool.input_schema or {"type": "object"},
                param="tools",
            )
            for name, b in self.bindings.items()
        ]


def _names(value: list[str] | dict[str, Any] | None) -> set[str] | None:
    """allowed_tools / tool_names as a list, or as `{"tool_names": [...]}`."""
    if value is None:
        return None
    if isinstance(value, dict):
        names = value.get("tool_names")
        return set(names) if isinstance(names, list) else None
    return set(value)


def needs_approval(policy: wire.ApprovalPolicy | None, tool: str) -> bool:
    """OpenAI's rule: calls need approval unless the policy says `never` (for all tools, or
    for this one)."""
    if policy == "never":
        return False
    if isinstance(policy, dict):
        never = _names(policy.get("never"))
        if never is not None and tool in never:
            return False
        always = _names(policy.get("always"))
        if always is not None and tool in always:
            return True
        return never is None  # only an `always` list: the others run freely
    return True


async def setup(
    request: wire.ResponseCreateRequest,
    manager: McpManager,
    taken: set[str],
    earlier: list[Item],
) -> Setup:
    """Resolve the request's `mcp` tools (or, with no `tools` field, the auto-injected
    servers: an explicit `[]` asks for none), list their tools, and bind each to a function
    name not already `taken`."""
    params = [t for t in request.tools or [] if isinstance(t, wire.McpToolParam)]
    if request.tools is None:
        params = [
            wire.McpToolParam(type="mcp", server_label=name, require_approval="never")
            for name in manager.auto_inject()
        ]
    listed = {i.get("server_label") for i in earlier if i.get("type") == "mcp_list_tools"}
    out = Setup()
    for i, param in enumerate(params):
        if param.server_url is not None:
            server = await manager.url_server(param.server_url, param.headers)
        elif manager.has(param.server_label):
            server = param.server_label
        else:
            raise InvalidRequestError(
                f"no MCP server named '{param.server_label}' in the MCP config",
                param=f"tools.{i}.server_label",
            )
        try:
            tools = await manager.list_tools(server)
        except McpCallError as exc:
            log.warning("mcp server %s: cannot list tools: %s", server, exc.message)
            out.listings.append((param.server_label, [], exc.message))
            continue
        allowed = _names(param.allowed_tools)
        tools = [t for t in tools if allowed is None or t.name in allowed]
        for tool in tools:
            if tool.name in taken or tool.name in out.bindings:
                log.warning("mcp tool %s of %s hidden: the name is taken", tool.name, server)
                continue
            approval = needs_approval(param.require_approval, tool.name)
            out.bindings[tool.name] = Binding(server, param.server_label, tool, approval)
        if param.server_label not in listed:
            out.listings.append((param.server_label, tools, None))
    return out


def listing_item(item_id: str, label: str, tools: list[McpTool], error: str | None) -> Item:
    return {
        "type": "mcp_list_tools",
        "id": item_id,
        "server_label": label,
        "tools": [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in tools
        ],
        "error": error,
    }


def _error(exc: McpCallError) -> dict[str, Any]:
    """The SDK's mcp_call error shapes."""
    if exc.kind == "mcp_tool_execution_error":
        return {"type": exc.kind, "content": [{"type": "text", "text": exc.message}]}
    return {
        "type": exc.kind,
        "code": -32000 if exc.kind == "mcp_protocol_error" else 500,
        "message": exc.message,
    }


async def call(
    manager: McpManager, binding: Binding, arguments: str
) -> tuple[str | None, dict[str, Any] | None]:
    """(output, None), or (None, the error) for a call the model made."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        return None, _error(
            McpCallError("mcp_tool_execution_error", "the arguments are not a JSON object")
        )
    try:
        return await manager.call_tool(binding.server, binding.tool.name, args), None
    except McpCallError as exc:
        return None, _error(exc)
