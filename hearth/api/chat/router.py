"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.chat.protocol import ChatCompletion, ChatCompletionRequest
from hearth.api.deps import json_response, runtime
from hearth.api.streaming import EventStreamResponse, cancel_on_disconnect, stream_responses

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=stream_responses(EventStreamResponse),
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).chat.create(body))
    if isinstance(result, ChatCompletion):
        return json_response(result)
    return EventStreamResponse(result)
