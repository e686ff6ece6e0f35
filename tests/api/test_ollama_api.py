"""Ollama's generation routes on the fake engine: NDJSON lines and the final stats, options,
format, tool calls with object arguments, thinking, logprobs, generate's system / raw /
suffix / context, load and unload by empty requests, embeddings, and Ollama's error shape.
The official `ollama` client runs against the real model in tests/e2e/test_ollama_real.py."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import FAKE_ID, engine
from tests.api.test_errors import assert_error

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
HI = [{"role": "user", "content": "hi"}]


def lines(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": FAKE_ID, "messages": HI, **extra}


STATS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


async def test_chat_streams_ndjson_by_default_and_ends_with_stats(
    client: httpx.AsyncClient,
) -> None:
    out = lines(await client.post("/api/chat", json=chat(options={"num_predict": 4})))
    *parts, last = out
    assert all(p["done"] is False and p["message"]["role"] == "assistant" for p in parts)
    assert "".join(p["message"]["content"] for p in parts) == "alpha beta gamma delta "
    assert last["done"] is True and last["done_reason"] == "length"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert set(last) >= STATS and last["eval_count"] == 4
    assert last["total_duration"] >= last["prompt_eval_duration"] + last["eval_duration"]
    assert last["model"] == FAKE_ID and last["created_at"].endswith("Z")
    assert not any(STATS & set(p) for p in parts)
    whole = (
        await client.post("/api/chat", json=chat(stream=False, options={"num_predict": 4}))
    ).json()
    assert whole["message"]["content"] == "alpha beta gamma delta "
    assert whole["done"] is True and whole["done_reason"] == "length"
    assert whole["prompt_eval_count"] == last["prompt_eval_count"]


async def test_options_reach_the_sampler(app: FastAPI, client: httpx.AsyncClient) -> None:
    opts = {
        "temperature": 0.3,
        "top_k": 5,
        "top_p": 0.5,
        "min_p": 0.1,
        "repeat_penalty": 1.2,
        "repeat_last_n": 32,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "seed": 42,
        "num_predict": 3,
        "num_keep": 4,
        "mirostat": 2,  # unknown to Hearth: ignored, as Ollama ignores options it lacks
        "num_gpu": 99,
    }
    r = await client.post("/api/chat", json=chat(stream=False, options=opts))
    assert r.status_code == 200, r.text
    s = (await engine(app)).requests[-1].sampling
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.seed) == (0.3, 5, 0.5, 0.1, 42)
    assert (s.repeat_penalty, s.repeat_last_n) == (1.2, 32)
    assert (s.presence_penalty, s.frequency_penalty) == (0.5, 0.25)
    assert (await engine(app)).requests[-1].max_tokens == 3
    stopped = await client.post(
        "/api/chat", json=chat(stream=False, options={"stop": ["gamma"], "num_predict": 8})
    )
    assert stopped.json()["message"]["content"] == "alpha beta "
    assert stopped.json()["done_reason"] == "stop"


async def test_num_ctx_is_the_requests_window(app: FastAPI, client: httpx.AsyncClient) -> None:
    r = await client.post("/api/chat", json=chat(stream=False, options={"num_ctx": 40}))
    assert r.status_code == 200, r.text
    request = (await engine(app)).requests[-1]
    assert len(request.prompt) + (request.max_tokens or 0) == 40
    wide = await client.post("/api/chat", json=chat(stream=False, options={"num_ctx": 10**6}))
    assert wide.status_code == 200, wide.text  # the loaded context is the most there is
    tight = await client.post("/api/chat", json=chat(options={"num_ctx": 2}))
    assert_error(tight, 400, "context_length_exceeded", "options.num_ctx")


async def test_tool_calls_have_object_arguments(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies.append("Let me look." + CALL)
    whole = await client.post("/api/chat", json=chat(stream=False, tools=[WEATHER]))
    msg = whole.json()["message"]
    assert msg["content"] == "Let me look."
    (call,) = msg["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == {"city": "Paris"}
    assert whole.json()["done_reason"] == "stop"
    fake.replies.append("Let me look." + CALL)
    forced = chat(stream=False, tools=[WEATHER], tool_choice="required")
    assert (await client.post("/api/chat", json=forced)).json()["message"]["tool_calls"]
    assert fake.requests[-1].grammar is not None  # Hearth's extension: the call is forced
    fake.replies.append("Let me look." + CALL)
    out = lines(await client.post("/api/chat", json=chat(tools=[WEATHER])))
    calls = [c for p in out for c in p["message"].get("tool_calls", [])]
    assert [c["function"]["arguments"] for c in calls] == [{"city": "Paris"}]
    # The round trip: the call (arguments as an object) and its result by tool name.
    history = [
        *HI,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"},
    ]
    r = await client.post("/api/chat", json=chat(stream=False, messages=history, tools=[WEATHER]))
    assert r.status_code == 200, r.text
    prompt = fake.prompts[-1]
    assert "18 degrees" in prompt and "Paris" in prompt


async def test_thinking_is_its_own_field(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    fake.replies += ["<think>Add them.</think>4", "<think>Add them.</think>4"]
    whole = (await client.post("/api/chat", json=chat(stream=False, think=True))).json()
    assert whole["message"]["thinking"] == "Add them."
    assert whole["message"]["content"] == "4"
    out = lines(await client.post("/api/chat", json=chat(think="high")))
    assert "".join(p["message"].get("thinking", "") for p in out) == "Add them."
    assert "".join(p["message"]["content"] for p in out) == "4"


async def test_format_json_schema(app: FastAPI, client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake = await engine(app)
    fake.replies.append('{"n": 3}')
    r = await client.post("/api/chat", json=chat(stream=False, format=schema))
    assert json.loads(r.json()["message"]["content"]) == {"n": 3}
    assert fake.requests[-1].grammar is not None
    fake.replies.append("{}")
    await client.post("/api/chat", json=chat(stream=False, format="json"))
    assert fake.requests[-1].grammar is not None
    bad = await client.post("/api/chat", json=chat(format={"type": "object", "not": {}}))
    assert_error(bad, 400, "unsupported_schema", "format")


async def test_logprobs(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/chat",
        json=chat(stream=False, logprobs=True, top_logprobs=2, options={"num_predict": 2}),
    )
    assert r.status_code == 200, r.text
    plain = await client.post("/api/chat", json=chat(stream=False, options={"num_predict": 2}))
    assert "logprobs" not in plain.json()
    alone = await client.post("/api/chat", json=chat(top_logprobs=2))
    assert_error(alone, 400, "invalid_request", "top_logprobs")


async def test_generate_system_raw_context(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    body = {"model": FAKE_ID, "prompt": "why", "stream": False, "options": {"num_predict": 2}}
    first = (await client.post("/api/generate", json={**body, "system": "Be brief."})).json()
    assert first["response"] == "alpha beta " and first["done_reason"] == "length"
    assert "Be brief." in fake.prompts[-1] and "why" in fake.prompts[-1]
    context = first["context"]
    assert context[: len(fake.requests[-1].prompt)] == fake.requests[-1].prompt
    assert len(context) > len(fake.requests[-1].prompt)  # the response's tokens follow
    again = await client.post("/api/generate", json={**body, "prompt": "more", "context": context})
    assert fake.requests[-1].prompt[: len(context)] == context
    assert again.json()["context"][: len(context)] == context
    raw = await client.post("/api/generate", json={**body, "prompt": "x y", "raw": True})
    assert raw.status_code == 200 and fake.prompts[-1] == "x y"  # no template around it
    out = lines(await client.post("/api/generate", json={**body, "stream": True}))
    assert "".join(p["response"] for p in out) == "alpha beta "
    assert out[-1]["done"] and out[-1]["context"] and set(out[-1]) >= STATS
    bad = await client.post("/api/generate", json={**body, "context": [5, 1000]})
    assert_error(bad, 400, "invalid_request", "context")


async def test_suffix_fills_in_the_middle(app: FastAPI, client: httpx.AsyncClient) -> None:
    fake = await engine(app)
    body = {"model": FAKE_ID, "prompt": "def f(", "suffix": "return x", "stream": False}
    r = await client.post("/api/generate", json=body | {"options": {"num_predict": 2}})
    assert r.status_code == 200, r.text
    prompt = fake.requests[-1].prompt
    pre, suf, mid = 997, 998, 999
    assert prompt[-1] == mid and pre in prompt and prompt.index(pre) < prompt.index(suf)
    fake.info = dataclasses.replace(fake.info, fim=None)
    r = await client.post("/api/generate", json=body)
    assert_error(r, 400, "invalid_request", "suffix")
    assert "fill-in-the-middle" in r.json()["error"]


async def test_empty_requests_load_and_unload(app: FastAPI, client: httpx.AsyncClient) -> None:
    manager = app.state.runtime.models
    r = await client.post("/api/chat", json={"model": FAKE_ID, "messages": []})
    assert r.json()["done_reason"] == "load" and r.json()["done"] is True
    assert manager.is_loaded(FAKE_ID)
    r = await client.post("/api/generate", json={"model": FAKE_ID, "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    assert not manager.is_loaded(FAKE_ID)
    r = await client.post("/api/generate", json={"model": FAKE_ID})
    assert r.json()["done_reason"] == "load" and manager.is_loaded(FAKE_ID)


async def test_keep_alive_zero_unloads_after_the_answer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    r = await client.post("/api/chat", json=chat(stream=False, keep_alive=0))
    assert r.status_code == 200
    assert not app.state.runtime.models.is_loaded(FAKE_ID)


async def test_embed_and_embeddings(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/embed", json={"model": FAKE_ID, "input": ["a b", "c"]})
    out = r.json()
    assert len(out["embeddings"]) == 2 and len(out["embeddings"][0]) == 8
    assert out["prompt_eval_count"] == 3 and out["total_duration"] >= out["load_duration"]
    one = (await client.post("/api/embed", json={"model": FAKE_ID, "input": "a b"})).json()
    assert one["embeddings"][0] == out["embeddings"][0]
    legacy = (await client.post("/api/embeddings", json={"model": FAKE_ID, "prompt": "a b"})).json()
    assert legacy == {"embedding": out["embeddings"][0]}
    long = {"model": FAKE_ID, "input": "a " * 300}
    assert (await client.post("/api/embed", json=long)).status_code == 200  # truncated
    refused = await client.post("/api/embed", json=long | {"truncate": False})
    assert_error(refused, 400, "context_length_exceeded", "input")


async def test_version_and_root_probe(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/version")).json()["version"]
    root = await client.get("/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert (await client.head("/")).status_code == 200


async def test_names_with_latest(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/chat", json=chat(model=f"{FAKE_ID}:latest", stream=False))
    assert r.status_code == 200 and r.json()["model"] == f"{FAKE_ID}:latest"


@pytest.mark.parametrize(
    ("route", "body", "status", "code", "param"),
    [
        ("/api/chat", {"model": "nope", "messages": HI}, 404, "model_not_found", "model"),
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model_not_found", "model"),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, "model_not_found", "model"),
        ("/api/chat", {"messages": HI}, 400, "invalid_request", "model"),
        ("/api/chat", chat(messages=[{"role": "robot"}]), 400, "invalid_request", None),
        ("/api/chat", chat(options={"temperature": "hot"}), 400, "invalid_request", None),
        ("/api/chat", chat(options={"num_predict": 0}), 400, "invalid_request", None),
        ("/api/chat", chat(options={"top_p": 7}), 400, "invalid_request", None),
        ("/api/chat", chat(think="very"), 400, "invalid_request", None),
        ("/api/chat", chat(keep_alive="soon"), 400, "invalid_request", None),
        ("/api/chat", chat(format="yaml"), 400, "invalid_request", None),
        (
            "/api/chat",
            chat(messages=[{"role": "user", "content": "x", "images": ["aGk="]}]),
            400,
            "invalid_request",
            "messages.0.images",
        ),
        (
            "/api/generate",
            {"model": FAKE_ID, "prompt": "x", "images": ["aGk="]},
            400,
            "invalid_request",
            "images",
        ),
        (
            "/api/generate",
            {"model": FAKE_ID, "prompt": "x", "template": "{{ .Prompt }}"},
            400,
            "invalid_request",
            "template",
        ),
        (
            "/api/generate",
            {"model": FAKE_ID, "prompt": "x", "context": [True]},
            400,
            "invalid_request",
            None,
        ),
        ("/api/embed", {"model": FAKE_ID, "input": []}, 400, "invalid_request", "input"),
        ("/api/embed", {"model": FAKE_ID}, 400, "invalid_request", "input"),
    ],
)
async def test_bad_requests_get_ollamas_error_shape(
    client: httpx.AsyncClient,
    route: str,
    body: dict[str, Any],
    status: int,
    code: str,
    param: str | None,
) -> None:
    r = await client.post(route, json=body)
    if param is None:  # pydantic names a nested field; the shape is what matters
        assert r.status_code == status, r.text
        assert isinstance(r.json()["error"], str) and r.json()["code"] == code
    else:
        assert_error(r, status, code, param)
    if status == 404:
        assert r.json()["error"] == 'model "nope" not found, try pulling it first'
    ok = await client.post("/api/chat", json=chat(stream=False, options={"num_predict": 1}))
    assert ok.status_code == 200


async def test_an_error_mid_stream_is_an_error_line(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from hearth.errors import EngineError

    fake = await engine(app)
    fake.fail_with = EngineError("the engine broke")
    out = lines(await client.post("/api/chat", json=chat(options={"num_predict": 4})))
    assert out[-1]["error"] == "the engine broke"
    assert not any(p.get("done") for p in out)
