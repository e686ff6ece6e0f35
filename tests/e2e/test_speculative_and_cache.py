"""Speculative decoding, the RAM prompt cache and prompt starts shared between sequences,
against the real starter model.

Speculation must never change the output. llama.cpp computes the same logits for a token
decoded alone and in a small batch while the KV cache holds fewer than 256 cells (beyond
that, its single-query attention splits the KV across threads and rounds differently), so
these comparisons keep prompt + output under that size; see docs/benchmarks.md."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

CODE = """def area(width, height):
    return width * height


def perimeter(width, height):
    return 2 * (width + height)
"""
COPY = [{"role": "user", "content": f"Copy this code exactly:\n\n{CODE}"}]


def post(server: RunningServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": STARTER_ID, "messages": COPY, "max_tokens": 90, **body},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def drafts(server: RunningServer) -> tuple[int, int]:
    (model,) = server.status()["models"]
    return model["draft_tokens"], model["draft_tokens_accepted"]


def check_same_output(server: RunningServer, mode: str) -> None:
    for sampling in ({"temperature": 0}, {"temperature": 0.9, "seed": 11}):
        post(server, **sampling)  # the prompt is cached the same way for both runs below
        plain = post(server, speculative="none", **sampling)
        before = drafts(server)
        fast = post(server, speculative=mode, **sampling)
        after = drafts(server)
        assert fast["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
        assert fast["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
        assert after[0] > before[0], "no draft tokens were verified"
        assert after[1] > before[1], "no draft token was accepted"


def test_ngram_speculation_changes_nothing_but_speed(
    server_factory: Callable[..., RunningServer],
) -> None:
    check_same_output(server_factory("--parallel", "1", "--ctx-size", "512"), "ngram")


def test_draft_model_speculation_changes_nothing_but_speed(
    server_factory: Callable[..., RunningServer], starter_model: Path
) -> None:
    # The starter model drafts for itself: same vocabulary, and nearly every draft accepted.
    server = server_factory(
        "--parallel", "1", "--ctx-size", "512", "--draft-model", str(starter_model)
    )
    check_same_output(server, "draft")


def test_server_option_turns_speculation_on(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("--parallel", "1", "--speculative", "ngram")
    post(server, temperature=0)
    assert drafts(server)[0] > 0


def long_prompt(topic: str) -> list[dict[str, str]]:
    facts = " ".join(
        f"Fact {i} about {topic}: it is number {i * 7} in the list." for i in range(30)
    )
    return [{"role": "system", "content": facts}, {"role": "user", "content": f"Sum up {topic}."}]


def ask(server: RunningServer, messages: list[dict[str, str]]) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": STARTER_ID, "messages": messages, "max_tokens": 4, "temperature": 0},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()["usage"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("cache_ram", ["256", "0"])
def test_ram_cache_restores_a_prompt_after_its_sequence_was_reused(
    server_factory: Callable[..., RunningServer], cache_ram: str
) -> None:
    server = server_factory("--parallel", "1", "--cache-ram", cache_ram)
    first = ask(server, long_prompt("rivers"))
    ask(server, long_prompt("mountains"))  # the only sequence now holds another prompt
    again = ask(server, long_prompt("rivers"))
    cached = again["prompt_tokens_details"]["cached_tokens"]
    (model,) = server.status()["models"]
    if cache_ram == "0":
        assert cached < first["prompt_tokens"] // 4  # recomputed: only the template prefix
        assert model["prompt_cache"]["hits"] == 0
    else:
        assert cached == first["prompt_tokens"] - 1  # restored: only the last token recomputed
        assert model["prompt_cache"]["hits"] == 1
        assert model["prompt_cache"]["entries"] >= 1


def test_requests_started_together_compute_their_shared_prompt_once(
    server_factory: Callable[..., RunningServer],
) -> None:
    # Agent sessions started together share a long system prompt: one sequence computes it,
    # the others copy its KV. Prompt and answer stay under 256 cells, where batched and lone
    # decoding compute the same logits, so copied and computed prompts answer alike.
    client = server_factory("--parallel", "3", "--cache-ram", "0").client(timeout=120)
    facts = " ".join(f"Fact {i}: the box holds {i * 7} stones." for i in range(12))
    same: list[Any] = [
        {"role": "system", "content": facts},
        {"role": "user", "content": "Sum up the facts."},
    ]
    other = [same[0], {"role": "user", "content": "Which box holds 21 stones?"}]

    def run(messages: list[Any]) -> ChatCompletion:
        return client.chat.completions.create(
            model=STARTER_ID,
            messages=messages,
            max_tokens=40,
            temperature=0,
            # Every sequence stays busy: no free one holds the prompt.
            extra_body={"ignore_eos": True},
        )

    with ThreadPoolExecutor(3) as pool:
        a, b, c = pool.map(run, [same, same, other])
    cached = sorted(cached_of(r) for r in (a, b, c))
    assert cached[0][0] < 8  # one of them computed the shared start
    # The others copied it: all but the question (the second identical one: all but its
    # last token, which gives the logits of its first answer token).
    assert all(n >= total - 24 for n, total in cached[1:]), cached
    assert a.choices[0].message.content == b.choices[0].message.content


def cached_of(r: ChatCompletion) -> tuple[int, int]:
    """(cached prompt tokens, prompt tokens) of an answer."""
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    return r.usage.prompt_tokens_details.cached_tokens or 0, r.usage.prompt_tokens


def test_a_request_waiting_on_a_cancelled_one_takes_what_it_had_read(
    server_factory: Callable[..., RunningServer],
) -> None:
    client = server_factory("--parallel", "2", "--cache-ram", "0").client(timeout=120)
    facts = " ".join(f"Fact {i}: the box holds {i * 7} stones." for i in range(300))
    messages: list[Any] = [
        {"role": "system", "content": facts},
        {"role": "user", "content": "Sum up."},
    ]
    args: dict[str, Any] = {
        "model": STARTER_ID,
        "messages": messages,
        "max_tokens": 4,
        "temperature": 0,
    }

    def first() -> None:  # reads the long prompt, and is gone before it is through
        stream = client.chat.completions.create(**args, stream=True)
        # Past the step the second one is admitted after (it is then waiting on this one).
        time.sleep(4)
        stream.close()

    def second() -> ChatCompletion:
        time.sleep(0.3)
        return client.chat.completions.create(**args)

    with ThreadPoolExecutor(2) as pool:
        gone, waited = pool.submit(first), pool.submit(second)
        gone.result()
        out = waited.result()
    assert out.choices[0].finish_reason == "length"
    # It copied the part the first one had read, and computed the rest itself.
    cached, total = cached_of(out)
    assert 64 <= cached < total - 64
