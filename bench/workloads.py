"""The workloads. Each builds its requests for one round and runs them against one peer."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.client import RequestResult, gather_streams, sequential_streams

WORDS = """
the river stone light garden window morning silver paper market winter bridge lantern quiet
harbor mountain letter orchard candle forest music station pocket thunder valley kitchen
meadow island journey mirror shadow summer engine village blanket compass feather autumn
tower castle desert ocean signal rabbit ladder basket marble copper
""".split()  # noqa: SIM905 (a word list reads better as prose)


class Tokenizer:
    """The model's own tokenizer (vocab only), to build prompts of exact token lengths."""

    def __init__(self, model: Path):
        import llama_cpp

        self._llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    def count(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False))

    def text_of(self, n_tokens: int, seed: int) -> str:
        """Plain English-looking text of exactly n_tokens tokens."""
        rng = random.Random(seed)
        words = " ".join(rng.choice(WORDS) for _ in range(n_tokens * 2))
        tokens = self._llm.tokenize(words.encode(), add_bos=False)[:n_tokens]
        return self._llm.detokenize(tokens).decode("utf-8", "ignore")


Runner = Callable[[str, str, dict[str, Any]], Awaitable[list[RequestResult]]]


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[Tokenizer, int], Runner]  # (tokenizer, round) -> runner(url, model, extra)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _stories(rnd: int, count: int, max_tokens: int) -> list[tuple[list[dict[str, str]], int]]:
    """`count` story requests, their subjects changing with the round."""
    return [
        (_user(f"Write a long story about a {WORDS[(rnd * 8 + i) % len(WORDS)]}."), max_tokens)
        for i in range(count)
    ]


def streams(concurrency: int, max_tokens: int) -> Callable[[Tokenizer, int], Runner]:
    def build(tok: Tokenizer, rnd: int) -> Runner:
        jobs = _stories(rnd, concurrency, max_tokens)
        return lambda url, model, extra: gather_streams(url, model, jobs, extra)

    return build


def one_by_one(count: int, max_tokens: int) -> Callable[[Tokenizer, int], Runner]:
    """Concurrency 1: `count` streams one after another (one alone moves by 10 % here)."""

    def build(tok: Tokenizer, rnd: int) -> Runner:
        jobs = _stories(rnd, count, max_tokens)
        return lambda url, model, extra: sequential_streams(url, model, jobs, extra)

    return build


def shared_system_prompt(system_tokens: int, repeats: int) -> Callable[[Tokenizer, int], Runner]:
    """(c): a long system prompt, then short user turns reusing it; first request is cold."""

    def build(tok: Tokenizer, rnd: int) -> Runner:
        system = tok.text_of(system_tokens, seed=1000 + rnd)
        jobs = [
            ([{"role": "system", "content": system}, *_user(f"Question {i}: name a {w}.")], 16)
            for i, w in enumerate(WORDS[: repeats + 1])
        ]
        return lambda url, model, extra: sequential_streams(url, model, jobs, extra)

    return build


def mixed_lengths(
    count: int, low: int, high: int, max_tokens: int
) -> Callable[[Tokenizer, int], Runner]:
    """(d): many concurrent requests with prompt lengths spread from low to high tokens."""

    def build(tok: Tokenizer, rnd: int) -> Runner:
        lengths = [low + (high - low) * i // (count - 1) for i in range(count)]
        jobs = [
            (_user(tok.text_of(n, seed=2000 + rnd * 100 + i) + "\nSummarise."), max_tokens)
            for i, n in enumerate(lengths)
        ]
        return lambda url, model, extra: gather_streams(url, model, jobs, extra)

    return build


def rotating_conversations(
    conversations: int, history_tokens: int, turns: int
) -> Callable[[Tokenizer, int], Runner]:
    """(e): conversations with long histories taking turns, more of them than sequences."""

    def build(tok: Tokenizer, rnd: int) -> Runner:
        histories = [
            tok.text_of(history_tokens, seed=3000 + rnd * 100 + c) for c in range(conversations)
        ]
        jobs = []
        for turn in range(turns):
            for c, history in enumerate(histories):
                jobs.append(
                    (
                        [
                            {"role": "system", "content": history},
                            *_user(f"Turn {turn} of conversation {c}: reply in one word."),
                        ],
                        8,
                    )
                )
        return lambda url, model, extra: sequential_streams(url, model, jobs, extra)

    return build


CODE = '''def merge_sorted(left, right):
    """Merge two sorted lists into one sorted list."""
    result = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    result.extend(left[i:])
    result.extend(right[j:])
    return result


def merge_sort(items):
    """Sort a list with merge sort."""
    if len(items) <= 1:
        return items
    middle = len(items) // 2
    left = merge_sort(items[:middle])
    right = merge_sort(items[middle:])
    return merge_sorted(left, right)


def binary_search(items, target):
    """Return the index of target in the sorted list items, or -1."""
    low, high = 0, len(items) - 1
    while low <= high:
        mid = (low + high) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            low = mid + 1
        else:
            high = mid - 1
    return -1
'''


def code_repeat(max_tokens: int) -> Callable[[Tokenizer, int], Runner]:
    """(f): "repeat this code block with one change": output mostly copies the prompt."""

    def build(tok: Tokenizer, rnd: int) -> Runner:
        prompt = (
            "Repeat the following Python code exactly, but rename the function binary_search "
            f"to find_index. Output only the code.\n\n```python\n{CODE}```"
        )
        jobs = [(_user(prompt), max_tokens)]
        return lambda url, model, extra: sequential_streams(url, model, jobs, extra)

    return build
