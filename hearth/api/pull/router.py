"""POST /api/pull: NDJSON progress while streaming (the default), else one final object.
Closing the connection cancels the download (its `.partial` file is kept for a resume)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.deps import runtime
from hearth.api.ndjson import NdjsonResponse
from hearth.api.pull import service
from hearth.api.pull.protocol import PullRequest, PullStatus
from hearth.api.streaming import cancel_on_disconnect, stream_responses

router = APIRouter()


@router.post("/api/pull", response_model=PullStatus, responses=stream_responses(NdjsonResponse))
async def pull(body: PullRequest, request: Request) -> Response:
    """Download a model; errors found while planning are plain HTTP errors."""
    rt = runtime(request)
    plan = await cancel_on_disconnect(request, service.plan(rt, body))
    if body.stream:
        return NdjsonResponse(service.progress(rt, plan))

    async def last() -> PullStatus:
        final = PullStatus(status="success")
        async for status in service.progress(rt, plan):
            final = status
        return final

    final = await cancel_on_disconnect(request, last())
    # Like the stream's lines: fields that do not apply are left out.
    return Response(final.model_dump_json(exclude_none=True), media_type="application/json")
