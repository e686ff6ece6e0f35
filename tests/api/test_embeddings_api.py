"""POST /v1/embeddings on the wire, with the fake engine (the real model: tests/e2e)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import pytest

from tests.api.conftest import FAKE_ID

pytestmark = pytest.mark.anyio


async def embed(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/embeddings", json={"model": FAKE_ID, **body})


async def test_shape_and_usage(client: httpx.AsyncClient) -> None:
    r = await embed(client, input=["one two", "three"])
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == FAKE_ID
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in body["data"])
    # The fake tokenizer makes one token per word.
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


async def test_string_and_token_inputs(client: httpx.AsyncClient) -> None:
    single = (await embed(client, input="hello")).json()["data"]
    assert len(single) == 1
    tokens = (await embed(client, input=[5])).json()["data"]  # "hello" is token 5 to the fake
    assert tokens[0]["embedding"] == single[0]["embedding"]
    nested = (await embed(client, input=[[5], [1, 2]])).json()
    assert len(nested["data"]) == 2 and nested["usage"]["prompt_tokens"] == 3


async def test_base64_is_little_endian_float32(client: httpx.AsyncClient) -> None:
    floats = (await embed(client, input="a bb ccc")).json()["data"][0]["embedding"]
    encoded = (await embed(client, input="a bb ccc", encoding_format="base64")).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert values == pytest.approx(floats, rel=1e-6)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": []}, "input", "empty"),
        ({"input": ""}, "input", "empty string"),
        ({"input": [[1], []]}, "input", "empty token array"),
        ({"input": [5000]}, "input", "outside the vocabulary"),
        ({"input": ["x"] * 2049}, "input", "2048"),
        ({"input": "a " * 300}, "input", "300 tokens"),
        ({"input": "a", "dimensions": 3}, "dimensions", "8 dimensions"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format", "encoding_format"),
        ({"input": [1, "a"]}, "input", "input"),
    ],
)
async def test_bad_input_is_400_and_the_server_keeps_answering(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, words: str
) -> None:
    r = await embed(client, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert (await embed(client, input="fine")).status_code == 200


async def test_too_long_says_context_length(client: httpx.AsyncClient) -> None:
    error = (await embed(client, input="a " * 300)).json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "context of 256 tokens" in error["message"]
