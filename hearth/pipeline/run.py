"""The conversation pipeline every API runs on: lease the model, prepare the request off the
event loop, run its generations, and turn the engine's events into the neutral output events.

A dialect translates its request into a `ConversationRequest`, then either renders the events
as its stream (`Pipeline.stream`) or renders the gathered `Result` (`Pipeline.complete`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from hearth.chat.output import OutputParser
from hearth.chat.pieces import Piece, ToolCallEnd, ToolCallStart
from hearth.engine import base as engine
from hearth.errors import ModelUnloaded
from hearth.models.manager import LoadedModel, ModelManager
from hearth.pipeline.events import (
    Done,
    Event,
    Finished,
    FinishReason,
    Output,
    Progress,
    Result,
    Timings,
    collect,
)
from hearth.pipeline.prepare import Prepared, prepare, rendered
from hearth.pipeline.request import ConversationRequest, ReasoningFormat

T = TypeVar("T")

# A dialect's stream: the prepared request and its events in, the dialect's items out.
Renderer = Callable[[Prepared, AsyncIterator[Event]], AsyncIterator[T]]


class _Choice:
    """One choice's output parser, and the tool calls it has opened (to close them)."""

    __slots__ = ("called", "open_call", "parser")

    def __init__(self, parser: OutputParser):
        self.parser = parser
        self.open_call: int | None = None
        self.called = False

    def pieces(self, pieces: list[Piece], *, last: bool = False) -> list[Piece]:
        out: list[Piece] = []
        for piece in pieces:
            if isinstance(piece, ToolCallStart):
                if self.open_call is not None:
                    out.append(ToolCallEnd(self.open_call))
                self.open_call, self.called = piece.index, True
            out.append(piece)
        if last and self.open_call is not None:
            out.append(ToolCallEnd(self.open_call))
            self.open_call = None
        return out


class Pipeline:
    """Leases, preparation and the event translation, shared by every dialect."""

    def __init__(self, models: ModelManager, *, reasoning_format: ReasoningFormat = "parsed"):
        self.models = models
        self.reasoning_format: ReasoningFormat = reasoning_format

    async def stream(self, request: ConversationRequest, render: Renderer[T]) -> AsyncIterator[T]:
        """The rendered stream. Bad requests raise here, before anything streams; the stream
        holds the model's lease until it ends."""
        start = time.monotonic_ns()
        async with self.models.use(request.model, request.keep_alive) as lease:
            prepared = await self._prepare(request, lease.model, start)
            return lease.hold(render(prepared, self.events(prepared)))

    async def complete(self, request: ConversationRequest) -> tuple[Prepared, Result]:
        """The whole answer, gathered from the same events a stream sends."""
        start = time.monotonic_ns()
        async with self.models.use(request.model, request.keep_alive) as lease:
            prepared = await self._prepare(request, lease.model, start)
            n = prepared.n * len(prepared.generations)
            return prepared, await collect(self.events(prepared), n)

    async def count_tokens(self, request: ConversationRequest) -> int:
        """The prompt's length in tokens, as a generation would see it (no generation)."""
        async with self.models.use(request.model, request.keep_alive) as lease:
            model = lease.model
            _, tokens = await asyncio.to_thread(rendered, request, model, self.reasoning_format)
            return len(tokens)

    async def _prepare(
        self, request: ConversationRequest, model: LoadedModel, start: int
    ) -> Prepared:
        load_ns = time.monotonic_ns() - start
        # Rendering, tokenizing and checks are CPU work (and calls to an engine child).
        prepared = await asyncio.to_thread(prepare, request, model, self.reasoning_format)
        prepared.load_ns = load_ns
        return prepared

    async def events(self, prepared: Prepared) -> AsyncIterator[Event]:
        """The neutral events of every generation of `prepared`; choice i of prompt p is
        index p * n + i."""
        n = prepared.n
        total = n * len(prepared.generations)
        choices: list[_Choice | None] = [_Choice(prepared.parser()) for _ in range(total)]
        usage = engine.Usage(0, 0, 0)
        started = time.monotonic_ns()
        first: int | None = None
        try:
            async for p, event in _prompt_events(prepared):
                if isinstance(event, engine.TextDelta):
                    if first is None:
                        first = time.monotonic_ns()
                    i = p * n + event.index
                    choice = choices[i]
                    assert choice is not None, "text after the choice finished"
                    pieces = choice.pieces(choice.parser.feed(event.text))
                    if pieces or event.logprobs is not None:  # held-back text: nothing yet
                        yield Output(i, pieces, event.logprobs)
                elif isinstance(event, engine.ChoiceFinished):
                    i = p * n + event.index
                    choice = choices[i]
                    assert choice is not None, "a choice finished twice"
                    pieces = choice.pieces(choice.parser.finish(), last=True)
                    if pieces:
                        yield Output(i, pieces)
                    reason = event.finish_reason
                    yield Finished(
                        i,
                        "tool_calls" if reason == "stop" and choice.called else reason,
                        event.completion_tokens,
                        event.stop_sequence,
                    )
                    choices[i] = None
                elif isinstance(event, engine.GenerationFinished):
                    usage.prompt_tokens += event.usage.prompt_tokens
                    usage.completion_tokens += event.usage.completion_tokens
                    usage.cached_tokens += event.usage.cached_tokens
                    usage.draft_proposed += event.usage.draft_proposed
                    usage.draft_accepted += event.usage.draft_accepted
                elif isinstance(event, engine.PromptProgress):
                    yield Progress(event.processed, event.total)
        except Exception as exc:
            # The choices still open end here; the exception follows for the dialect to show.
            cut: FinishReason = "cancelled" if isinstance(exc, ModelUnloaded) else "error"
            for i, choice in enumerate(choices):
                if choice is not None:
                    yield Finished(i, cut)
            raise
        end = time.monotonic_ns()
        first = first if first is not None else end
        yield Done(usage, Timings(prepared.load_ns, first - started, end - first))


async def _prompt_events(prepared: Prepared) -> AsyncIterator[tuple[int, engine.Event]]:
    """Every prompt's generation events, merged as they come: (prompt index, event)."""
    model = prepared.model.engine
    if len(prepared.generations) == 1:
        async for event in model.generate(prepared.generations[0]):
            yield 0, event
        return
    merged: asyncio.Queue[tuple[int, engine.Event | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, gen: engine.GenerationRequest) -> None:
        try:
            async for event in model.generate(gen):
                merged.put_nowait((i, event))
        except Exception as exc:
            merged.put_nowait((i, exc))
        finally:
            merged.put_nowait((i, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(prepared.generations)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await merged.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
