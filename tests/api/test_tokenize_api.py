"""POST /tokenize and /detokenize (vLLM's shape, llama.cpp's field names accepted) on the
fake engine: a prompt, messages through the chat template, and the bad cases."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import FAKE_ID

pytestmark = pytest.mark.anyio


async def test_a_prompt_and_messages(client: httpx.AsyncClient) -> None:
    r = await client.post("/tokenize", json={"model": FAKE_ID, "prompt": "one three"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == [3, 5] and body["count"] == 2 and body["max_model_len"] > 0
    same = await client.post("/tokenize", json={"model": FAKE_ID, "content": "one three"})
    assert same.json()["tokens"] == [3, 5]  # llama.cpp's name for the prompt
    chat = await client.post(
        "/tokenize", json={"model": FAKE_ID, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert chat.status_code == 200, chat.text
    counted = await client.post(
        "/v1/messages/count_tokens",
        json={"model": FAKE_ID, "messages": [{"role": "user", "content": "hi"}]},
    )
    # The same rendering as a generation (and Anthropic's count) sees.
    assert chat.json()["count"] == counted.json()["input_tokens"]
    back = await client.post("/detokenize", json={"model": FAKE_ID, "tokens": [1, 2]})
    assert back.status_code == 200 and back.json()["prompt"] == back.json()["content"] != ""


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"model": FAKE_ID}, "prompt"),
        ("/tokenize", {"model": FAKE_ID, "prompt": "a", "messages": [{"role": "user"}]}, "prompt"),
        ("/tokenize", {"model": "nope", "prompt": "a"}, "model"),
        ("/tokenize", {"model": FAKE_ID, "messages": []}, "messages"),
        ("/detokenize", {"model": FAKE_ID, "tokens": [5000]}, "tokens"),
        ("/detokenize", {"model": FAKE_ID, "tokens": [-1]}, "tokens"),
        ("/detokenize", {"model": FAKE_ID, "tokens": ["1"]}, "tokens.0"),
    ],
)
async def test_bad_requests_are_400s_naming_the_field(
    client: httpx.AsyncClient, path: str, body: dict[str, object], param: str
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == param
