"""Wire models of Hearth's MCP routes (ours: OpenAI has no such listing)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class McpToolInfo(BaseModel):
    """One tool, as the server describes it."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    server: str


class McpServerInfo(BaseModel):
    """One configured server: its status, the error that failed it, its tools."""

    name: str
    transport: Literal["stdio", "http"]
    status: Literal["running", "stopped", "failed"]
    error: str | None = None
    tools: list[McpToolInfo]


class McpServerList(BaseModel):
    """GET /v1/mcp/tools."""

    object: Literal["list"] = "list"
    data: list[McpServerInfo]
