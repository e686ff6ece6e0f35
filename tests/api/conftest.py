"""In-process API tests: the real app with a fake engine, through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hearth.api.app import create_app
from hearth.models.registry import ModelEntry
from hearth.settings import load_settings
from tests.fakes import FakeEngine
from tests.ggufs import write_tiny_gguf

FAKE_ID = "fake-model"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., FastAPI]:
    write_tiny_gguf(tmp_path / "models" / f"{FAKE_ID}.gguf")

    def build(**overrides: Any) -> FastAPI:
        flags = {
            "models_dir": tmp_path / "models",
            "config": tmp_path / "none.toml",
            "data_dir": tmp_path / "data",
            # Never the user's own mcp.json.
            "mcp_config": tmp_path / "no-mcp.json",
            **overrides,
        }
        (tmp_path / "none.toml").touch()
        (tmp_path / "no-mcp.json").write_text('{"mcpServers": {}}')
        settings = load_settings(flags, environ={})

        def factory(entry: ModelEntry) -> FakeEngine:
            return FakeEngine(entry, parallel=settings.parallel)

        return create_app(settings, factory=factory)

    return build


@pytest.fixture
async def app(make_app: Callable[..., FastAPI]) -> AsyncIterator[FastAPI]:
    """The app with default settings, started (lifespan) and stopped around the test."""
    application = make_app()
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


async def engine(app: FastAPI) -> FakeEngine:
    """The fake model's engine (loading it if needed), to script replies or read requests."""
    loaded = await app.state.runtime.models.get(FAKE_ID)
    assert isinstance(loaded.engine, FakeEngine)
    return loaded.engine


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": FAKE_ID, "messages": [{"role": "user", "content": "hi"}], **extra}
