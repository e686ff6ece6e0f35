"""POST /v1/responses and the stored responses' routes; the stream's named SSE events."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from hearth.api.deps import json_response, runtime
from hearth.api.responses import protocol as wire
from hearth.api.streaming import NamedEventStream, cancel_on_disconnect, stream_responses
from hearth.errors import HearthError

router = APIRouter()
IGNORED_TOOLS_HEADER = "x-hearth-ignored-tools"


class ResponsesEventStream(NamedEventStream):
    """`event: <type>` lines as OpenAI sends them. Failures are `response.failed` events made
    by the translator; this `error` event is for what escapes it (a bug, or a replay)."""

    def frame_error(self, exc: HearthError) -> bytes:
        body = {"type": "error", "code": exc.code, "message": exc.message, "param": exc.param}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


@router.post(
    "/v1/responses", response_model=wire.Response, responses=stream_responses(ResponsesEventStream)
)
async def create_response(body: wire.ResponseCreateRequest, request: Request) -> Response:
    created = await cancel_on_disconnect(request, runtime(request).responses.create(body))
    if isinstance(created.result, wire.Response):
        response: Response = json_response(created.result)
    else:
        response = ResponsesEventStream(created.result)
    if created.ignored_tools:
        value = ", ".join(sorted(set(created.ignored_tools)))
        response.raw_headers.append((IGNORED_TOOLS_HEADER.encode(), value.encode()))
    return response


@router.get(
    "/v1/responses/{response_id}",
    response_model=wire.Response,
    responses=stream_responses(ResponsesEventStream),
)
async def retrieve_response(response_id: str, request: Request, stream: bool = False) -> Response:
    service = runtime(request).responses
    if stream:
        return ResponsesEventStream(await service.replay(response_id))
    return json_response(await service.retrieve(response_id))


@router.delete("/v1/responses/{response_id}", response_model=wire.DeletedResponse)
async def delete_response(response_id: str, request: Request) -> Response:
    return json_response(await runtime(request).responses.delete(response_id))


@router.get("/v1/responses/{response_id}/input_items", response_model=wire.InputItemList)
async def list_input_items(
    response_id: str,
    request: Request,
    after: str | None = None,
    before: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    items = await runtime(request).responses.input_items(
        response_id, after=after, before=before, limit=limit, order=order
    )
    return json_response(items)


@router.post("/v1/responses/{response_id}/cancel", response_model=wire.Response)
async def cancel_response(response_id: str, request: Request) -> Response:
    return json_response(await runtime(request).responses.cancel(response_id))
