"""Lifecycle over HTTP with a fake engine: /api/ps, load, unload, delete, keep_alive,
per-model settings, bad files and unsafe names. Every error is in OpenAI's shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.api.app import create_app
from hearth.models.registry import ModelEntry
from hearth.runtime import engine_options
from hearth.settings import load_settings
from tests.errorshape import error_fields
from tests.fakes import FakeEngine
from tests.ggufs import corrupt, write_tiny_gguf

pytestmark = pytest.mark.anyio

CONFIG = """
[[models]]
id = "alpha"
aliases = ["first"]
ctx_size = 128
parallel = 2
system_prompt = "You are terse."
chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
sampling = { temperature = 0.25, top_k = 7 }
"""


def assert_error(r: httpx.Response, status: int, code: str, param: str | None = "model") -> None:
    assert r.status_code == status, r.text
    error = error_fields(r.json(), r.request.url.path)
    assert error["code"] == code
    assert error["param"] == param


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., Any]:
    models = tmp_path / "models"
    for name in ("alpha", "beta", "gamma"):
        write_tiny_gguf(models / f"{name}.gguf")
    corrupt(write_tiny_gguf(models / "broken.gguf"), "tensor_past_end")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    engines: dict[str, FakeEngine] = {}

    def make(**flags: Any) -> tuple[Any, dict[str, FakeEngine]]:
        settings = load_settings({"models_dir": models, "config": config, **flags}, environ={})

        def factory(entry: ModelEntry) -> FakeEngine:
            options = engine_options(settings, entry)  # what the real engine would get
            engine = FakeEngine(entry, ctx_size=options.ctx_size or 256, parallel=options.parallel)
            engines[entry.id] = engine
            return engine

        return create_app(settings, factory=factory), engines

    return make


@pytest.fixture
async def client(build: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    app, engines = build()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            c.engines = engines  # type: ignore[attr-defined]
            yield c


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        **extra,
    }


async def ps(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await c.get("/api/ps")
    assert r.status_code == 200
    return {m["name"]: m for m in r.json()["models"]}


async def test_load_ps_unload(client: httpx.AsyncClient) -> None:
    assert await ps(client) == {}
    r = await client.post("/api/load", json={"model": "first", "keep_alive": "10m"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "alpha"
    (alpha,) = (await ps(client)).values()
    assert alpha["model"] == "alpha" and alpha["size"] > 0 and alpha["size_vram"] == 0
    assert alpha["keep_alive"] == "10m" and alpha["active_requests"] == 0
    assert alpha["expires_at"] is not None and alpha["idle_seconds"] is not None
    assert alpha["context_length"] == 128
    assert alpha["details"]["family"] == "llama"
    models = (await client.get("/v1/models")).json()["data"]
    assert {m["id"]: m["hearth"]["status"] for m in models}["alpha"] == "loaded"
    r = await client.post("/api/unload", json={"name": "alpha"})  # Ollama's older field
    assert r.json() == {"model": "alpha", "status": "unloaded"}
    assert await ps(client) == {}
    r = await client.post("/api/unload", json={"model": "alpha"})
    assert r.json()["status"] == "not_loaded"


async def test_per_model_settings_reach_the_engine(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("alpha"))
    assert r.status_code == 200, r.text
    engine = client.engines["alpha"]  # type: ignore[attr-defined]
    assert (engine.info.ctx_size, engine.parallel) == (128, 2)
    assert engine.prompts[-1] == "<system>You are terse.<user>hi"  # template + system prompt
    sampling = engine.requests[-1].sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p) == (0.25, 7, 0.95)
    r = await client.post(
        "/v1/chat/completions",
        json=chat("alpha", temperature=1.5, messages=[{"role": "system", "content": "Mine."}]),
    )
    assert engine.prompts[-1] == "<system>Mine."
    assert engine.requests[-1].sampling.temperature == 1.5
    model = (await client.get("/v1/models/first")).json()
    assert model["id"] == "alpha" and model["context_window"] == 128
    assert model["hearth"]["aliases"] == ["first"]


async def test_request_keep_alive(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("beta", keep_alive="1h"))
    assert r.status_code == 200
    assert (await ps(client))["beta"]["keep_alive"] == "1h"
    r = await client.post(
        "/v1/completions", json={"model": "beta", "prompt": "x", "max_tokens": 1, "keep_alive": 0}
    )
    assert r.status_code == 200
    for _ in range(100):
        if "beta" not in await ps(client):
            break
        await asyncio.sleep(0.02)
    assert "beta" not in await ps(client)
    r = await client.post("/v1/chat/completions", json=chat("beta", keep_alive="whenever"))
    assert_error(r, 400, "invalid_request", "keep_alive")


async def in_flight(
    c: httpx.AsyncClient, model: str, **extra: Any
) -> tuple[asyncio.Task[httpx.Response], asyncio.Event]:
    """A streamed chat request held mid-generation until the returned event is set."""
    await c.post("/api/load", json={"model": model})
    engine: FakeEngine = c.engines[model]  # type: ignore[attr-defined]
    gate = engine.gate = asyncio.Event()
    body = chat(model, stream=True, max_tokens=5, **extra)
    task = asyncio.create_task(c.post("/v1/chat/completions", json=body))
    while not engine.active:  # noqa: ASYNC110 - the fake engine has no event for this
        await asyncio.sleep(0.01)
    return task, gate


async def test_streaming_holds_the_model_until_the_stream_ends(client: httpx.AsyncClient) -> None:
    task, gate = await in_flight(client, "gamma", keep_alive=0)
    await asyncio.sleep(0.05)
    assert (await ps(client))["gamma"]["active_requests"] == 1
    gate.set()
    assert (await task).status_code == 200
    for _ in range(100):
        if "gamma" not in await ps(client):
            break
        await asyncio.sleep(0.02)
    assert "gamma" not in await ps(client)


async def test_invalid_file_is_listed_and_refused_clearly(client: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
    broken = models["broken"]["hearth"]
    assert broken["status"] == "invalid" and "ends at byte" in broken["error"]
    for route, body in [
        ("/v1/chat/completions", chat("broken")),
        ("/v1/completions", {"model": "broken", "prompt": "x"}),
        ("/api/load", {"model": "broken"}),
    ]:
        r = await client.post(route, json=body)
        assert_error(r, 422, "invalid_model_file")
        assert "ends at byte" in error_fields(r.json(), route)["message"]
    assert (await client.post("/v1/chat/completions", json=chat("alpha"))).status_code == 200


@pytest.mark.parametrize(
    "name", ["../models/alpha", "..%2Fmodels%2Falpha", "/etc/passwd", "alpha\x00", "%2e%2e"]
)
async def test_unsafe_names_are_just_unknown_models(client: httpx.AsyncClient, name: str) -> None:
    for route in ("/api/load", "/api/unload", "/v1/chat/completions"):
        r = await client.request(
            "POST", route, json=chat(name) if "chat" in route else {"model": name}
        )
        assert_error(r, 404, "model_not_found")
    r = await client.request("DELETE", "/api/delete", json={"model": name})
    assert_error(r, 404, "model_not_found")
    r = await client.get("/v1/models/..%2F..%2Fetc%2Fpasswd")
    assert r.status_code == 404


async def test_delete(client: httpx.AsyncClient, tmp_path: Path) -> None:
    outside = tmp_path / "outside.gguf"
    write_tiny_gguf(outside)
    (tmp_path / "models" / "link.gguf").symlink_to(outside)
    r = await client.request("DELETE", "/api/delete", json={"model": "link"})
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "link", "status": "deleted", "files": ["link.gguf"]}
    assert outside.exists()  # the link went, not its target
    assert not (tmp_path / "models" / "link.gguf").is_symlink()

    task, gate = await in_flight(client, "gamma")
    r = await client.request("DELETE", "/api/delete", json={"model": "gamma"})
    assert_error(r, 409, "model_busy")
    assert (tmp_path / "models" / "gamma.gguf").exists()
    r = await client.request("DELETE", "/api/delete", json={"model": "gamma", "force": True})
    assert r.status_code == 200
    gate.set()
    await task
    assert not (tmp_path / "models" / "gamma.gguf").exists()
    assert "gamma" not in await ps(client)
    r = await client.get("/v1/models/gamma")
    assert_error(r, 404, "model_not_found")
    assert (await client.post("/v1/chat/completions", json=chat("alpha"))).status_code == 200


async def test_no_room_is_503_with_retry_after(build: Callable[..., Any]) -> None:
    app, engines = build(max_loaded_models=1, model_wait_timeout=0.2)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):
        c.engines = engines  # type: ignore[attr-defined]
        task, gate = await in_flight(c, "alpha")
        r = await c.post("/v1/chat/completions", json=chat("beta"))
        assert_error(r, 503, "model_capacity_exceeded")
        assert int(r.headers["retry-after"]) > 0
        assert (await ps(c))["alpha"]["active_requests"] == 1
        gate.set()
        assert (await task).status_code == 200
        r = await c.post("/v1/chat/completions", json=chat("beta"))  # alpha is idle now: evicted
        assert r.status_code == 200
        assert list(await ps(c)) == ["beta"]


async def test_health_and_status_show_a_lazy_load_under_way(tmp_path: Path) -> None:
    import threading

    write_tiny_gguf(tmp_path / "models" / "slow.gguf")
    (tmp_path / "c.toml").touch()
    settings = load_settings(
        {"models_dir": tmp_path / "models", "config": tmp_path / "c.toml"}, environ={}
    )
    release = threading.Event()

    def slow(entry: ModelEntry) -> FakeEngine:
        release.wait(10)
        return FakeEngine(entry)

    app = create_app(settings, factory=slow)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):
        asking = [asyncio.create_task(c.post("/v1/chat/completions", json=chat("slow")))
                  for _ in range(3)]  # fmt: skip
        for _ in range(200):
            health = (await c.get("/health")).json()
            if health["loading"]:
                break
            await asyncio.sleep(0.01)
        assert health == {"status": "ok", "models": [], "loading": ["slow"]}
        assert (await c.get("/v1/models/slow")).json()["hearth"]["status"] == "loading"
        release.set()
        assert [r.status_code for r in await asyncio.gather(*asking)] == [200, 200, 200]
        assert (await c.get("/health")).json() == {
            "status": "ok",
            "models": ["slow"],
            "loading": [],
        }


async def test_the_library_manages_models_without_http(tmp_path: Path) -> None:
    from hearth import Hearth
    from tests.hub import HubServer

    write_tiny_gguf(tmp_path / "models" / "local.gguf")
    (tmp_path / "c.toml").touch()
    with HubServer() as hub:
        hub.add("owner/repo", "remote.gguf", write_tiny_gguf(tmp_path / "r.gguf").read_bytes())
        async with Hearth(
            factory=FakeEngine,
            models_dir=tmp_path / "models",
            config=tmp_path / "c.toml",
            hf_endpoint=hub.url,
        ) as h:
            statuses = [s.status async for s in await h.models.pull("owner/repo/remote.gguf")]
            assert statuses[-1] == "success"
            assert (await h.models.load("remote", keep_alive="1m")).model == "remote"
            assert [m.name for m in h.models.ps().models] == ["remote"]
            assert (await h.models.unload("remote")).status == "unloaded"
            assert (await h.models.delete("remote")).files == ["remote.gguf"]
            assert [m.id for m in h.models.list().data] == ["local"]
