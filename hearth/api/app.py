"""The app factory: create_app(settings) builds everything and keeps it on app.state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hearth import __version__
from hearth.api.anthropic.router import router as anthropic_router
from hearth.api.chat.router import router as chat_router
from hearth.api.completions.router import router as completions_router
from hearth.api.conversations.router import router as conversations_router
from hearth.api.embeddings.router import router as embeddings_router
from hearth.api.errors import install_error_handlers
from hearth.api.lifecycle.router import router as lifecycle_router
from hearth.api.mcp.router import router as mcp_router
from hearth.api.middleware import (
    ApiKeyMiddleware,
    BodySizeLimitMiddleware,
    JsonBodyCheckMiddleware,
    RequestIdMiddleware,
)
from hearth.api.models.router import router as models_router
from hearth.api.ollama.models_router import router as ollama_models_router
from hearth.api.ollama.router import router as ollama_router
from hearth.api.pull.router import router as pull_router
from hearth.api.responses.router import router as responses_router
from hearth.api.system.router import router as system_router
from hearth.errors import HearthError
from hearth.models.manager import EngineFactory
from hearth.runtime import Runtime, build_runtime
from hearth.settings import Settings
from hearth.store.retention import retention_interval, start_retention

log = logging.getLogger("hearth")

# Browser pages served from these hosts may call the API unless --cors-origins says otherwise.
LOCAL_ORIGINS_REGEX = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


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
        ollama_router,
        models_router,
        system_router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(lifecycle_router)
    app.include_router(pull_router)
    app.include_router(ollama_models_router)

    # Added innermost first: the request id wraps everything, so even a 401 or 413 has one.
    app.add_middleware(JsonBodyCheckMiddleware)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=None if "*" in settings.cors_origins else LOCAL_ORIGINS_REGEX,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-request-id"],
    )
    app.add_middleware(RequestIdMiddleware)
    return app


async def _preload(rt: Runtime) -> None:
    failed = False
    for model_id in rt.preload:
        try:
            await rt.models.get(model_id)
        except HearthError as exc:
            failed = True
            log.error("could not load %s: %s", model_id, exc.message)
    rt.preloaded = not failed
