"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.deps import json_response, runtime
from hearth.api.embeddings.protocol import CreateEmbeddingResponse, EmbeddingRequest
from hearth.api.streaming import cancel_on_disconnect

router = APIRouter()


@router.post("/v1/embeddings", response_model=CreateEmbeddingResponse)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).embeddings.create(body))
    return json_response(result)
