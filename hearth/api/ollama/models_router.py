"""Ollama's model management: GET /api/tags, POST /api/show, /api/copy, /api/create, and
HEAD/POST /api/blobs/sha256:<hex> (the upload route is exempt from the body size limit and
the JSON checks: its body is a GGUF of gigabytes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from hearth.api.deps import runtime
from hearth.api.ndjson import NdjsonResponse
from hearth.api.ollama import models_service as service
from hearth.api.ollama.models_protocol import (
    CopyRequest,
    CreateRequest,
    ListResponse,
    ShowRequest,
    ShowResponse,
    StatusResponse,
)
from hearth.api.streaming import cancel_on_disconnect, stream_responses

router = APIRouter()


def _json(model: BaseModel) -> Response:
    # Like Ollama's omitempty: fields that do not apply are left out.
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


@router.get("/api/tags", response_model=ListResponse)
async def tags(request: Request) -> Response:
    """Every usable model under each of its names."""
    return _json(service.tags(runtime(request)))


@router.post("/api/show", response_model=ShowResponse)
async def show(body: ShowRequest, request: Request) -> Response:
    """A model's details, metadata, template, settings and capabilities."""
    return _json(await service.show(runtime(request), body))


@router.post("/api/copy")
async def copy(body: CopyRequest, request: Request) -> Response:
    """Another name for a model; 200 with no body, as Ollama answers."""
    service.copy(runtime(request), body)
    return Response(status_code=200)


@router.post(
    "/api/create", response_model=StatusResponse, responses=stream_responses(NdjsonResponse)
)
async def create(body: CreateRequest, request: Request) -> Response:
    """A model from another one or from an uploaded GGUF: status lines, or the last one."""
    statuses = await cancel_on_disconnect(request, service.create(runtime(request), body))
    if body.stream:
        return NdjsonResponse(service.lines(statuses))
    return _json(statuses[-1])


@router.head("/api/blobs/{digest}")
async def has_blob(digest: str, request: Request) -> Response:
    """200 when the upload is here, else 404."""
    return Response(status_code=200 if service.has_blob(runtime(request), digest) else 404)


# The route reads its body itself (streamed to disk, never parsed): declared for the document.
_UPLOAD_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@router.post("/api/blobs/{digest}", openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_blob(digest: str, request: Request) -> Response:
    """The raw body, stored once its sha256 matches: 201, or 200 if it was already here."""
    length = request.headers.get("content-length")
    size = int(length) if length is not None and length.isdigit() else None
    created = await service.upload_blob(runtime(request), digest, request.stream(), size)
    return Response(status_code=201 if created else 200)
