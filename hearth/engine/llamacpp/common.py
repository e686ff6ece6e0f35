"""What both llama.cpp isolation modes share and the server needs without loading llama.cpp:
load options, the checks before any work, choice groups and their usage.

Nothing here imports llama_cpp or numpy: with engines in child processes the server imports
this and process.py only; the native core (engine.py) lives in the child."""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from hearth.engine.base import (
    Engine,
    Event,
    GenerationFinished,
    GenerationRequest,
    SpecMode,
    Usage,
)
from hearth.errors import (
    ContextLengthExceeded,
    HearthError,
    InvalidRequestError,
    RequestTimeout,
)

UNLOADED = "the model was unloaded while this request ran"


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to load one model; built from Settings (and, later, per-model config)."""

    ctx_size: int | None = None
    parallel: int = 4
    threads: int | None = None
    threads_batch: int | None = None
    batch_size: int = 512
    ubatch_size: int = 512
    gpu_layers: int = 0
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    kv_unified: bool = False
    cache_ram_mib: int = 0
    speculative: SpecMode = "none"
    draft_max: int = 16
    draft_model: Path | None = None
    max_output_tokens: int | None = None  # a per-model cap on one answer
    pooling: str = "auto"  # embeddings: auto (the model's own, else mean), mean, cls, last


class _Handle(Protocol):
    """What generate() keeps of each submitted choice group."""

    finished: bool


class LlamaCppEngineBase(Engine):
    """What both isolation modes share: checks before any work, choice groups, usage."""

    supports_embeddings = True
    parallel: int
    max_output_tokens: int | None
    GOOD_GRAMMARS = 64  # grammars remembered as parsing (agents resend theirs every turn)

    def __init__(self) -> None:
        self._good_grammars: OrderedDict[str, None] = OrderedDict()
        self._grammars_lock = threading.Lock()  # checks run on several threads at once

    @abc.abstractmethod
    def _start(
        self,
        request: GenerationRequest,
        first_index: int,
        loop: asyncio.AbstractEventLoop,
        channel: asyncio.Queue[Any],
    ) -> _Handle:
        """Submit one choice group; its events arrive on `channel`."""

    @abc.abstractmethod
    def _cancel(self, handle: _Handle) -> None:
        """The caller stopped listening: free the group's sequences."""

    @abc.abstractmethod
    def _grammar_parses(self, grammar: str) -> bool:
        """Whether llama.cpp accepts this GBNF (its parser, with this model's vocabulary)."""

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.tokenize_many([text], add_special=add_special)[0]

    def _grammar_known_good(self, grammar: str) -> bool:
        """_grammar_parses, asked once per grammar text (several prompts of one request, or
        the same tools' grammar turn after turn, cost one parse)."""
        good = self._good_grammars
        with self._grammars_lock:
            if grammar in good:
                good.move_to_end(grammar)
                return True
        if not self._grammar_parses(grammar):
            return False
        with self._grammars_lock:
            good[grammar] = None
            if len(good) > self.GOOD_GRAMMARS:
                good.popitem(last=False)
        return True

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Reject what cannot run before any work is done; resolve max_tokens."""
        ctx = self.info.ctx_size
        n_prompt = len(request.prompt)
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if request.n < 1:
            raise InvalidRequestError(f"n must be at least 1, got {request.n}", param="n")
        if request.grammar is not None and not self._grammar_known_good(request.grammar):
            raise InvalidRequestError("llama.cpp could not parse the grammar", param="grammar")
        if n_prompt >= ctx:
            raise ContextLengthExceeded(
                f"This model's context is {ctx} tokens; the prompt has {n_prompt} tokens "
                f"and leaves no room for output. {self._raise_hint()}",
                param="messages",
            )
        if request.max_tokens is None:
            request.max_tokens = min(ctx - n_prompt, self.max_output_tokens or ctx)
        elif self.max_output_tokens and request.max_tokens > self.max_output_tokens:
            raise InvalidRequestError(
                f"max_tokens is {request.max_tokens}; this model answers with at most "
                f"{self.max_output_tokens} tokens (its max_output_tokens)",
                param="max_tokens",
            )
        elif request.max_tokens > ctx:
            raise ContextLengthExceeded(
                f"max_tokens is {request.max_tokens}, more than this model's whole context of "
                f"{ctx} tokens. {self._raise_hint()}",
                param="max_tokens",
            )
        else:
            # As llama.cpp's server and Ollama do: a cap past the room the prompt leaves is
            # no error, the answer ends where the context does (finish_reason "length").
            # Agents send one fixed cap while their history grows toward the context.
            request.max_tokens = min(request.max_tokens, ctx - n_prompt)
        request.checked = True
        return request

    def _raise_hint(self) -> str:
        """How a user gets more context, and how much the model was trained for."""
        info = self.info
        trained = info.n_ctx_train
        more = f"up to {trained} tokens, the context it was trained for" if trained else ""
        if trained and trained <= info.ctx_size:
            return (
                f"This is the whole context the model was trained for ({trained} tokens); a "
                "longer one (--ctx-size N on `hearth serve`, or ctx_size in the model's "
                "[[models]] entry) runs, but the model may answer worse past it."
            )
        return (
            f"A longer context ({more}) takes --ctx-size N on `hearth serve`, or ctx_size in "
            f'the model\'s [[models]] entry (id = "{info.id}").'
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if not request.checked:
            self.check(request)
        loop = asyncio.get_running_loop()
        # More choices than sequences: groups of at most `parallel` choices, each a job queued
        # in turn (as llama-server queues a task per choice). A group decodes the prompt once
        # for its choices; a later group finds it cached in the sequences the last one freed.
        channel: asyncio.Queue[Any] = asyncio.Queue()
        handles = [
            self._start(
                replace(request, n=min(self.parallel, request.n - first)), first, loop, channel
            )
            for first in range(0, request.n, self.parallel)
        ]
        usage: Usage | None = None
        timer = None
        if request.deadline is not None:
            # The error joins the job's own events: nothing per token checks the time.
            late = RequestTimeout("the request took longer than the server's request timeout")
            wait = max(0.0, request.deadline - time.monotonic())
            timer = loop.call_later(wait, channel.put_nowait, late)
        try:
            for _ in handles:
                while not isinstance(event := await channel.get(), GenerationFinished):
                    if isinstance(event, HearthError):
                        raise event
                    yield event
                usage = event.usage if usage is None else _merged(usage, event.usage)
            assert usage is not None
            yield GenerationFinished(usage)
        finally:
            if timer is not None:
                timer.cancel()
            # The caller stopped listening (disconnect, error, break): free the sequences.
            for handle in handles:
                if not handle.finished:
                    self._cancel(handle)


def settle(future: asyncio.Future[Any], result: Any) -> None:
    """Resolve a future with a result, or an exception carried as the result."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _merged(a: Usage, b: Usage) -> Usage:
    """One request's usage from two of its choice groups: the prompt counts once, cached as
    the least any group found (the first group's read, which later groups reuse)."""
    return Usage(
        prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cached_tokens=min(a.cached_tokens, b.cached_tokens),
        draft_proposed=a.draft_proposed + b.draft_proposed,
        draft_accepted=a.draft_accepted + b.draft_accepted,
    )


class Listener(Protocol):
    """Where a job's events go: its caller's loop and queue (a Job here, or the server's
    RemoteJob for a job running in an engine child)."""

    def cancel(self) -> None:
        """Stop the job: nobody will read its events."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    @property
    def queue(self) -> asyncio.Queue[Any] | None: ...


def deliver_to_loops(
    out: Sequence[tuple[Listener, Any]], here: asyncio.AbstractEventLoop | None = None
) -> None:
    """One step's events to their callers: one event-loop wake-up per step per loop, none
    for the loop this runs on (`here`)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Listener, Any]]] = {}
    for item in out:
        assert item[0].loop is not None
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        if loop is here:
            _deliver(items)
            continue
        try:
            loop.call_soon_threadsafe(_deliver, items)
        except RuntimeError:  # the caller's loop is closed: nobody is listening
            for job, _ in items:
                job.cancel()


def _deliver(items: list[tuple[Listener, Any]]) -> None:
    for job, event in items:
        assert job.queue is not None
        job.queue.put_nowait(event)
