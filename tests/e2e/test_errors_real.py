"""Bad input against the real server: clear errors in OpenAI's shape, and it keeps serving."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

GOOD = {"model": STARTER_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def check(r: httpx.Response, status: int, code: str, server: RunningServer) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert set(err) == {"message", "type", "param", "code"}
    assert httpx.post(f"{server.url}/v1/chat/completions", json=GOOD, timeout=30).status_code == 200
    return err  # type: ignore[no-any-return]


def test_bad_inputs(server: RunningServer) -> None:
    url = f"{server.url}/v1/chat/completions"
    check(
        httpx.post(url, content=b"{oops", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
        server,
    )
    err = check(httpx.post(url, json={"model": STARTER_ID}), 400, "invalid_request", server)
    assert err["param"] == "messages"
    err = check(httpx.post(url, json={**GOOD, "model": "missing"}), 404, "model_not_found", server)
    assert err["param"] == "model"
    check(httpx.post(url, json={**GOOD, "n": 9}), 400, "invalid_request", server)
    check(httpx.post(url, json={**GOOD, "max_tokens": 0}), 400, "invalid_request", server)
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]}
    check(httpx.post(url, json=big, timeout=60), 413, "request_too_large", server)


def test_context_length_exceeded_before_any_work(server: RunningServer) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=STARTER_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=9000
        )
    assert info.value.code == "context_length_exceeded"
    # The default context is the one the model was trained for: 8192 tokens per sequence.
    assert "9000" in info.value.message and "8192" in info.value.message
    # It says how to get more: the flag, the per-model setting, the trained maximum.
    assert "--ctx-size" in info.value.message and "[[models]]" in info.value.message
    assert "trained for (8192 tokens)" in info.value.message
    long = "word " * 9000
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=STARTER_ID, messages=[{"role": "user", "content": long}]
        )
    assert info.value.code == "context_length_exceeded"


def test_a_cap_past_the_room_left_ends_the_answer_where_the_context_does(
    server: RunningServer,
) -> None:
    """As llama.cpp's server and Ollama do: agents send one fixed max_tokens while their
    history grows toward the context; that is no error, the answer stops at the context."""
    client = server.client()
    prompt = "word " * 8000
    answer = client.chat.completions.create(
        model=STARTER_ID,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=2048,
        extra_body={"ignore_eos": True},
    )
    assert answer.usage is not None
    room = 8192 - answer.usage.prompt_tokens
    assert 0 < room < 2048
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == room


def test_unknown_model_is_never_a_fallback(server: RunningServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        server.client().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.code == "model_not_found"


def test_api_key_required_when_set(server_factory) -> None:  # type: ignore[no-untyped-def]
    secured = server_factory("--api-key", "s3cret")
    with pytest.raises(openai.AuthenticationError):
        secured.client().models.list()
    ok = openai.OpenAI(base_url=f"{secured.url}/v1", api_key="s3cret")
    assert STARTER_ID in [m.id for m in ok.models.list().data]
    assert httpx.get(f"{secured.url}/health").status_code == 200


# A grammar llama.cpp parses, but that nothing can satisfy: llama.cpp never lets a token whose
# text starts with a NUL byte match, so at the first step the grammar allows no token at all.
IMPOSSIBLE = 'root ::= "\\x00"'


def test_a_request_failing_in_the_engine_leaves_the_others_running(server: RunningServer) -> None:
    args: dict[str, Any] = {
        "model": STARTER_ID,
        "messages": [{"role": "user", "content": "Tell me a long story about a dragon."}],
        "max_tokens": 160,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }

    async def main() -> tuple[str, list[str], list[str], int]:
        client = server.async_client()
        stream = await client.chat.completions.create(
            **args, stream=True, stream_options={"include_usage": True}
        )
        pieces: list[str] = []
        reasons: list[str] = []
        states: list[str] = []
        generated = 0
        async for chunk in stream:
            if chunk.usage is not None:
                generated = chunk.usage.completion_tokens
            for c in chunk.choices:
                pieces.append(c.delta.content or "")
                if c.finish_reason:
                    reasons.append(c.finish_reason)
            if len(pieces) == 5:  # mid-stream: fail another request in the same worker
                with pytest.raises(openai.InternalServerError) as info:
                    await client.chat.completions.create(
                        model=STARTER_ID,
                        messages=[{"role": "user", "content": "Say something."}],
                        max_tokens=8,
                        temperature=0,
                        extra_body={"grammar": IMPOSSIBLE},
                    )
                assert info.value.code == "engine_error"
                assert "grammar" in info.value.message
                states = [s["state"] for s in server.status()["models"][0]["slots"]]
        await client.close()
        return "".join(pieces), reasons, states, generated

    text, reasons, states, generated = asyncio.run(main())
    assert "generating" in states  # the stream was still running when the other one failed
    # ... and it ran to its end: every token asked for, finish_reason once.
    assert text and reasons == ["length"] and generated == 160
    # A streamed request fails the same way: one error event, then [DONE].
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json={**GOOD, "stream": True, "grammar": IMPOSSIBLE},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "engine_error"
    assert events[-1] == "data: [DONE]"
    assert httpx.post(f"{server.url}/v1/chat/completions", json=GOOD, timeout=30).status_code == 200
