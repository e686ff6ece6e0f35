"""The official openai client against the real server and the real starter model."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import openai
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

SYSTEM = "You are a helpful assistant."
QUESTION = "Name three colours of the rainbow."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]


def chat(server: RunningServer, **kw: object) -> openai.types.chat.ChatCompletion:
    args: dict[str, object] = {"model": STARTER_ID, "messages": MESSAGES, "max_tokens": 40}
    args.update(kw)
    return server.client().chat.completions.create(**args)  # type: ignore[call-overload, no-any-return]


def test_streaming_and_non_streaming_give_the_same_text(server: RunningServer) -> None:
    full = chat(server, temperature=0)
    text = full.choices[0].message.content
    assert text and len(text) > 10
    stream = server.client().chat.completions.create(
        model=STARTER_ID,
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = []
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert "".join(pieces) == text
    assert reasons == [full.choices[0].finish_reason]


def test_usage_matches_the_tokenizer(server: RunningServer, starter_model: Path) -> None:
    vocab = llama_cpp.Llama(model_path=str(starter_model), vocab_only=True, verbose=False)
    prompt = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    expected = len(vocab.tokenize(prompt.encode(), add_bos=False, special=True))
    r = chat(server, temperature=0, max_tokens=12)
    assert r.usage is not None
    assert r.usage.prompt_tokens == expected
    assert r.usage.completion_tokens == 12  # cut by max_tokens
    assert r.usage.total_tokens == expected + 12
    assert r.choices[0].finish_reason == "length"
    retokenized = vocab.tokenize(r.choices[0].message.content.encode(), add_bos=False)  # type: ignore[union-attr]
    assert abs(len(retokenized) - 12) <= 2


def test_max_tokens_gives_length(server: RunningServer) -> None:
    r = chat(server, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3
    r = chat(server, max_completion_tokens=2, max_tokens=None, temperature=0)
    assert r.usage is not None and r.usage.completion_tokens == 2


def test_natural_end_gives_stop(server: RunningServer) -> None:
    r = chat(server, max_tokens=400, temperature=0)
    assert r.choices[0].finish_reason == "stop"
    assert "<|im_end|>" not in (r.choices[0].message.content or "")


def test_stop_strings_cut_before_the_stop(server: RunningServer) -> None:
    text = chat(server, temperature=0, max_tokens=40).choices[0].message.content or ""
    # A stop string from the middle of the text, spanning a word boundary so it spans tokens.
    middle = len(text) // 2
    stop = text[middle : middle + 4]
    cut = text.index(stop)
    r = chat(server, temperature=0, max_tokens=40, stop=[stop, "zzzzzz"])
    assert r.choices[0].message.content == text[:cut]
    assert r.choices[0].finish_reason == "stop"
    # The same through streaming: no part of the stop string leaks.
    stream = server.client().chat.completions.create(
        model=STARTER_ID,
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        stop=stop,
        stream=True,  # type: ignore[arg-type]
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text[:cut]


def test_same_seed_same_text(server: RunningServer) -> None:
    a = chat(server, temperature=1.0, seed=1234, max_tokens=30).choices[0].message.content
    b = chat(server, temperature=1.0, seed=1234, max_tokens=30).choices[0].message.content
    c = chat(server, temperature=1.0, seed=99, max_tokens=30).choices[0].message.content
    assert a == b
    assert a != c


def test_n_gives_distinct_choices(server: RunningServer) -> None:
    r = chat(server, n=3, temperature=1.0, seed=7, max_tokens=20)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert all(texts)
    assert len(set(texts)) > 1  # separate sequences, separate samples
    assert r.usage is not None and 3 <= r.usage.completion_tokens <= 60


def test_logprobs(server: RunningServer) -> None:
    r = chat(server, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 5
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        # At temperature 0 the chosen token is the most likely one.
        assert item.top_logprobs[0].token == item.token
        assert abs(item.top_logprobs[0].logprob - item.logprob) < 1e-4
    assert "".join(i.token for i in content) == r.choices[0].message.content


def test_prefix_cache_is_reported(server: RunningServer) -> None:
    long_system = "You answer questions about geography. " * 30
    messages = [{"role": "system", "content": long_system}, {"role": "user", "content": "Hi"}]
    first = chat(server, messages=messages, max_tokens=2, temperature=0)
    second = chat(server, messages=messages, max_tokens=2, temperature=0)
    assert first.usage is not None and second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    assert details.cached_tokens >= second.usage.prompt_tokens - 1


def test_completions_endpoint(server: RunningServer) -> None:
    r = server.client().completions.create(
        model=STARTER_ID,
        prompt=["The capital of France is", "1, 2, 3,"],
        max_tokens=5,
        temperature=0,
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.text for c in r.choices)
    assert r.usage is not None and r.usage.completion_tokens == 10


def test_models_endpoint(server: RunningServer) -> None:
    models = server.client().models.list().data
    ids = [m.id for m in models]
    assert STARTER_ID in ids
    m = server.client().models.retrieve(STARTER_ID)
    extra = m.model_extra or {}
    assert extra["hearth"]["status"] == "loaded"
    assert extra["hearth"]["quantization"] == "Q4_1"
    assert extra["context_window"] == 8192  # the trained context
