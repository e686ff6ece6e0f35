"""Operations and security on the app (fake engine): API keys, the Host check, CORS, the
rate limit, --max-queue, --request-timeout, the drain's 503s, /metrics and the request log.
Every refusal is checked in its API's error shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hearth.api.security import allowed_host, bind_problem, host_name, load_api_keys
from hearth.errors import ConfigError
from hearth.settings import load_settings, parse_rate
from tests.api.conftest import FAKE_ID, chat_body, engine
from tests.errorshape import error_fields

pytestmark = pytest.mark.anyio

# One route per API shape: OpenAI's, Anthropic's, Ollama's.
HI = [{"role": "user", "content": "hi"}]
ROUTES = [
    ("/v1/chat/completions", chat_body()),
    ("/v1/messages", {"model": FAKE_ID, "max_tokens": 8, "messages": HI}),
    ("/api/chat", {"model": FAKE_ID, "stream": False, "messages": HI}),
]


@asynccontextmanager
async def started(
    make_app: Callable[..., FastAPI], host: str = "localhost", **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = make_app(**settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            yield app, c


# -- API keys --------------------------------------------------------------------------------


async def test_several_keys_both_headers_and_the_key_name_in_the_log(
    make_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# the team\nalice: alice-secret\nbob:bob-secret\n")
    async with started(make_app, api_key=["first-key"], api_key_file=keys) as (_, c):
        assert (await c.get("/health")).status_code == 200  # open
        for path, body in ROUTES:
            r = await c.post(path, json=body)
            assert r.status_code == 401, path
            message = error_fields(r.json(), path)["message"]
            assert message.startswith("missing or invalid API key")
            r = await c.post(path, json=body, headers={"authorization": "Bearer wrong"})
            assert r.status_code == 401
        ok = await c.post(
            ROUTES[0][0], json=ROUTES[0][1], headers={"authorization": "Bearer alice-secret"}
        )
        assert ok.status_code == 200
        ok = await c.post(ROUTES[1][0], json=ROUTES[1][1], headers={"x-api-key": "bob-secret"})
        assert ok.status_code == 200
        ok = await c.post(
            ROUTES[2][0], json=ROUTES[2][1], headers={"authorization": "bearer first-key"}
        )
        assert ok.status_code == 200
        rows = (await c.get("/api/requests", headers={"x-api-key": "bob-secret"})).json()["data"]
        names = [r["api_key_name"] for r in rows]
        assert names[:3] == ["key-1", "bob", "alice"]
        assert names.count(None) == 6  # the refused ones
        text = json.dumps(rows)
        assert "secret" not in text and "first-key" not in text


def test_a_key_file_with_a_bad_line_stops_start_up(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:ok\njust-a-key\n")
    (tmp_path / "x.toml").touch()
    settings = load_settings({"api_key_file": keys, "config": tmp_path / "x.toml"}, environ={})
    with pytest.raises(ConfigError, match="line 2"):
        load_api_keys(settings)


def test_a_reachable_server_needs_a_key(tmp_path: Path) -> None:
    (tmp_path / "x.toml").touch()

    def problem(**flags: Any) -> str | None:
        settings = load_settings({"config": tmp_path / "x.toml", **flags}, environ={})
        return bind_problem(settings, load_api_keys(settings))

    assert problem() is None  # 127.0.0.1
    assert problem(host="::1") is None and problem(host="localhost") is None
    message = problem(host="0.0.0.0")
    assert message is not None and "--api-key" in message and "--insecure-no-auth" in message
    assert problem(host="0.0.0.0", api_key=["k"]) is None
    assert problem(host="192.168.1.5", insecure_no_auth=True) is None


# -- Host and Origin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost:11434", True),
        ("127.0.0.1:8080", True),
        ("127.8.9.1", True),
        ("[::1]:11434", True),
        ("app.localhost", True),
        ("LOCALHOST.", True),
        ("evil.example", False),
        ("localhost.evil.example", False),
        ("192.168.1.5:11434", False),
        ("0.0.0.0", False),
    ],
)
def test_the_hosts_a_loopback_server_answers(host: str, ok: bool) -> None:
    assert allowed_host(host_name(host), []) is ok


def test_allowed_hosts_add_names_and_domains() -> None:
    assert allowed_host("box.lan", ["box.lan"])
    assert allowed_host("a.b.example.com", [".example.com"])
    assert allowed_host("example.com", ["*.example.com"])
    assert not allowed_host("badexample.com", [".example.com"])
    assert allowed_host("anything", ["*"])


async def test_dns_rebinding_is_refused_in_each_shape(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app, host="rebound.example:11434") as (_, c):
        for path, body in ROUTES:
            r = await c.post(path, json=body)
            assert r.status_code == 403, path
            assert "rebound.example" in error_fields(r.json(), path)["message"]
        assert (await c.get("/v1/models")).status_code == 403
    async with started(make_app, host="box.lan", allowed_hosts=["box.lan"]) as (_, c):
        assert (await c.get("/v1/models")).status_code == 200


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1:5173", True),
        ("tauri://localhost", True),
        ("http://tauri.localhost", True),
        ("app://hearth-ui", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
    ],
)
async def test_browser_origins(client: httpx.AsyncClient, origin: str, allowed: bool) -> None:
    r = await client.options(
        "/v1/chat/completions",
        headers={"origin": origin, "access-control-request-method": "POST"},
    )
    assert (r.headers.get("access-control-allow-origin") == origin) is allowed
    assert "access-control-allow-credentials" not in r.headers  # keys go in headers


# -- limits --------------------------------------------------------------------------------------


def test_rate_limit_values() -> None:
    assert parse_rate("60/min") == (60, 60.0)
    assert parse_rate("5/s") == (5, 1.0)
    for bad in ("60", "0/min", "x/min", "5/week", "-1/s"):
        with pytest.raises(ValueError):
            parse_rate(bad)


async def test_rate_limit_gives_429_with_retry_after_in_each_shape(
    make_app: Callable[..., FastAPI],
) -> None:
    async with started(make_app, rate_limit="3/min") as (_, c):
        for path, body in ROUTES:
            assert (await c.post(path, json=body)).status_code == 200
        assert (await c.get("/health")).status_code == 200  # never counted
        for path, body in ROUTES:
            r = await c.post(path, json=body)
            assert r.status_code == 429, path
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert "rate limit" in error_fields(r.json(), path)["message"]


async def test_a_full_queue_is_a_503_with_retry_after(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app, parallel=1, max_queue=1) as (app, c):
        fake = await engine(app)
        fake.gate = asyncio.Event()  # every token waits: requests pile up
        body = chat_body(max_tokens=2)
        running = [asyncio.create_task(c.post("/v1/chat/completions", json=body)) for _ in range(2)]
        for _ in range(500):  # both admitted: one decoding, one waiting
            if app.state.runtime.models.active(FAKE_ID) >= 2:
                break
            await asyncio.sleep(0.01)
        for path, rbody in ROUTES:
            r = await c.post(path, json=rbody)
            assert r.status_code == 503, path
            assert r.headers["retry-after"] == "1"
            assert "waiting" in error_fields(r.json(), path)["message"]
        fake.gate.set()
        assert [t.status_code for t in await asyncio.gather(*running)] == [200, 200]
        assert (await c.post(ROUTES[0][0], json=ROUTES[0][1])).status_code == 200  # room again


async def test_the_request_timeout(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app, request_timeout=0.3) as (app, c):
        fake = await engine(app)
        fake.gate = asyncio.Event()  # never opens
        for path, body in ROUTES:
            r = await c.post(path, json=body)
            assert r.status_code == 504, path
            assert "request timeout" in error_fields(r.json(), path)["message"]
        r = await c.post("/v1/chat/completions", json=chat_body(stream=True))
        assert r.status_code == 200
        data = [line for line in r.text.splitlines() if line.startswith("data: ")]
        assert data[-1] == "data: [DONE]"
        assert json.loads(data[-2][6:])["error"]["code"] == "request_timeout"
        fake.gate.set()
        assert (await c.post(ROUTES[0][0], json=ROUTES[0][1])).status_code == 200


async def test_while_draining_new_requests_get_503(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app) as (app, c):
        app.state.runtime.draining = True
        for path, body in ROUTES:
            r = await c.post(path, json=body)
            assert r.status_code == 503
            assert "shutting down" in error_fields(r.json(), path)["message"]
        assert (await c.get("/health")).status_code == 200
        app.state.runtime.draining = False


# -- metrics and the request log -------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus' text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
    return 0.0


async def test_metrics_count_requests_tokens_and_latencies(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=5))
    usage = r.json()["usage"]
    await client.post("/v1/chat/completions", json=chat_body(temperature=9))  # a 400
    stream = await client.post("/api/chat", json={**ROUTES[2][1], "stream": True})
    assert stream.status_code == 200
    m = await client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    route = "/v1/chat/completions"
    assert sample(text, "hearth_requests_total", route=route, status="200", api="openai") == 1
    assert sample(text, "hearth_requests_total", route=route, status="400") == 1
    assert sample(text, "hearth_requests_total", route="/api/chat", api="ollama") == 1
    assert sample(text, "hearth_prompt_tokens_total", model=FAKE_ID) >= usage["prompt_tokens"]
    assert sample(text, "hearth_generated_tokens_total", model=FAKE_ID) >= 5
    assert sample(text, "hearth_time_to_first_token_seconds_count", model=FAKE_ID) == 2
    assert sample(text, "hearth_inter_token_latency_seconds_count", model=FAKE_ID) >= 4
    assert sample(text, "hearth_request_duration_seconds_count", route=route) == 2
    assert sample(text, "hearth_loaded_models") == 1
    assert sample(text, "hearth_model_memory_bytes", model=FAKE_ID) > 0
    assert sample(text, "hearth_active_sequences", model=FAKE_ID) == 0
    assert sample(text, "hearth_queue_depth", model=FAKE_ID) == 0
    assert sample(text, "hearth_model_load_seconds", model=FAKE_ID) > 0


async def test_metrics_and_the_log_can_be_turned_off(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app, metrics="off", request_log="off") as (_, c):
        assert (await c.post(ROUTES[0][0], json=ROUTES[0][1])).status_code == 200
        for path in ("/metrics", "/api/requests"):
            r = await c.get(path)
            assert r.status_code == 404 and "off" in error_fields(r.json(), path)["message"]


async def test_the_request_log_rows_filters_and_pages(client: httpx.AsyncClient) -> None:
    ok = await client.post("/v1/chat/completions", json=chat_body(max_tokens=3))
    bad = await client.post("/v1/chat/completions", json=chat_body(top_p=7))
    await client.post("/v1/messages", json=ROUTES[1][1])
    await client.get("/health")  # not logged
    rows = (await client.get("/api/requests")).json()["data"]
    assert [r["route"] for r in rows] == ["/v1/messages", "/v1/chat/completions"] * 1 + [
        "/v1/chat/completions"
    ]
    newest, failed, first = rows
    assert newest["api"] == "anthropic" and newest["status"] == 200
    assert failed["status"] == 400 and failed["error_type"] == "invalid_request_error"
    assert failed["request_id"] == bad.headers["x-request-id"]
    assert first["request_id"] == ok.headers["x-request-id"]
    assert first["model"] == FAKE_ID and first["completion_tokens"] == 3
    assert first["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    assert first["ttft_ms"] is not None and first["latency_ms"] >= first["ttft_ms"]
    assert first["client"] == "127.0.0.1" and first["request_body"] is None  # bodies off
    page = (await client.get("/api/requests", params={"limit": 2})).json()
    assert page["has_more"] and len(page["data"]) == 2
    rest = (await client.get("/api/requests", params={"before": page["next_before"]})).json()
    assert [r["seq"] for r in rest["data"]] == [first["seq"]] and not rest["has_more"]
    only = (await client.get("/api/requests", params={"status": 400})).json()["data"]
    assert [r["seq"] for r in only] == [failed["seq"]]
    by_route = (await client.get("/api/requests", params={"route": "/v1/messages"})).json()
    assert [r["seq"] for r in by_route["data"]] == [newest["seq"]]
    later = (await client.get("/api/requests", params={"since": 4e9})).json()["data"]
    assert later == []
    r = await client.get("/api/requests", params={"limit": 0})
    assert r.status_code == 400 and error_fields(r.json(), "/api/requests")["param"] == "limit"


async def test_request_log_bodies(make_app: Callable[..., FastAPI]) -> None:
    async with started(make_app, request_log_bodies=True) as (_, c):
        r = await c.post("/v1/chat/completions", json=chat_body(max_tokens=2))
        (row,) = (await c.get("/api/requests")).json()["data"]
        assert json.loads(row["request_body"])["messages"][0]["content"] == "hi"
        assert r.json()["choices"][0]["message"]["content"] in row["output"]


async def test_a_stream_that_fails_midway_is_logged_with_its_error(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from hearth.errors import EngineError

    fake = await engine(app)
    fake.fail_with = EngineError("the engine broke")
    r = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert r.status_code == 200 and "the engine broke" in r.text
    (row,) = (await client.get("/api/requests")).json()["data"]
    assert row["status"] == 200 and row["error_code"] == "engine_error"
