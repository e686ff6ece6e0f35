"""Sampling on the real model: n beyond --parallel, logit_bias, penalties and top_k, through the
official openai client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

POEM = [{"role": "user", "content": "Write a short poem about the sea."}]
COLOURS = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def two_seqs(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A server that decodes only two sequences together."""
    return server_factory("--parallel", "2")


@pytest.fixture(scope="module")
def vocab(starter_model: Path) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(starter_model), vocab_only=True, verbose=False)


def chat(server: RunningServer, **kw: Any) -> Any:
    args: dict[str, Any] = {"model": STARTER_ID, "messages": COLOURS, "max_tokens": 8}
    args.update(kw)
    return server.client().chat.completions.create(**args)


def streamed_choices(server: RunningServer, **kw: Any) -> dict[int, tuple[str, list[str]]]:
    """Per choice index: the streamed text and its finish reasons."""
    out: dict[int, tuple[str, list[str]]] = {}
    for chunk in chat(server, stream=True, **kw):
        for c in chunk.choices:
            text, reasons = out.setdefault(c.index, ("", []))
            if c.finish_reason:
                reasons.append(c.finish_reason)
            out[c.index] = (text + (c.delta.content or ""), reasons)
    return out


# -- n beyond --parallel ---------------------------------------------------------------------


def test_n_above_parallel_full_response(two_seqs: RunningServer) -> None:
    one = chat(two_seqs, messages=POEM, temperature=1.0, max_tokens=16)
    r = chat(two_seqs, messages=POEM, n=5, temperature=1.0, seed=11, max_tokens=16)
    assert [c.index for c in r.choices] == [0, 1, 2, 3, 4]
    texts = [c.message.content for c in r.choices]
    assert all(texts)
    # Each choice samples on its own (seed + its index), across groups too.
    assert len(set(texts)) == 5
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    assert 5 <= r.usage.completion_tokens <= 5 * 16
    again = chat(two_seqs, messages=POEM, n=5, temperature=1.0, seed=11, max_tokens=16)
    assert [c.message.content for c in again.choices] == texts
    other = chat(two_seqs, messages=POEM, n=5, temperature=1.0, seed=12, max_tokens=16)
    assert [c.message.content for c in other.choices] != texts


def test_n_above_parallel_streamed(two_seqs: RunningServer) -> None:
    full = chat(two_seqs, messages=POEM, n=5, temperature=1.0, seed=21, max_tokens=16)
    streamed = streamed_choices(
        two_seqs, messages=POEM, n=5, temperature=1.0, seed=21, max_tokens=16
    )
    assert sorted(streamed) == [0, 1, 2, 3, 4]
    for c in full.choices:
        text, reasons = streamed[c.index]
        assert text == c.message.content
        assert reasons == [c.finish_reason]  # finish_reason once per choice
    again = streamed_choices(two_seqs, messages=POEM, n=5, temperature=1.0, seed=21, max_tokens=16)
    assert again == streamed


def test_n_above_parallel_unseeded_choices_differ(two_seqs: RunningServer) -> None:
    r = chat(two_seqs, messages=POEM, n=8, temperature=1.0, max_tokens=16)
    assert [c.index for c in r.choices] == list(range(8))
    assert len({c.message.content for c in r.choices}) == 8


def test_n_above_parallel_on_completions(two_seqs: RunningServer) -> None:
    r = two_seqs.client().completions.create(
        model=STARTER_ID,
        prompt=["Once upon a time", "The sea is"],
        n=3,
        temperature=1.0,
        seed=5,
        max_tokens=8,
    )
    assert [c.index for c in r.choices] == list(range(6))
    assert all(c.text for c in r.choices)
    assert len({c.text for c in r.choices[:3]}) == 3
    assert len({c.text for c in r.choices[3:]}) == 3


# -- samplers --------------------------------------------------------------------------------


def first_tokens(r: Any) -> list[Any]:
    return r.choices[0].logprobs.content  # type: ignore[no-any-return]


def token_id(vocab: llama_cpp.Llama, piece: str) -> int:
    ids = vocab.tokenize(piece.encode(), add_bos=False, special=False)
    assert len(ids) == 1, (piece, ids)
    return ids[0]


def test_negative_logit_bias_moves_the_greedy_reply_off_its_first_token(
    server: RunningServer, vocab: llama_cpp.Llama
) -> None:
    greedy = chat(server, temperature=0, logprobs=True, top_logprobs=2)
    first = first_tokens(greedy)[0]
    banned = token_id(vocab, first.token)
    biased = chat(server, temperature=0, logprobs=True, logit_bias={str(banned): -100})
    new_first = first_tokens(biased)[0]
    assert new_first.token != first.token
    # Greedy takes the next best token instead (logprobs are the model's, before the bias).
    assert new_first.token == first.top_logprobs[1].token
    assert biased.choices[0].message.content != greedy.choices[0].message.content


def test_positive_logit_bias_forces_a_token(server: RunningServer, vocab: llama_cpp.Llama) -> None:
    forced = token_id(vocab, " banana")
    piece = vocab.detokenize([forced]).decode()
    greedy = chat(server, temperature=0, max_tokens=3).choices[0].message.content
    assert greedy != piece * 3
    r = chat(server, temperature=0, max_tokens=3, logit_bias={str(forced): 100})
    assert r.choices[0].message.content == piece * 3


def most_repeated(text: str) -> int:
    return max(Counter(text.split()).values())


def completion(server: RunningServer, **kw: Any) -> str:
    r = server.client().completions.create(
        model=STARTER_ID,
        prompt="red red red red red red red red",
        max_tokens=16,
        temperature=0,
        **kw,
    )
    return r.choices[0].text


@pytest.mark.parametrize(
    "penalty",
    [
        {"frequency_penalty": 2.0},
        {"presence_penalty": 2.0},
        {"extra_body": {"repeat_penalty": 2.0}},
    ],
    ids=["frequency", "presence", "repeat"],
)
def test_penalties_break_a_greedy_repetition(server: RunningServer, penalty: Any) -> None:
    plain = completion(server)
    assert most_repeated(plain) >= 8  # greedy keeps repeating the word
    penalized = completion(server, **penalty)
    assert penalized != plain
    assert most_repeated(penalized) < most_repeated(plain)


def test_top_k_one_is_greedy(server: RunningServer) -> None:
    greedy = chat(server, messages=POEM, temperature=0, max_tokens=24).choices[0].message.content
    for seed in (1, 2):
        r = chat(
            server,
            messages=POEM,
            temperature=1.0,
            seed=seed,
            max_tokens=24,
            extra_body={"top_k": 1},
        )
        assert r.choices[0].message.content == greedy
    # Without the cut, temperature 1 samples away from the greedy reply.
    sampled = chat(server, messages=POEM, temperature=1.0, seed=1, max_tokens=24)
    assert sampled.choices[0].message.content != greedy
