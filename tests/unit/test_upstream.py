"""Upstream models without a server: their config entries, the request Hearth sends, the
chunks it reads back, the upstream's errors as Hearth's, and the base URLs' choice, retries
and health (over httpx's mock transport)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.chat.pieces import Content, Reasoning, ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.engine.upstream import pool as pool_module
from hearth.engine.upstream.pool import UpstreamPool
from hearth.engine.upstream.wire import ChunkReader, chat_body, completion_body, error_from
from hearth.errors import (
    ConfigError,
    ContextLengthExceeded,
    UpstreamError,
    UpstreamUnreachable,
)
from hearth.models.config import ModelConfig, SamplingDefaults
from hearth.pipeline.events import Finished, Output
from hearth.pipeline.request import (
    ConversationRequest,
    Message,
    OutputFormat,
    Sampling,
    Tool,
    ToolCall,
)
from hearth.runtime import build_runtime
from hearth.settings import load_settings

# -- config -----------------------------------------------------------------------------------


def test_an_upstream_entry() -> None:
    cfg = ModelConfig.model_validate(
        {"id": "Big", "backend": "openai", "base_url": "http://10.0.0.5:8000/v1/"}
    )
    assert cfg.id == "big" and cfg.base_url == ["http://10.0.0.5:8000"] and cfg.upstream
    two = ModelConfig.model_validate(
        {"id": "big", "backend": "openai", "base_url": ["http://a:1", "https://b"]}
    )
    assert two.base_url == ["http://a:1", "https://b"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"backend": "openai", "base_url": "http://a"}, "needs an id"),
        ({"id": "x", "backend": "openai"}, "needs an id and a base_url"),
        ({"id": "x", "base_url": "http://a"}, 'needs backend = "openai"'),
        ({"id": "x", "backend": "openai", "base_url": "ftp://a"}, "is not an http"),
        ({"id": "x", "backend": "openai", "base_url": "http://u:p@a"}, "credentials"),
        ({"id": "x", "backend": "openai", "base_url": "http://a", "path": "m.gguf"}, "path"),
        ({"id": "x", "backend": "openai", "base_url": "http://a", "api_key": "s"}, "api_key"),
        ({"id": "x", "backend": "openai", "base_url": "http://a", "api_key_env": "A-B"}, "pattern"),
        ({"id": "x", "backend": "vllm", "base_url": "http://a"}, "backend"),
    ],
)
def test_bad_upstream_entries(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ModelConfig.model_validate(fields)


def test_the_upstream_flag_and_a_missing_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    flags = {"config": config, "upstream": ["big=http://127.0.0.1:9/v1"]}
    settings = load_settings(flags, environ={})
    (cfg,) = settings.model_configs
    assert (cfg.id, cfg.base_url, cfg.backend) == ("big", ["http://127.0.0.1:9"], "openai")
    with pytest.raises(ConfigError, match="NAME=URL"):
        load_settings({"config": config, "upstream": ["no-url"]}, environ={})
    config.write_text(
        '[[models]]\nid = "big"\nbackend = "openai"\nbase_url = "http://127.0.0.1:9"\n'
        'api_key_env = "HEARTH_TEST_NO_SUCH_KEY"\n'
    )
    settings = load_settings({"config": config, "data_dir": tmp_path / "d"}, environ={})
    with pytest.raises(ConfigError, match="HEARTH_TEST_NO_SUCH_KEY, which is not set"):
        build_runtime(settings)


# -- the request sent -------------------------------------------------------------------------


def test_a_conversation_as_chat_completions() -> None:
    request = ConversationRequest(
        model="big",
        messages=[
            Message("system", "Be brief."),
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=[ToolCall("c1", "weather", {"city": "Oslo"})]),
            Message("tool", "cold", tool_call_id="c1"),
        ],
        tools=[Tool("weather", "the weather", {"type": "object"})],
        tool_name="weather",
        format=OutputFormat("json_schema", {"type": "object"}),
        sampling=Sampling(temperature=0.2, repeat_penalty=1.1, seed=7),
        max_tokens=500,
        stop=["END"],
        n=2,
        logprobs=3,
    )
    sampling = SamplingDefaults(top_k=20, temperature=0.9).as_dict()
    body = chat_body(request, "org/big", sampling, 100)
    assert body["model"] == "org/big" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2  # the request's, over the model's configured default
    assert body["top_k"] == 20  # the model's configured default, where the request has none
    assert body["repetition_penalty"] == body["repeat_penalty"] == 1.1
    assert "top_p" not in body  # left to the upstream's own default
    assert body["max_tokens"] == 100  # capped by max_output_tokens
    assert (body["stop"], body["n"], body["seed"]) == (["END"], 2, 7)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert body["tools"][0]["function"]["name"] == "weather"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    call = body["messages"][2]
    assert call["content"] is None
    assert call["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'
    assert body["messages"][3] == {"role": "tool", "content": "cold", "tool_call_id": "c1"}


def test_raw_prompts_as_completions() -> None:
    request = ConversationRequest(model="big", prompts=["a", [1, 2]], suffix=None, max_tokens=3)
    body = completion_body(request, "big", {}, None)
    assert body["prompt"] == ["a", [1, 2]] and body["max_tokens"] == 3
    one = completion_body(ConversationRequest(model="big", prompts=["a"]), "big", {}, None)
    # Unset is sent as null: "up to the context" (vLLM's completions default to 16).
    assert one["prompt"] == "a" and one["max_tokens"] is None


# -- the chunks read back ---------------------------------------------------------------------


def chunk(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_content_reasoning_and_calls_as_pieces() -> None:
    reader = ChunkReader(1, chat=True, url="http://u")
    events = []
    for c in (
        chunk(role="assistant", content=""),
        chunk(reasoning_content="hmm"),
        chunk(content="Sure."),
        chunk(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"x":'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}]),
        chunk(tool_calls=[{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]),
        chunk(finish="stop"),
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6}},
    ):
        events += reader.feed(c)
    pieces = [p for e in events if isinstance(e, Output) for p in e.pieces]
    assert pieces == [
        Reasoning("hmm"),
        Content("Sure."),
        ToolCallStart(0, "a", "f"),
        ToolCallArgs(0, '{"x":'),
        ToolCallArgs(0, "1}"),
        ToolCallEnd(0),
        ToolCallStart(1, "b", "g"),
        ToolCallArgs(1, "{}"),
        ToolCallEnd(1),
    ]
    finished = [e for e in events if isinstance(e, Finished)]
    assert [(f.index, f.reason) for f in finished] == [(0, "tool_calls")]  # calls: not "stop"
    usage = reader.final_usage()
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 6)
    assert reader.finish_all() == []


def test_calls_without_an_index_and_an_index_used_again() -> None:
    reader = ChunkReader(1, chat=True, url="http://u")
    events = []
    for c in (
        chunk(tool_calls=[{"id": "a", "function": {"name": "f", "arguments": "{"}}]),
        chunk(tool_calls=[{"function": {"arguments": "}"}}]),  # the open call goes on
        chunk(tool_calls=[{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}]),
        chunk(finish="tool_calls"),
    ):
        events += reader.feed(c)
    starts = [p for e in events if isinstance(e, Output) for p in e.pieces]
    assert [p for p in starts if isinstance(p, ToolCallStart)] == [
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
    ]
    assert ToolCallArgs(0, "}") in starts
    with pytest.raises(UpstreamError, match="aborted"):
        ChunkReader(1, chat=True, url="http://u").feed(chunk(finish="abort"))


def test_text_chunks_logprobs_and_unfinished_choices() -> None:
    reader = ChunkReader(2, chat=False, url="http://u")
    lp = {"tokens": ["Hi"], "token_logprobs": [-0.5], "top_logprobs": [{"Hi": -0.5, "Yo": -1}]}
    (out,) = reader.feed({"choices": [{"index": 1, "text": "Hi", "logprobs": lp}]})
    assert isinstance(out, Output) and out.index == 1 and out.pieces == [Content("Hi")]
    assert out.logprobs is not None and [t.token for t in out.logprobs[0].top] == ["Hi", "Yo"]
    ends = reader.finish_all()
    assert [(e.index, e.reason) for e in ends if isinstance(e, Finished)] == [
        (0, "stop"),
        (1, "stop"),
    ]
    assert reader.final_usage().completion_tokens == 1  # no usage sent: the chunks counted


def test_bad_chunks_are_upstream_errors() -> None:
    reader = ChunkReader(1, chat=True, url="http://u")
    with pytest.raises(UpstreamError, match="choice 5"):
        reader.feed(chunk(index=5, content="x"))
    with pytest.raises(UpstreamError, match="overloaded"):
        reader.feed({"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(UpstreamError, match="no object"):
        reader.feed([1, 2])


def test_the_upstreams_errors_as_hearths() -> None:
    overflow = error_from(
        400, {"error": {"message": "too long", "code": "context_length_exceeded"}}, "http://u"
    )
    assert isinstance(overflow, ContextLengthExceeded) and overflow.status_code == 400
    # vLLM says it in words only; truncation (Responses' `auto`) must still see an overflow.
    vllm = error_from(400, {"message": "maximum context length is 4096", "type": "x"}, "http://u")
    assert isinstance(vllm, ContextLengthExceeded) and "4096" in vllm.message
    llama = error_from(400, {"error": {"message": "x", "type": "exceed_context_size_error"}}, "u")
    assert isinstance(llama, ContextLengthExceeded)  # llama.cpp's says it by type
    limited = error_from(429, {"error": {"message": "slow down", "code": "rate_limit"}}, "u")
    assert (limited.status_code, limited.code, limited.type) == (
        429,
        "rate_limit",
        "invalid_request_error",
    )
    # Not the client's fault: a stale model name, the upstream's key: 502.
    missing = error_from(404, {"error": {"message": "no model", "code": "model_not_found"}}, "u")
    assert (missing.status_code, missing.code) == (502, "upstream_error")
    assert "no model" in missing.message
    denied = error_from(401, {"error": {"message": "bad key"}}, "u")
    assert denied.status_code == 502 and "401" in denied.message
    broken = error_from(503, "Service Unavailable", "http://u")
    assert (broken.status_code, broken.code) == (502, "upstream_error")
    assert "answered 503: Service Unavailable" in broken.message


# -- base URLs ---------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_pool(handler: Any, urls: list[str], balance: str = "round-robin") -> UpstreamPool:
    return UpstreamPool(
        urls,
        api_key="k",
        timeout_s=5,
        balance=balance,  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
    )


def test_round_robin_least_busy_and_down_last() -> None:
    pool = make_pool(lambda r: httpx.Response(200), ["http://a", "http://b", "http://c"])
    assert [pool.order()[0].url for _ in range(4)] == [
        "http://a",
        "http://b",
        "http://c",
        "http://a",
    ]
    pool.targets[1].down("test")
    assert [t.url for t in pool.order()] == ["http://c", "http://a", "http://b"]
    busy = make_pool(lambda r: httpx.Response(200), ["http://a", "http://b"], "least-busy")
    busy.targets[0].in_flight = 3
    assert busy.order()[0].url == "http://b" and busy.order()[0].url == "http://b"


@pytest.mark.anyio
async def test_a_refused_connection_is_tried_on_the_next_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "BACKOFF", 0.001)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        assert request.headers["authorization"] == "Bearer k"
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    pool = make_pool(handler, ["http://a", "http://b"])
    async with pool.stream("/v1/x", {}) as (target, response):
        assert target.url == "http://b" and response.status_code == 200
    assert seen == ["a", "b"]
    assert not pool.targets[0].up and pool.targets[0].errors == 1
    assert pool.targets[1].requests == 1 and pool.targets[1].in_flight == 0
    await pool.close()


@pytest.mark.anyio
async def test_retries_stop_at_three_and_never_after_an_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "BACKOFF", 0.001)
    calls = 0

    def refused(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    pool = make_pool(refused, ["http://a"])
    with pytest.raises(UpstreamUnreachable, match="refused"):
        async with pool.stream("/v1/x", {}):
            pass
    assert calls == 3
    await pool.close()
    answered = 0

    def fails(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        answered += 1
        return httpx.Response(500, text="boom")

    pool = make_pool(fails, ["http://a", "http://b"])
    async with pool.stream("/v1/x", {}) as (_, response):
        assert response.status_code == 500  # an answer: the caller's to read, never retried
    assert answered == 1
    await pool.close()


@pytest.mark.anyio
async def test_the_health_check_marks_down_and_up() -> None:
    healthy = False

    def handler(request: httpx.Request) -> httpx.Response:
        if not healthy:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/health":
            return httpx.Response(404)  # a server without /health: /v1/models instead
        return httpx.Response(200, json={"data": []})

    pool = make_pool(handler, ["http://a"])
    target = pool.targets[0]
    assert not await pool.check(target) and not target.up and "refused" in (target.last_error or "")
    healthy = True
    assert await pool.check(target) and target.up and target.last_error is None
    pool.health_interval = 0.01
    pool.start()
    await asyncio.sleep(0.05)
    await pool.close()
