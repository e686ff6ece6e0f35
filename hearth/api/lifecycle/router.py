"""GET /api/ps, POST /api/load, POST /api/unload, DELETE /api/delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.deps import json_response, runtime
from hearth.api.lifecycle import service
from hearth.api.lifecycle.protocol import (
    DeleteRequest,
    DeleteResponse,
    LoadRequest,
    LoadResponse,
    ProcessList,
    UnloadRequest,
    UnloadResponse,
)

router = APIRouter()


@router.get("/api/ps", response_model=ProcessList)
async def list_processes(request: Request) -> Response:
    """Loaded models, their memory and idle timers."""
    return json_response(service.list_processes(runtime(request)))


@router.post("/api/load", response_model=LoadResponse)
async def load(body: LoadRequest, request: Request) -> Response:
    """Load a model now."""
    return json_response(await service.load(runtime(request), body))


@router.post("/api/unload", response_model=UnloadResponse)
async def unload(body: UnloadRequest, request: Request) -> Response:
    """Unload a model now, or when its requests end."""
    return json_response(await service.unload(runtime(request), body))


@router.delete("/api/delete", response_model=DeleteResponse)
async def delete(body: DeleteRequest, request: Request) -> Response:
    """Delete a model's files."""
    return json_response(await service.delete(runtime(request), body))
