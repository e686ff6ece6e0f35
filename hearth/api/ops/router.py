"""GET /metrics (Prometheus) and GET /api/requests (the request log, for the UI)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from hearth.api.deps import runtime
from hearth.errors import NotFoundError
from hearth.observe.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus' text format: request, token and latency counters and histograms, and the
    loaded models' queues, sequences, memory and restarts."""
    rt = runtime(request)
    if rt.metrics is None:
        raise NotFoundError("metrics are off (--metrics off)")
    # The engine children answer their status over a pipe: not on the event loop.
    body = await asyncio.to_thread(rt.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)


@router.get("/api/requests")
async def requests(
    request: Request,
    model: str | None = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    route: Annotated[str | None, Query(max_length=512)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="Unix seconds")] = None,
    # A row's seq is SQLite's 64-bit integer: a larger one would overflow there, not match.
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="`next_before` of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The request log, newest first: one row per API request (time, request id, route, API,
    model, status, error, token counts, TTFT, latency, client, API-key name)."""
    rt = runtime(request)
    if rt.request_log is None:
        raise NotFoundError("the request log is off (--request-log off)")
    log = rt.request_log

    def read() -> tuple[list[dict[str, Any]], bool]:
        log.flush()  # what has finished is there, even inside the flush interval
        return rt.store.list_requests(
            limit=limit, before=before, model=model, status=status, route=route, since=since
        )

    rows, more = await asyncio.to_thread(read)
    return {
        "object": "list",
        "data": rows,
        "has_more": more,
        "next_before": rows[-1]["seq"] if more and rows else None,
    }
