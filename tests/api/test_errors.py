"""Every bad input gets its API's error shape (OpenAI's, or Ollama's under /api/), and the
server answers the next request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, chat_body
from tests.errorshape import error_fields

pytestmark = pytest.mark.anyio


def assert_error(r: httpx.Response, status: int, code: str | None, param: str | None) -> None:
    assert r.status_code == status, r.text
    error = error_fields(r.json(), r.request.url.path)
    assert error["message"]
    assert error["code"] == code
    assert error["param"] == param
    assert r.headers["x-request-id"]


async def still_answers(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert r.status_code == 200


CASES: list[tuple[str, Any, int, str | None, str | None]] = [
    ("malformed json", b"{not json", 400, "invalid_json", None),
    ("missing messages", {"model": FAKE_ID}, 400, "invalid_request", "messages"),
    ("empty messages", chat_body() | {"messages": []}, 400, "invalid_request", "messages"),
    (
        "bad role",
        chat_body() | {"messages": [{"role": "x", "content": "a"}]},
        400,
        "invalid_request",
        "messages.0.role",
    ),
    ("unknown model", chat_body() | {"model": "nope"}, 404, "model_not_found", "model"),
    ("n too big", chat_body(n=9), 400, "invalid_request", "n"),
    ("n zero", chat_body(n=0), 400, "invalid_request", "n"),
    ("max_tokens zero", chat_body(max_tokens=0), 400, "invalid_request", "max_tokens"),
    (
        "context exceeded",
        chat_body(max_tokens=10_000),
        400,
        "context_length_exceeded",
        "max_tokens",
    ),
    ("temperature", chat_body(temperature=5), 400, "invalid_request", "temperature"),
    ("logit bias key", chat_body(logit_bias={"x": 1}), 400, "invalid_request", "logit_bias"),
    ("top_logprobs alone", chat_body(top_logprobs=2), 400, "invalid_request", "top_logprobs"),
    (
        "image part",
        chat_body()
        | {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        400,
        "invalid_request",
        "messages.0.content.0",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code", "param"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_chat_requests(
    client: httpx.AsyncClient,
    name: str,
    body: Any,
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    if isinstance(body, bytes):
        r = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    else:
        r = await client.post("/v1/chat/completions", json=body)
    assert_error(r, status, code, param)
    await still_answers(client)


async def test_n_above_parallel_is_not_an_error(client: httpx.AsyncClient) -> None:
    # --parallel is 4 here; the extra choices wait for free sequences (tests/e2e: real engine).
    r = await client.post("/v1/chat/completions", json=chat_body(n=8, max_tokens=2))
    assert r.status_code == 200, r.text
    assert [c["index"] for c in r.json()["choices"]] == list(range(8))


async def test_streaming_request_errors_before_the_stream(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(stream=True, model="nope"))
    assert_error(r, 404, "model_not_found", "model")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404, "not_found", None)
    assert_error(await client.get("/v1/chat/completions"), 405, "method_not_allowed", None)
    assert_error(await client.get("/v1/models/nope"), 404, "model_not_found", "model")
    await still_answers(client)


async def test_body_too_large(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(max_body_bytes=2048)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):
        big = chat_body(messages=[{"role": "user", "content": "x" * 5000}])
        assert_error(await c.post("/v1/chat/completions", json=big), 413, "request_too_large", None)

        async def chunks():  # no Content-Length: the limit is enforced by counting
            for _ in range(10):
                yield b"x" * 1000

        r = await c.post("/v1/chat/completions", content=chunks())
        assert_error(r, 413, "request_too_large", None)
        await still_answers(c)


async def test_api_key(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(api_key="sekrit")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):
        assert_error(await c.get("/v1/models"), 401, "invalid_api_key", None)
        wrong = {"authorization": "Bearer nope"}
        assert_error(await c.get("/v1/models", headers=wrong), 401, "invalid_api_key", None)
        ok = {"authorization": "Bearer sekrit"}
        assert (await c.get("/v1/models", headers=ok)).status_code == 200
        assert (await c.get("/health")).status_code == 200  # exempt


async def test_cors(make_app: Callable[..., FastAPI]) -> None:
    for app, origin, allowed in [
        (make_app(), "http://localhost:5173", True),
        (make_app(), "https://evil.example", False),
        (make_app(cors_origins=["https://app.example"]), "https://app.example", True),
    ]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as c:
            r = await c.options(
                "/v1/chat/completions",
                headers={"origin": origin, "access-control-request-method": "POST"},
            )
            assert (r.headers.get("access-control-allow-origin") == origin) is allowed


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
