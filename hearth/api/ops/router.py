"""GET /metrics (Prometheus), GET /api/requests (the request log) and GET /api/stats (its
per-minute series, for the UI's charts)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from hearth.api.deps import runtime
from hearth.errors import NotFoundError
from hearth.observe.metrics import CONTENT_TYPE
from hearth.observe.stats import STEP_SECONDS, series
from hearth.store.store import Sample

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
    errors: Annotated[bool, Query(description="only failures (status >= 400)")] = False,
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
            limit=limit,
            before=before,
            model=model,
            status=status,
            route=route,
            since=since,
            errors=errors,
        )

    rows, more = await asyncio.to_thread(read)
    return {
        "object": "list",
        "data": rows,
        "has_more": more,
        "next_before": rows[-1]["seq"] if more and rows else None,
    }


@router.get("/api/stats")
async def stats(
    request: Request, minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60
) -> dict[str, Any]:
    """The last `minutes` of the request log, one point a minute, oldest first: requests and
    errors (of those that asked for work: not GETs), completion tokens, generation speed
    (tokens/s after the first token) and median TTFT."""
    rt = runtime(request)
    if rt.request_log is None:
        raise NotFoundError("the request log is off (--request-log off)")
    log = rt.request_log
    now = time.time()

    def read() -> list[Sample]:
        log.flush()
        return rt.store.request_samples(now - (minutes + 1) * STEP_SECONDS)

    samples = await asyncio.to_thread(read)
    return {
        "minutes": minutes,
        "step_seconds": STEP_SECONDS,
        "series": series(samples, now=now, minutes=minutes),
    }
