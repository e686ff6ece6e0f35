from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.api.conftest import FAKE_ID, chat_body

pytestmark = pytest.mark.anyio


async def test_models_list_and_retrieve(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model["id"] == FAKE_ID
    assert model["object"] == "model"
    assert model["owned_by"] == "local"
    assert model["context_window"] == 256
    assert model["hearth"]["status"] == "available"
    assert model["hearth"]["quantization"] == "F32"
    assert model["hearth"]["architecture"] == "llama"
    assert model["hearth"]["parameters"] == 128
    assert model["hearth"]["has_chat_template"] is False

    await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    r = await client.get(f"/v1/models/{FAKE_ID}")
    assert r.json()["hearth"]["status"] == "loaded"
    # ids are case-insensitive
    assert (await client.get(f"/v1/models/{FAKE_ID.upper()}")).status_code == 200


async def test_health_and_status(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    status = (await client.get("/status")).json()
    (model,) = status["models"]
    assert model["id"] == FAKE_ID
    assert len(model["slots"]) == 4


async def test_health_is_503_while_a_start_up_model_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from hearth.api.app import create_app
    from hearth.settings import load_settings
    from tests.fakes import FakeEngine
    from tests.ggufs import write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "models" / "slow.gguf")
    (tmp_path / "c.toml").touch()
    settings = load_settings(
        {"models_dir": tmp_path / "models", "model": [str(path)], "config": tmp_path / "c.toml"},
        environ={},
    )
    release = threading.Event()

    def slow_factory(entry):  # type: ignore[no-untyped-def]
        release.wait(10)
        return FakeEngine(entry)

    app = create_app(settings, factory=slow_factory)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):
        await asyncio.sleep(0.1)  # let the preload task start
        r = await c.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "loading"
        assert (await c.get("/v1/models/slow")).json()["hearth"]["status"] == "loading"
        release.set()
        for _ in range(100):
            r = await c.get("/health")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert r.json() == {"status": "ok", "models": ["slow"], "loading": []}
