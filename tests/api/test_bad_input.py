"""Every value a client sends is checked before an engine sees it: each bad one is a 400 naming
its parameter, in OpenAI's error shape, on every JSON route (the real model: tests/e2e)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hearth.api.jsonscan import MAX_JSON_DEPTH, JsonBodyScan
from hearth.grammar.gbnf import MAX_GRAMMAR_CHARS, MAX_GRAMMAR_DEPTH
from tests.api.conftest import FAKE_ID, chat_body
from tests.api.test_errors import assert_error, still_answers
from tests.errorshape import error_fields

pytestmark = pytest.mark.anyio

VOCAB = 1000  # the fake engine's n_vocab
JSON = {"content-type": "application/json"}


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": FAKE_ID, "prompt": "hi", "max_tokens": 2, **extra}


def deep_grammar(depth: int) -> str:
    return "root ::= " + "(" * depth + '"a"' + ")" * depth


# (route, body, param, words in the message)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # Token ids: in range, checked before detokenize (echo included) and never bools.
    ("/v1/completions", completion(prompt=[VOCAB]), "prompt", f"token id {VOCAB}"),
    ("/v1/completions", completion(prompt=[999999999]), "prompt", "999999999"),
    ("/v1/completions", completion(prompt=[-5, 3]), "prompt", "token id -5"),
    ("/v1/completions", completion(prompt=[[1, 2], [999999999]]), "prompt", "in prompt 1"),
    ("/v1/completions", completion(prompt=[VOCAB - 1, VOCAB], echo=True), "prompt", "outside"),
    ("/v1/completions", completion(prompt=[10**30]), "prompt", "outside the vocabulary"),
    ("/v1/completions", completion(prompt=[True]), "prompt", "holds true"),
    ("/v1/completions", completion(prompt=[[1], [False]]), "prompt", "holds false"),
    ("/v1/completions", completion(prompt=[1, "2"]), "prompt", 'holds "2"'),
    ("/v1/completions", completion(prompt=[1.5]), "prompt", "holds 1.5"),
    ("/v1/embeddings", {"model": FAKE_ID, "input": [VOCAB]}, "input", f"token id {VOCAB}"),
    ("/v1/embeddings", {"model": FAKE_ID, "input": [-1]}, "input", "token id -1"),
    ("/v1/embeddings", {"model": FAKE_ID, "input": [[1], [VOCAB]]}, "input", "in input 1"),
    ("/v1/embeddings", {"model": FAKE_ID, "input": [True]}, "input", "holds true"),
    ("/v1/embeddings", {"model": FAKE_ID, "input": "a", "dimensions": 0}, "dimensions", ""),
    ("/v1/embeddings", {"model": FAKE_ID, "input": "a", "dimensions": -3}, "dimensions", ""),
    ("/v1/chat/completions", chat_body(logit_bias={"1000": 1}), "logit_bias", "1000"),
    ("/v1/chat/completions", chat_body(logit_bias={"-1": 1}), "logit_bias", "-1"),
    ("/v1/chat/completions", chat_body(logit_bias={"1": 101}), "logit_bias", "between"),
    ("/v1/completions", completion(logit_bias={"9" * 5000: 1}), "logit_bias", "token ids"),
    # Counts and ranges.
    ("/v1/completions", completion(max_tokens=0), "max_tokens", ""),
    ("/v1/completions", completion(max_tokens=-1), "max_tokens", ""),
    ("/v1/chat/completions", chat_body(max_completion_tokens=0), "max_completion_tokens", ""),
    ("/v1/completions", completion(n=0), "n", ""),
    ("/v1/completions", completion(n=9), "n", ""),
    ("/v1/completions", completion(logprobs=-1), "logprobs", ""),
    ("/v1/completions", completion(logprobs=21), "logprobs", ""),
    ("/v1/chat/completions", chat_body(logprobs=True, top_logprobs=21), "top_logprobs", ""),
    ("/v1/chat/completions", chat_body(logprobs=True, top_logprobs=-1), "top_logprobs", ""),
    ("/v1/completions", completion(seed=2**64), "seed", ""),
    ("/v1/completions", completion(seed=-(2**63) - 1), "seed", ""),
    ("/v1/completions", completion(top_k=-1), "top_k", ""),
    ("/v1/completions", completion(top_k=2**31), "top_k", ""),
    ("/v1/completions", completion(repeat_last_n=-1), "repeat_last_n", ""),
    ("/v1/completions", completion(repeat_last_n=2**31), "repeat_last_n", ""),
    ("/v1/completions", completion(draft_max=0), "draft_max", ""),
    ("/v1/completions", completion(draft_max=65), "draft_max", ""),
    ("/v1/completions", completion(stop=["x"] * 17), "stop", "16"),
    ("/v1/completions", completion(repeat_penalty=0), "repeat_penalty", ""),
    ("/v1/completions", completion(top_p=1.5), "top_p", ""),
    ("/v1/completions", completion(min_p=-0.1), "min_p", ""),
    ("/v1/completions", completion(presence_penalty=3), "presence_penalty", ""),
    # Grammars: llama.cpp's parser recurses per parenthesis.
    ("/v1/completions", completion(grammar=deep_grammar(20000)), "grammar", "nest deeper"),
    ("/v1/chat/completions", chat_body(grammar=deep_grammar(65)), "grammar", "nest deeper"),
    (
        "/v1/completions",
        completion(grammar='root ::= "' + "a" * MAX_GRAMMAR_CHARS + '"'),
        "grammar",
        "longer than",
    ),
]


@pytest.mark.parametrize(
    ("route", "body", "param", "words"), CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES]
)
async def test_bad_values_are_400_naming_the_param(
    client: httpx.AsyncClient, route: str, body: dict[str, Any], param: str, words: str
) -> None:
    r = await client.post(route, json=body)
    assert_error(r, 400, "invalid_request", param)
    assert words in error_fields(r.json(), route)["message"]
    await still_answers(client)


async def test_huge_max_tokens_is_past_the_context(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json=completion(max_tokens=2**64))
    assert_error(r, 400, "context_length_exceeded", "max_tokens")


async def test_bounds_themselves_are_accepted(client: httpx.AsyncClient) -> None:
    for body in [
        completion(prompt=[0, VOCAB - 1], echo=True),
        completion(prompt=[[0], [VOCAB - 1]]),
        completion(seed=2**64 - 1),
        completion(seed=-(2**63)),
        completion(logit_bias={str(VOCAB - 1): -100, "0": 100}),
        completion(grammar=deep_grammar(MAX_GRAMMAR_DEPTH)),
    ]:
        r = await client.post("/v1/completions", json=body)
        assert r.status_code == 200, (body, r.text)


# Non-finite numbers: Python's json reads NaN and Infinity, and 1e999 as infinity.
NON_FINITE = [
    b'{"model": "fake-model", "prompt": "hi", "temperature": NaN}',
    b'{"model": "fake-model", "prompt": "hi", "top_p": -Infinity}',
    b'{"model": "fake-model", "prompt": "hi", "logit_bias": {"1": NaN}}',
]


@pytest.mark.parametrize("body", NON_FINITE)
async def test_nan_and_infinity_are_not_json(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/v1/completions", content=body, headers=JSON)
    assert_error(r, 400, "invalid_json", None)
    assert "NaN" in r.json()["error"]["message"]


async def test_a_number_that_overflows_to_infinity(client: httpx.AsyncClient) -> None:
    for field in ("temperature", "repeat_penalty", "frequency_penalty"):
        body = b'{"model": "fake-model", "prompt": "hi", "%s": 1e999}' % field.encode()
        r = await client.post("/v1/completions", content=body, headers=JSON)
        assert_error(r, 400, "invalid_request", field)


ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/api/load"),
    ("POST", "/api/unload"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/pull"),
]
DEEP = 10_000
BAD_BODIES = [
    ("invalid utf-8", b'{"model": "fake-model", "prompt": "\xff\xfe"}', "UTF-8"),
    ("truncated utf-8", b'{"model": "fake-model", "prompt": "\xc3', "UTF-8"),
    ("deep arrays", b"[" * DEEP, "deeper"),
    ("deep objects", b'{"a":' * DEEP, "deeper"),
    ("deep inside", b'{"model": "fake-model", "prompt": "hi", "x": ' + b"[" * DEEP, "deeper"),
    ("lone surrogate", b'{"model": "fake-model", "prompt": "\\ud800"}', "surrogate"),
    ("nan", b'{"model": NaN}', "NaN"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[r for _, r in ROUTES])
@pytest.mark.parametrize(("name", "body", "words"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_unreadable_bodies_are_400_on_every_json_route(
    client: httpx.AsyncClient, method: str, route: str, name: str, body: bytes, words: str
) -> None:
    r = await client.request(method, route, content=body, headers=JSON)
    assert_error(r, 400, "invalid_json", None)
    assert words in error_fields(r.json(), route)["message"]
    await still_answers(client)


async def test_without_content_type_the_body_is_still_checked(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/completions", content=b"[" * DEEP)
    assert_error(r, 400, "invalid_json", None)


async def test_a_body_streamed_in_small_chunks_is_checked_across_them(
    client: httpx.AsyncClient,
) -> None:
    async def chunks(body: bytes) -> Any:
        for i in range(0, len(body), 3):
            yield body[i : i + 3]

    bad = b'{"model": "fake-model", "prompt": "\\ud800\\u0041"}'
    r = await client.post("/v1/completions", content=chunks(bad), headers=JSON)
    assert_error(r, 400, "invalid_json", None)
    good = b'{"model": "fake-model", "prompt": "\\ud83d\\ude00 \\"[{", "max_tokens": 2}'
    r = await client.post("/v1/completions", content=chunks(good), headers=JSON)
    assert r.status_code == 200, r.text


async def test_a_number_past_pythons_digit_limit(client: httpx.AsyncClient) -> None:
    # json.loads raises ValueError there; FastAPI makes it a bare 400, which stays a 400.
    body = b'{"model": "fake-model", "prompt": "hi", "seed": ' + b"9" * 5000 + b"}"
    r = await client.post("/v1/completions", content=body, headers=JSON)
    assert_error(r, 400, "invalid_json", None)
    assert "4300" in r.json()["error"]["message"]


def feed_all(body: bytes, size: int) -> str | None:
    scan = JsonBodyScan()
    for i in range(0, len(body), size):
        problem = scan.feed(body[i : i + size], i + size >= len(body))
        if problem:
            return problem
    return None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, None),
        (b"[" * (MAX_JSON_DEPTH + 1), "deeper"),
        (b'["[[[[[[", "\\"[[["]', None),  # brackets in strings do not count
        (b'{"NaN": "Infinity", "I": "N"}', None),
        (b'{"a": "\\ud83d\\ude00 \\u00e9 \\\\ud800"}', None),  # a pair; an escaped backslash
        (b'{"a": "\\udc00"}', "surrogate"),
        (b'{"a": "\\ud800x"}', "surrogate"),
        (b'{"a": "\\u00e9"}', None),
        ("{'a': 'é'}".replace("'", '"').encode(), None),
        (b"\xed\xa0\x80", "UTF-8"),  # a surrogate encoded in UTF-8 is not UTF-8
        (b"[1, -Infinity]", "NaN"),
    ],
)
@pytest.mark.parametrize("size", [1, 2, 5, 13, 1 << 16])
def test_json_body_scan(body: bytes, words: str | None, size: int) -> None:
    problem = feed_all(body, size)
    assert problem is None if words is None else problem is not None and words in problem


async def test_a_page_cursor_past_sqlites_integers_is_a_400(client: httpx.AsyncClient) -> None:
    # Found by tests/api/test_openapi_fuzz.py: it reached SQLite and overflowed there, a 500.
    r = await client.get("/api/requests", params={"before": 2**63})
    assert r.status_code == 400 and error_fields(r.json(), "/api/requests")["param"] == "before"
    r = await client.get("/api/requests", params={"before": 2**63 - 1})
    assert r.status_code == 200 and r.json()["data"] == []


async def test_a_keep_alive_past_a_century_is_forever(client: httpx.AsyncClient) -> None:
    # 1e30 seconds from now is no timestamp: /api/ps would fail on it from then on.
    r = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1, keep_alive=1e30))
    assert r.status_code == 200, r.text
    r = await client.get("/api/ps")
    assert r.status_code == 200, r.text
    assert [m["keep_alive"] for m in r.json()["models"]] == ["forever"]
    r = await client.post("/api/load", json={"model": FAKE_ID, "keep_alive": 1e300})
    assert r.status_code == 200, r.text
