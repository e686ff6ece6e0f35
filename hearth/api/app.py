"""The app factory: create_app(settings) builds everything and keeps it on app.state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from hearth import __version__, ui
from hearth.api.anthropic.router import router as anthropic_router
from hearth.api.chat.router import router as chat_router
from hearth.api.completions.router import router as completions_router
from hearth.api.conversations.router import router as conversations_router
from hearth.api.embeddings.router import router as embeddings_router
from hearth.api.errors import install_error_handlers
from hearth.api.lifecycle.router import router as lifecycle_router
from hearth.api.mcp.router import router as mcp_router
from hearth.api.middleware import (
    BodySizeLimitMiddleware,
    JsonBodyCheckMiddleware,
    RequestIdMiddleware,
)
from hearth.api.models.router import router as models_router
from hearth.api.observe import DrainMiddleware, ObserveMiddleware, RateLimitMiddleware
from hearth.api.ollama.models_router import router as ollama_models_router
from hearth.api.ollama.router import router as ollama_router
from hearth.api.ops.router import router as ops_router
from hearth.api.pull.router import router as pull_router
from hearth.api.responses.router import router as responses_router
from hearth.api.security import ApiKeyMiddleware, CorsMiddleware, HostCheckMiddleware, is_loopback
from hearth.api.settings.router import router as settings_router
from hearth.api.system.router import router as system_router
from hearth.api.tokenize.router import router as tokenize_router
from hearth.errors import HearthError
from hearth.models.manager import EngineFactory
from hearth.runtime import Runtime, build_runtime
from hearth.settings import Settings
from hearth.store.retention import retention_interval, start_retention

log = logging.getLogger("hearth")


def create_app(
    settings: Settings, *, factory: EngineFactory | None = None, runtime: Runtime | None = None
) -> FastAPI:
    """A Hearth app. Models named in settings start loading when the app starts."""
    rt = runtime or build_runtime(settings, factory)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        preload = asyncio.create_task(_preload(rt), name="preload")
        retention = start_retention(rt.store, retention_interval(rt.store.ttl_seconds))
        await rt.mcp.start(eager=settings.mcp_eager)  # failures are recorded, never raised
        try:
            yield
        finally:
            for task in (preload, retention):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await rt.close()
            log.info("Hearth stopped: models unloaded")

    app = FastAPI(title="Hearth", version=__version__, lifespan=lifespan)
    app.state.runtime = rt
    install_error_handlers(app)
    routers = (
        chat_router,
        completions_router,
        conversations_router,
        embeddings_router,
        anthropic_router,
        responses_router,
        mcp_router,
        ops_router,
        ollama_router,
        models_router,
        system_router,
        settings_router,
        tokenize_router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(lifecycle_router)
    app.include_router(pull_router)
    app.include_router(ollama_models_router)
    ui.mount(app)

    # Added innermost first. From the outside in: the request id (even a 403 has one), the
    # record that the metrics and the request log read (so refusals are counted too), the
    # Host check, CORS, the drain's 503s, the key, the rate limit (per key), the body checks.
    app.add_middleware(JsonBodyCheckMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate is not None:
        count, window = settings.rate
        app.add_middleware(RateLimitMiddleware, count=count, window=window)
    # Always there: keys and origins added through the settings API apply at once.
    app.add_middleware(ApiKeyMiddleware, ring=rt.keys)
    app.add_middleware(DrainMiddleware, draining=lambda: rt.draining)
    app.add_middleware(CorsMiddleware, origins=lambda: rt.settings.cors_origins)
    if is_loopback(settings.host) or settings.allowed_hosts:
        app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts)
    if rt.metrics is not None or rt.request_log is not None:
        app.add_middleware(
            ObserveMiddleware,
            metrics=rt.metrics,
            log=rt.request_log,
            bodies=settings.request_log_bodies,
        )
    app.add_middleware(RequestIdMiddleware)
    return app


async def _preload(rt: Runtime) -> None:
    # From the settings, not a scan: configured ids are kept as they are.
    upstream = [c.id for c in rt.settings.model_configs if c.upstream and c.id]
    connect = asyncio.gather(*(_connect(rt, model_id) for model_id in upstream))
    failed = False
    for model_id in rt.preload:
        try:
            await rt.models.get(model_id)
        except HearthError as exc:
            failed = True
            rt.preload_errors[model_id] = exc
            log.error("could not load %s: %s", model_id, exc.message)
    rt.preloaded = not failed
    await connect


async def _connect(rt: Runtime, model_id: str) -> None:
    """An upstream model is asked what it serves at start-up (its context length shows in
    the listings); one that does not answer is asked again by its first request."""
    try:
        await rt.models.get(model_id)
    except HearthError as exc:
        log.warning("upstream model %s: %s", model_id, exc.message)
