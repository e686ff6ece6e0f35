"""GET /v1/mcp/tools and POST /v1/mcp/servers/{name}/restart."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.deps import json_response, runtime
from hearth.api.mcp import service
from hearth.api.mcp.protocol import McpServerInfo, McpServerList

router = APIRouter()


@router.get("/v1/mcp/tools", response_model=McpServerList)
async def list_tools(request: Request) -> Response:
    return json_response(await service.list_servers(runtime(request).mcp))


@router.post("/v1/mcp/servers/{name}/restart", response_model=McpServerInfo)
async def restart(name: str, request: Request) -> Response:
    return json_response(await service.restart(runtime(request).mcp, name))
