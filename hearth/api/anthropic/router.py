"""POST /v1/messages and /v1/messages/count_tokens; Anthropic's SSE framing."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.anthropic import protocol as wire
from hearth.api.deps import json_response, runtime
from hearth.api.streaming import NamedEventStream, cancel_on_disconnect, stream_responses
from hearth.errors import HearthError

router = APIRouter()


class AnthropicEventStream(NamedEventStream):
    """Named SSE events, `ping` as the keep-alive: the stream ends after message_stop, or
    after an `error` event."""

    keep_alive = b'event: ping\ndata: {"type": "ping"}\n\n'

    def frame_error(self, exc: HearthError) -> bytes:
        return b"event: error\ndata: " + json.dumps(wire.error_body(exc)).encode() + b"\n\n"


@router.post(
    "/v1/messages", response_model=wire.Message, responses=stream_responses(AnthropicEventStream)
)
async def create_message(body: wire.MessageCreateParams, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).messages.create(body))
    if isinstance(result, wire.Message):
        return json_response(result)
    return AnthropicEventStream(result)


@router.post("/v1/messages/count_tokens", response_model=wire.MessageTokensCount)
async def count_message_tokens(body: wire.MessageCountTokensParams, request: Request) -> Response:
    count = await cancel_on_disconnect(request, runtime(request).messages.count_tokens(body))
    response = json_response(count)
    if count.estimated:
        response.headers["X-Hearth-Token-Count"] = "estimated"
    return response
