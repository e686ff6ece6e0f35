"""GET /health (for supervisors and sidecar parents), GET /status (for people and the UI) and
POST /api/shutdown (a sidecar's parent stops it)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from hearth import __version__
from hearth.api.deps import runtime
from hearth.errors import PermissionDenied

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """503 while a model named at start-up is loading (or failed), 200 when ready. `loading`
    lists the models being loaded on demand right now."""
    rt = runtime(request)
    loaded = sorted(m.entry.id for m in rt.models.loaded())
    body = {"models": loaded, "loading": rt.models.loading_ids()}
    failed = {m: rt.models.load_errors[m] for m in rt.preload if m in rt.models.load_errors}
    if failed:
        return JSONResponse({"status": "error", "errors": failed, **body}, 503)
    if rt.preload and not rt.preloaded:
        return JSONResponse({"status": "loading", **body}, 503)
    return JSONResponse({"status": "ok", **body})


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Loaded models with each sequence's state, queue lengths and uptime; models whose
    engine crashed, with the reason."""
    rt = runtime(request)
    models = []
    for m in rt.models.loaded():
        # An engine child answers over its pipe: not on the event loop.
        st = await asyncio.to_thread(m.engine.status)
        models.append(
            {
                "id": m.entry.id,
                "pid": st.pid,
                # Threads that ever ran this model's llama.cpp decodes: one (see compute.py).
                "decode_threads": st.decode_threads,
                # Threads its decodes use now: a share of --threads while others compute too.
                "threads": st.threads,
                "embedding_decodes": st.embed_decodes,
                "context_window": m.engine.info.ctx_size,
                "parallel": len(st.slots),
                "queued": st.queued,
                "requests_served": st.requests_served,
                "decode_steps": st.steps,
                "decode_seconds": round(st.decode_seconds, 3),
                "step_seconds": round(st.step_seconds, 3),
                "draft_tokens": st.draft_proposed,
                "draft_tokens_accepted": st.draft_accepted,
                "prompt_cache": {
                    "entries": st.cache_entries,
                    "bytes": st.cache_bytes,
                    "hits": st.cache_hits,
                },
                "slots": [
                    {"id": s.id, "state": s.state, "cached_tokens": s.cached_tokens}
                    for s in st.slots
                ],
            }
        )
        if st.upstreams:  # served upstream: how each base URL is doing
            models[-1]["backend"] = "openai"
            models[-1]["upstreams"] = [
                {
                    "url": u.url,
                    "up": u.up,
                    "in_flight": u.in_flight,
                    "requests": u.requests,
                    "errors": u.errors,
                    "latency_seconds": round(u.latency_seconds, 3),
                    "last_error": u.last_error,
                }
                for u in st.upstreams
            ]
    crashed = [
        {"id": model_id, "status": "crashed", "reason": reason}
        for model_id, reason in sorted(rt.models.crashes.items())
        if model_id not in rt.models.failed and not rt.models.is_loaded(model_id)
    ] + [
        {"id": model_id, "status": "failed", "reason": reason}
        for model_id, reason in sorted(rt.models.failed.items())
    ]
    return {
        "version": __version__,
        "pid": os.getpid(),
        "engine_isolation": rt.settings.engine_isolation,
        "uptime_seconds": round(time.time() - rt.started_at, 1),
        "host": rt.settings.host,
        "port": rt.settings.port,
        "models": models,
        "crashed": crashed,
    }


@router.post("/api/shutdown", status_code=202)
async def shutdown(request: Request) -> dict[str, str]:
    """Stop a sidecar as SIGTERM would (its running requests get up to 3 s); the API key is
    needed when one is set. A server not started as a sidecar refuses (403)."""
    rt = runtime(request)
    if rt.shutdown is None:
        raise PermissionDenied(
            "POST /api/shutdown is on only for a sidecar (hearth serve --sidecar, or the "
            "hearth-server binary); stop this server with SIGTERM or Ctrl+C"
        )
    asyncio.get_running_loop().call_later(0.05, rt.shutdown)  # once this answer is out
    return {"status": "shutting down"}
