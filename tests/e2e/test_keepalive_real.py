"""SSE keep-alive comments while a prompt longer than one decode step is read, on the wire."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

BATCH = 64
KEEP_ALIVE = ": keep-alive"


@pytest.fixture(scope="module")
def small_batch(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """Reads at most 64 prompt tokens per decode step."""
    return server_factory("--parallel", "2", "--batch-size", str(BATCH))


def long_text(topic: str) -> str:
    return f"Here is a list about {topic}: " + ", ".join(f"{topic} {i}" for i in range(80))


def sse_lines(server: RunningServer, path: str, body: dict[str, Any]) -> list[str]:
    """The stream's non-empty lines, as sent."""
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=120) as r:
        assert r.status_code == 200
        return [line for line in r.iter_lines() if line]


def data(line: str) -> Any:
    return json.loads(line.removeprefix("data: "))


def expected_keep_alives(lines: list[str]) -> int:
    """One per decode step that read part of the prompt without finishing it."""
    usage = data(next(ln for ln in lines if ln.startswith("data: {") and '"usage":{' in ln))
    usage = usage["usage"]
    read = usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
    assert read > BATCH  # the prompt takes several steps
    return math.ceil(read / BATCH) - 1


def test_chat_stream_sends_keep_alives_before_the_first_token(small_batch: RunningServer) -> None:
    lines = sse_lines(
        small_batch,
        "/v1/chat/completions",
        {
            "model": STARTER_ID,
            "messages": [{"role": "user", "content": long_text("rivers")}],
            "max_tokens": 4,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    first_content = next(
        i
        for i, ln in enumerate(lines)
        if ln.startswith("data: {") and any(c["delta"].get("content") for c in data(ln)["choices"])
    )
    keep_alives = [i for i, ln in enumerate(lines) if ln == KEEP_ALIVE]
    # The role chunk goes out at once; then comments while the prompt is read, then text.
    assert data(lines[0])["choices"][0]["delta"]["role"] == "assistant"
    assert keep_alives and all(i < first_content for i in keep_alives)
    assert len(keep_alives) == expected_keep_alives(lines)
    assert lines[-1] == "data: [DONE]"


def test_completions_stream_starts_with_keep_alives(small_batch: RunningServer) -> None:
    lines = sse_lines(
        small_batch,
        "/v1/completions",
        {
            "model": STARTER_ID,
            "prompt": long_text("mountains"),
            "max_tokens": 4,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    first_data = next(i for i, ln in enumerate(lines) if ln.startswith("data: "))
    keep_alives = [i for i, ln in enumerate(lines) if ln == KEEP_ALIVE]
    assert keep_alives and keep_alives[0] < first_data
    assert keep_alives == list(range(len(keep_alives)))  # all of them before any data
    assert len(keep_alives) == expected_keep_alives(lines)
    assert lines[-1] == "data: [DONE]"
