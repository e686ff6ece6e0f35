"""POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.completions.protocol import Completion, CompletionRequest
from hearth.api.deps import json_response, runtime
from hearth.api.streaming import EventStreamResponse, cancel_on_disconnect, stream_responses

router = APIRouter()


@router.post(
    "/v1/completions", response_model=Completion, responses=stream_responses(EventStreamResponse)
)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).completions.create(body))
    if isinstance(result, Completion):
        return json_response(result)
    return EventStreamResponse(result)
