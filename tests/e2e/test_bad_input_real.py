"""Bad values against the real server and the starter model: each is a 400 naming its
parameter before llama.cpp sees it, and the server answers the next request (several of these
once aborted the whole process: token ids past the vocabulary, a grammar nested 20,000 deep)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer
from tests.errorshape import error_fields

pytestmark = pytest.mark.e2e

N_VOCAB = 49152  # the starter's vocabulary
JSON = {"content-type": "application/json"}


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": STARTER_ID, "prompt": "Hi", "max_tokens": 2, **extra}


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": STARTER_ID,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        **extra,
    }


def embedding(value: Any) -> dict[str, Any]:
    return {"model": STARTER_ID, "input": value}


def nested_grammar(rules: int, depth: int) -> str:
    body = "".join(f"r{i} ::= {'(' * depth}r{i + 1}{')' * depth}\n" for i in range(rules))
    return f'root ::= r0\n{body}r{rules} ::= "a"\n'


# (id, route, JSON body or raw bytes, code, param)
CASES: list[tuple[str, str, Any, str, str | None]] = [
    (
        "prompt id huge",
        "/v1/completions",
        completion(prompt=[999999999]),
        "invalid_request",
        "prompt",
    ),
    (
        "prompt id negative",
        "/v1/completions",
        completion(prompt=[-5, 3]),
        "invalid_request",
        "prompt",
    ),
    (
        "prompt ids nested",
        "/v1/completions",
        completion(prompt=[[1, 2], [999999999]]),
        "invalid_request",
        "prompt",
    ),
    (
        "prompt id echo",
        "/v1/completions",
        completion(prompt=[N_VOCAB - 1, N_VOCAB], echo=True),
        "invalid_request",
        "prompt",
    ),
    ("prompt id bool", "/v1/completions", completion(prompt=[True]), "invalid_request", "prompt"),
    ("embedding id", "/v1/embeddings", embedding([N_VOCAB]), "invalid_request", "input"),
    ("embedding ids nested", "/v1/embeddings", embedding([[1], [-1]]), "invalid_request", "input"),
    ("embedding id bool", "/v1/embeddings", embedding([False]), "invalid_request", "input"),
    (
        "logit_bias id",
        "/v1/chat/completions",
        chat(logit_bias={str(N_VOCAB): 5}),
        "invalid_request",
        "logit_bias",
    ),
    (
        "logit_bias negative",
        "/v1/completions",
        completion(logit_bias={"-1": 5}),
        "invalid_request",
        "logit_bias",
    ),
    (
        "max_tokens zero",
        "/v1/completions",
        completion(max_tokens=0),
        "invalid_request",
        "max_tokens",
    ),
    (
        "max_tokens negative",
        "/v1/completions",
        completion(max_tokens=-1),
        "invalid_request",
        "max_tokens",
    ),
    (
        "max_tokens huge",
        "/v1/completions",
        completion(max_tokens=2**64),
        "context_length_exceeded",
        "max_tokens",
    ),
    ("n", "/v1/completions", completion(n=9), "invalid_request", "n"),
    ("top_k", "/v1/completions", completion(top_k=-1), "invalid_request", "top_k"),
    (
        "repeat_last_n",
        "/v1/completions",
        completion(repeat_last_n=2**31),
        "invalid_request",
        "repeat_last_n",
    ),
    ("seed", "/v1/completions", completion(seed=2**64), "invalid_request", "seed"),
    ("logprobs", "/v1/completions", completion(logprobs=21), "invalid_request", "logprobs"),
    ("draft_max", "/v1/completions", completion(draft_max=0), "invalid_request", "draft_max"),
    ("stop count", "/v1/completions", completion(stop=["x"] * 17), "invalid_request", "stop"),
    (
        "dimensions",
        "/v1/embeddings",
        {**embedding("Hi"), "dimensions": 0},
        "invalid_request",
        "dimensions",
    ),
    (
        "grammar nested 20000",
        "/v1/completions",
        completion(grammar="root ::= " + "(" * 20000 + '"a"' + ")" * 20000),
        "invalid_request",
        "grammar",
    ),
    (
        "grammar rule chain",
        "/v1/chat/completions",
        chat(grammar=nested_grammar(1800, 64)),
        "invalid_request",
        "grammar",
    ),
    (
        "schema minimum infinite",
        "/v1/chat/completions",
        b'{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, '
        b'"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        b'{"type": "integer", "minimum": 1e999}}}}' % STARTER_ID.encode(),
        "invalid_request",
        "response_format.json_schema.schema",
    ),
    (
        "temperature NaN",
        "/v1/completions",
        b'{"model": "%s", "prompt": "Hi", "temperature": NaN}' % STARTER_ID.encode(),
        "invalid_json",
        None,
    ),
    (
        "lone surrogate",
        "/v1/chat/completions",
        b'{"model": "%s", "messages": [{"role": "user", "content": "\\ud800"}]}'
        % STARTER_ID.encode(),
        "invalid_json",
        None,
    ),
    ("utf-8 chat", "/v1/chat/completions", b'{"model": "\xff\xfe"}', "invalid_json", None),
    ("utf-8 completions", "/v1/completions", b'{"prompt": "\xc3\x28"}', "invalid_json", None),
    ("utf-8 embeddings", "/v1/embeddings", b'{"input": "\xed\xa0\x80"}', "invalid_json", None),
    ("utf-8 load", "/api/load", b'{"model": "\xff"}', "invalid_json", None),
    ("deep arrays chat", "/v1/chat/completions", b"[" * 10000, "invalid_json", None),
    ("deep objects completions", "/v1/completions", b'{"a":' * 10000, "invalid_json", None),
    ("deep embeddings", "/v1/embeddings", b'{"input": ' + b"[" * 10000, "invalid_json", None),
    ("deep pull", "/api/pull", b"[" * 10000, "invalid_json", None),
]


@pytest.mark.parametrize(
    ("name", "route", "body", "code", "param"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_value_is_400_and_the_server_lives_on(
    server: RunningServer, name: str, route: str, body: Any, code: str, param: str | None
) -> None:
    url = f"{server.url}{route}"
    if isinstance(body, bytes):
        r = httpx.post(url, content=body, headers=JSON, timeout=60)
    else:
        r = httpx.post(url, json=body, timeout=60)
    assert r.status_code == 400, r.text
    error = error_fields(r.json(), route)  # Ollama's shape under /api/, OpenAI's elsewhere
    assert (error["code"], error["param"]) == (code, param)
    if not route.startswith("/api/"):
        assert r.json()["error"]["type"] == "invalid_request_error"
    alive = httpx.post(f"{server.url}/v1/completions", json=completion(), timeout=60)
    assert alive.status_code == 200, f"after {name}: {alive.text}\n{server.output[-3000:]}"


def test_the_bounds_themselves_run(server: RunningServer) -> None:
    for body in [
        completion(prompt=[0, N_VOCAB - 1], echo=True),
        completion(prompt=[[1, 2], [N_VOCAB - 1]]),
        completion(seed=2**64 - 1, top_k=2**31 - 1, repeat_last_n=1 << 20, repeat_penalty=1.1),
        completion(logit_bias={str(N_VOCAB - 1): -100, "0": 100}),
        completion(grammar="root ::= " + "(" * 64 + '"a"' + ")" * 64),
    ]:
        r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, (body, r.text)
    r = httpx.post(f"{server.url}/v1/embeddings", json=embedding([[0], [N_VOCAB - 1]]), timeout=60)
    assert r.status_code == 200, r.text
