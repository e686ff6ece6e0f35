"""GET/PATCH /api/settings: validated, saved to the config file with its comments kept, in
force at once where the server can; and the UI's other reads (the conversations list, the
per-minute stats, failures in the request log) and how the UI itself is served."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, chat_body

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            yield c


def config_of(app: FastAPI) -> Path:
    path = app.state.runtime.settings.config
    assert isinstance(path, Path)
    return path


async def patch(client: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    return await client.patch("/api/settings", json=changes)


async def test_the_settings_with_what_each_takes_to_apply(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/settings")).json()
    s, fields = body["settings"], body["fields"]
    assert s["parallel"] == 4 and s["ctx_size"] is None and s["api_keys"] == []
    assert s["host"] == "127.0.0.1" and s["port"] == 11434 and s["default_model"] is None
    assert set(s) == set(fields)
    assert fields["port"]["applies"] == "restart" and fields["keep_alive"]["applies"] == "now"
    assert fields["parallel"]["applies"] == "next_load" and fields["ctx_size"]["nullable"]
    assert body["restart_pending"] == []


async def test_a_change_is_saved_with_the_files_comments_and_in_force_at_once(
    make_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text('# my settings\nlog_level = "info"  # chatty\n\n[[models]]\nid = "x"\n')
    app = make_app(config=config)
    async with serving(app) as client:
        r = await patch(client, keep_alive="10m", request_log_days=3, cors_origins=["https://a.b"])
        assert r.status_code == 200, r.text
        assert r.json()["settings"]["keep_alive"] == "10m"
        rt = app.state.runtime
        assert rt.models.policy.keep_alive == 600 and rt.request_log.days == 3
        allowed = await client.options(
            "/v1/models", headers={"origin": "https://a.b", "access-control-request-method": "GET"}
        )
        assert allowed.headers.get("access-control-allow-origin") == "https://a.b"
        estimate = rt.models.estimate
        r = await patch(client, port=8080, ctx_size=2048)
        assert r.json()["restart_pending"] == ["port"]  # saved, not in force
        # The next load's estimate is made with the new context size.
        assert rt.settings.ctx_size == 2048 and rt.models.estimate is not estimate
        r = await patch(client, ctx_size=None)  # back to automatic: the key goes
    text = config.read_text()
    assert text.startswith("# my settings\n") and "# chatty" in text
    data = tomllib.loads(text)
    assert data["keep_alive"] == "10m" and data["request_log_days"] == 3
    assert data["port"] == 8080 and "ctx_size" not in data
    assert data["models"] == [{"id": "x"}]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"parallel": 0}, "parallel"),
        ({"parallel": "many"}, "parallel"),
        ({"keep_alive": "soon"}, "keep_alive"),
        ({"port": 70000}, "port"),
        ({"request_log_days": -1}, "request_log_days"),
        ({"default_model": "no-such-model"}, "default_model"),
        ({"host": "0.0.0.0"}, "api_keys"),  # it would not start again without a key
        ({"models_dir": None}, "models_dir"),
        ({"api_keys": {"remove": ["key-9"]}}, "api_keys"),
        ({"api_keys": {"add": ["two words"]}}, "api_keys"),
        ({"log_level": "debug"}, "log_level"),
    ],
)
async def test_a_bad_value_is_a_400_naming_the_field_and_changes_nothing(
    make_app: Callable[..., FastAPI], changes: dict[str, Any], param: str
) -> None:
    app = make_app()
    before = config_of(app).read_text()
    async with serving(app) as client:
        r = await client.patch("/api/settings", json={"keep_alive": "1h", **changes})
        assert r.status_code == 400, r.text
        body = r.json()  # Ollama's shape, as every /api/ route
        assert isinstance(body["error"], str) and body["param"] == param
        assert app.state.runtime.settings.keep_alive != "1h"
    assert config_of(app).read_text() == before


async def test_keys_added_and_removed_apply_at_once(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(api_key=["from-a-flag"])
    async with serving(app) as client:
        flag = {"authorization": "Bearer from-a-flag"}
        assert (await client.get("/v1/models")).status_code == 401
        r = await client.patch(
            "/api/settings", json={"api_keys": {"add": ["second-key-123"]}}, headers=flag
        )
        keys = r.json()["settings"]["api_keys"]
        assert [(k["name"], k["hint"], k["removable"]) for k in keys] == [
            ("key-1", "…flag", False),
            ("key-2", "…-123", True),
        ]
        second = {"authorization": "Bearer second-key-123"}
        assert (await client.get("/v1/models", headers=second)).status_code == 200
        r = await client.patch(
            "/api/settings", json={"api_keys": {"remove": ["key-1"]}}, headers=second
        )
        assert r.status_code == 400 and "--api-key" in r.json()["error"]
        r = await client.patch(
            "/api/settings", json={"api_keys": {"remove": ["key-2"]}}, headers=second
        )
        assert r.status_code == 200
        assert (await client.get("/v1/models", headers=second)).status_code == 401
    assert "api_key" not in tomllib.loads(config_of(app).read_text())  # the flag's stays out


async def test_the_default_model_is_saved_as_the_model_to_load(
    make_app: Callable[..., FastAPI],
) -> None:
    app = make_app()
    async with serving(app) as client:
        r = await patch(client, default_model=FAKE_ID)
        assert r.json()["settings"]["default_model"] == FAKE_ID
    assert tomllib.loads(config_of(app).read_text())["model"] == [FAKE_ID]


# -- what else the UI reads -------------------------------------------------------------------


async def test_conversations_are_listed_by_last_use_and_paged(client: httpx.AsyncClient) -> None:
    ids = []
    for n in range(3):
        r = await client.post("/v1/conversations", json={"metadata": {"title": f"c{n}"}})
        ids.append(r.json()["id"])
    await client.post(f"/v1/conversations/{ids[0]}", json={"metadata": {"title": "renamed"}})
    page = (await client.get("/v1/conversations", params={"limit": 2})).json()
    assert [c["id"] for c in page["data"]] == [ids[0], ids[2]] and page["has_more"]
    assert page["data"][0]["metadata"] == {"title": "renamed"}
    assert page["first_id"] == ids[0] and page["last_id"] == ids[2]
    rest = (await client.get("/v1/conversations", params={"after": page["last_id"]})).json()
    assert [c["id"] for c in rest["data"]] == [ids[1]] and not rest["has_more"]
    r = await client.get("/v1/conversations", params={"after": "conv_nope"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "after"


async def test_stats_per_minute_and_failures_in_the_log(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    bad = await client.post("/v1/chat/completions", json=chat_body(model="nope"))
    assert bad.status_code == 404
    await client.get("/api/ps")  # polled by the UI: not in the log
    stats = (await client.get("/api/stats", params={"minutes": 5})).json()
    assert stats["step_seconds"] == 60 and len(stats["series"]) == 5
    now = stats["series"][-1]
    assert now["requests"] == 3 and now["errors"] == 1 and now["tokens"] > 0
    assert now["ttft_ms"] is not None
    assert all(b["requests"] == 0 for b in stats["series"][:-1])  # zero-filled
    times = [b["time"] for b in stats["series"]]
    assert times == sorted(times) and times[1] - times[0] == 60
    failed = (await client.get("/api/requests", params={"errors": "true"})).json()["data"]
    assert [r["status"] for r in failed] == [404]
    routes = {r["route"] for r in (await client.get("/api/requests")).json()["data"]}
    assert routes == {"/v1/chat/completions"}
    assert (await client.get("/api/stats", params={"minutes": 0})).status_code == 400


async def test_the_ui_is_served_to_browsers_and_needs_no_key(
    make_app: Callable[..., FastAPI],
) -> None:
    async with serving(make_app(api_key=["k-1"])) as client:
        probe = await client.get("/")
        assert probe.text == "Ollama is running"  # what Ollama's clients check
        page = await client.get("/", headers={"accept": "text/html,*/*"})
        assert page.status_code == 200 and "<title>Hearth</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await client.get("/ui/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "frame-ancestors 'none'" in script.headers["content-security-policy"]
        assert (await client.get("/ui/%2e%2e/pyproject.toml")).status_code == 404
        assert (await client.get("/ui/nothing.js")).status_code == 404
        assert (await client.get("/v1/models")).status_code == 401
        ps = await client.get("/api/ps")
        assert ps.status_code == 401
