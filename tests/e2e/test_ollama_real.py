"""Ollama's generation API on the real starter model, through the official `ollama` client:
chat streamed and not, num_predict and done_reason, seeds, generate (templated, raw, with
context), structured output, a tool-call round trip, logprobs, embeddings, keep_alive 0,
stats measured in nanoseconds, and the client's error type for unknown models and bad input.
Model management (tags, show, pull, copy, create) is in test_ollama_models_real.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import jsonschema
import ollama
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "num_predict": 24}
ASK = [{"role": "user", "content": "Name three colours."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_chat_streamed_and_not_agree(server: RunningServer) -> None:
    c = client(server)
    whole = c.chat(model=STARTER_ID, messages=ASK, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.done and whole.done_reason in ("stop", "length")
    parts = list(c.chat(model=STARTER_ID, messages=ASK, options=GREEDY, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    last = parts[-1]
    assert last.done and not any(p.done for p in parts[:-1])
    assert last.eval_count == whole.eval_count
    assert last.prompt_eval_count == whole.prompt_eval_count
    # The stats are measured: nanoseconds that add up.
    for r in (whole, last):
        assert r.eval_count and r.prompt_eval_count
        assert r.total_duration and r.eval_duration and r.prompt_eval_duration
        assert r.total_duration >= r.prompt_eval_duration + r.eval_duration
        assert r.load_duration is not None and r.load_duration >= 0
    # :latest is the same model.
    tagged = c.chat(model=f"{STARTER_ID}:latest", messages=ASK, options=GREEDY)
    assert tagged.message.content == whole.message.content


def test_num_predict_ends_with_length(server: RunningServer) -> None:
    r = client(server).chat(
        model=STARTER_ID,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        options={"num_predict": 5, "temperature": 0},
    )
    assert r.done_reason == "length" and r.eval_count == 5


def test_a_seed_reproduces_a_sampled_answer(server: RunningServer) -> None:
    c = client(server)
    opts = {"temperature": 1.0, "seed": 1234, "num_predict": 16}
    story = [{"role": "user", "content": "Tell me about the sea."}]
    a = c.chat(model=STARTER_ID, messages=story, options=opts).message.content
    b = c.chat(model=STARTER_ID, messages=story, options=opts).message.content
    assert a and a == b


def test_generate_templated_raw_and_continued(server: RunningServer) -> None:
    c = client(server)
    templated = c.generate(
        model=STARTER_ID, prompt="What is 2+2?", system="Answer briefly.", options=GREEDY
    )
    assert templated.response and templated.done
    assert templated.context and len(templated.context) > (templated.prompt_eval_count or 0)
    streamed = list(
        c.generate(
            model=STARTER_ID,
            prompt="What is 2+2?",
            system="Answer briefly.",
            options=GREEDY,
            stream=True,
        )
    )
    assert "".join(p.response for p in streamed) == templated.response
    assert streamed[-1].context == templated.context
    # `context` continues the exchange: the next prompt is read after it.
    follow = c.generate(
        model=STARTER_ID, prompt="And 3+3?", context=templated.context, options=GREEDY
    )
    assert follow.prompt_eval_count and follow.prompt_eval_count > len(templated.context)
    assert list(follow.context or [])[: len(templated.context)] == list(templated.context)
    # Raw: no template, the text is continued as it is.
    raw = c.generate(model=STARTER_ID, prompt="The capital of France is", raw=True, options=GREEDY)
    assert raw.response
    assert (raw.prompt_eval_count or 0) < (templated.prompt_eval_count or 0)


def test_format_json_schema(server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    r = client(server).chat(
        model=STARTER_ID,
        messages=[{"role": "user", "content": "Describe the weather in Rome as JSON."}],
        format=schema,
        options={"temperature": 0, "num_predict": 64},
    )
    jsonschema.validate(json.loads(r.message.content or ""), schema)
    any_json = client(server).generate(
        model=STARTER_ID,
        prompt="Give one fruit and its colour as JSON.",
        format="json",
        options={"temperature": 0, "num_predict": 128},
    )
    assert any_json.done_reason == "stop", any_json.response
    json.loads(any_json.response)


def test_a_tool_call_round_trip(server: RunningServer) -> None:
    c = client(server)
    ask = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    # The 135M starter never calls a tool unforced, and Ollama's API cannot force one: the
    # first turn uses Hearth's `tool_choice` extension (the client has no argument for it),
    # read back with the client's own response type.
    body = {
        "model": STARTER_ID,
        "messages": ask,
        "tools": [WEATHER],
        "tool_choice": "required",
        "stream": False,
        "options": {"temperature": 0},
    }
    raw = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert raw.status_code == 200, raw.text
    r = ollama.ChatResponse.model_validate(raw.json())
    (call,) = r.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(raw.json()["message"]["tool_calls"][0]["function"]["arguments"], dict)
    jsonschema.validate(dict(call.function.arguments), WEATHER["function"]["parameters"])
    # Streamed, the call arrives whole in one line, with the same arguments.
    lines = [
        json.loads(x)
        for x in httpx.post(
            f"{server.url}/api/chat", json={**body, "stream": True}, timeout=120
        ).text.splitlines()
    ]
    streamed = [t for x in lines for t in x["message"].get("tool_calls", [])]
    assert [t["function"]["arguments"] for t in streamed] == [dict(call.function.arguments)]
    # The client sends the call (arguments as an object) and the result by tool name back.
    reply = c.chat(
        model=STARTER_ID,
        messages=[
            *ask,
            r.message,
            {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"},
        ],
        tools=[WEATHER],
        options=GREEDY,
    )
    assert reply.done and reply.message.content
    assert (reply.prompt_eval_count or 0) > (r.prompt_eval_count or 0)


def test_logprobs(server: RunningServer) -> None:
    r = client(server).chat(
        model=STARTER_ID,
        messages=ASK,
        options={"temperature": 0, "num_predict": 4},
        logprobs=True,
        top_logprobs=3,
    )
    assert r.logprobs and len(r.logprobs) == r.eval_count
    first = r.logprobs[0]
    assert first.logprob <= 0 and first.top_logprobs and len(first.top_logprobs) == 3
    # Greedy: the chosen token is the likeliest.
    assert first.token == first.top_logprobs[0].token
    assert "".join(lp.token for lp in r.logprobs) == r.message.content


def test_embed_and_embeddings(server: RunningServer) -> None:
    c = client(server)
    r = c.embed(model=STARTER_ID, input=["a cat", "a dog"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) > 100
    one = c.embed(model=STARTER_ID, input="a cat")
    assert one.embeddings[0] == pytest.approx(r.embeddings[0], abs=1e-5)
    legacy = c.embeddings(model=STARTER_ID, prompt="a cat")
    assert list(legacy.embedding) == pytest.approx(r.embeddings[0], abs=1e-5)


def test_suffix_on_a_model_without_fim_tokens_is_a_clear_400(server: RunningServer) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client(server).generate(model=STARTER_ID, prompt="def f(", suffix="return 1")
    assert err.value.status_code == 400 and "fill-in-the-middle" in err.value.error


def test_errors_reach_the_client_as_response_errors(server: RunningServer) -> None:
    c = client(server)
    with pytest.raises(ollama.ResponseError) as missing:
        c.chat(model="no-such-model", messages=ASK)
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "no-such-model" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as streamed:
        list(c.chat(model="no-such-model", messages=ASK, stream=True))
    assert streamed.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as bad:
        c.chat(model=STARTER_ID, messages=ASK, options={"temperature": -1})
    assert bad.value.status_code == 400 and "temperature" in bad.value.error
    # Bodies no client would send: 400s, never 5xx, in Ollama's shape.
    for body in (b"{not json", b'{"model": 1}', b'{"model": "x", "messages": "hi"}'):
        r = httpx.post(f"{server.url}/api/chat", content=body, timeout=30)
        assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
    assert c.chat(model=STARTER_ID, messages=ASK, options={"num_predict": 1}).done


def test_probes(server: RunningServer) -> None:
    assert httpx.get(server.url, timeout=10).text == "Ollama is running"
    assert httpx.head(server.url, timeout=10).status_code == 200
    assert client(server).ps() is not None
    assert httpx.get(f"{server.url}/api/version", timeout=10).json()["version"]


def test_keep_alive_zero_unloads_the_model(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(starter_model, models / "starter.gguf")
    lazy = start_server(tmp_path, None, models_dir=models)  # nothing loaded at start
    try:
        c = client(lazy)
        c.chat(model="starter", messages=ASK, options={"num_predict": 2})
        assert [m.model for m in c.ps().models] == ["starter"]
        c.chat(model="starter", messages=ASK, options={"num_predict": 2}, keep_alive=0)
        assert c.ps().models == []
        # An empty request loads the model; with keep_alive 0 it unloads it.
        assert c.generate(model="starter").done_reason == "load"
        assert [m.model for m in c.ps().models] == ["starter"]
        assert c.generate(model="starter", keep_alive=0).done_reason == "unload"
        assert c.ps().models == []
    finally:
        lazy.stop()
