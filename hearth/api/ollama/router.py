"""Ollama's generation routes (NDJSON streams by default), /api/version, and the `/` probe."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from hearth import ui
from hearth.api.deps import json_response, runtime
from hearth.api.ndjson import NdjsonResponse
from hearth.api.ollama import protocol as wire
from hearth.api.ollama.service import Lines
from hearth.api.streaming import cancel_on_disconnect, stream_responses

router = APIRouter()


def _answer(result: BaseModel | Lines) -> Response:
    return json_response(result) if isinstance(result, BaseModel) else NdjsonResponse(result)


@router.post(
    "/api/chat", response_model=wire.ChatResponse, responses=stream_responses(NdjsonResponse)
)
async def chat(body: wire.ChatRequest, request: Request) -> Response:
    return _answer(await cancel_on_disconnect(request, runtime(request).ollama.chat(body)))


@router.post(
    "/api/generate",
    response_model=wire.GenerateResponse,
    responses=stream_responses(NdjsonResponse),
)
async def generate(body: wire.GenerateRequest, request: Request) -> Response:
    return _answer(await cancel_on_disconnect(request, runtime(request).ollama.generate(body)))


@router.post("/api/embed", response_model=wire.EmbedResponse)
async def embed(body: wire.EmbedRequest, request: Request) -> Response:
    return json_response(await cancel_on_disconnect(request, runtime(request).ollama.embed(body)))


@router.post("/api/embeddings", response_model=wire.EmbeddingsResponse)
async def embeddings(body: wire.EmbeddingsRequest, request: Request) -> Response:
    work = runtime(request).ollama.embeddings_legacy(body)
    return json_response(await cancel_on_disconnect(request, work))


@router.get("/api/version", response_model=wire.VersionResponse)
async def version(request: Request) -> Response:
    return json_response(runtime(request).ollama.version())


# GET and HEAD registered apart: one route with both methods would give the document two
# operations of the same id.
@router.get("/", response_class=PlainTextResponse)
@router.head("/", response_class=PlainTextResponse)
async def probe(request: Request) -> Response:
    """What Ollama answers at its root, so clients' "is it running?" probes succeed; a
    browser asking for a page gets the web UI instead."""
    if ui.wants_page(request):
        return ui.index()
    return PlainTextResponse("Ollama is running")
