"""The conversation pipeline every API runs on: lease the model, prepare the request off the
event loop, run its generations, and turn the engine's events into the neutral output events.

A dialect translates its request into a `ConversationRequest`, then either renders the events
as its stream (`Pipeline.stream`) or renders the gathered `Result` (`Pipeline.complete`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

from hearth.chat.output import OutputParser
from hearth.chat.pieces import Piece, ToolCallEnd, ToolCallStart
from hearth.engine.base import (
    ChoiceFinished,
    ConversationEngine,
    GenerationFinished,
    GenerationRequest,
    PromptProgress,
    TextDelta,
    TokenCount,
    Usage,
)
from hearth.engine.base import Event as EngineEvent
from hearth.errors import (
    HearthError,
    InvalidRequestError,
    ModelUnloaded,
    RequestTimeout,
    ServiceUnavailable,
)
from hearth.models.manager import LoadedModel, ModelManager
from hearth.observe.metrics import Metrics
from hearth.observe.record import RequestRecord
from hearth.observe.record import current as current_record
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
from hearth.pipeline.prepare import Prepared, prepare, prepare_remote, rendered
from hearth.pipeline.request import ConversationRequest, ReasoningFormat

T = TypeVar("T")

# A dialect's stream: the prepared request and its events in, the dialect's items out.
Renderer = Callable[[Prepared, AsyncIterator[Event]], AsyncIterator[T]]


class _Choice:
    """One choice's output parser, and the tool calls it has opened (to close them)."""

    __slots__ = ("called", "open_call", "parser", "tools")

    def __init__(self, parser: OutputParser):
        self.parser = parser
        self.tools = parser.tools is not None  # without a tool parser there are no calls
        self.open_call: int | None = None
        self.called = False

    def pieces(self, pieces: list[Piece], *, last: bool = False) -> list[Piece]:
        if not self.tools:
            return pieces
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


_TIMED_OUT = "the request took longer than the server's request timeout ({:g}s)"


class _Clock:
    """A generation's first token (the request record's TTFT) and the gaps between tokens
    (the inter-token histogram), and its timings at the end."""

    __slots__ = ("count", "first", "itl", "last", "record", "started")

    def __init__(self, metrics: Metrics | None, record: RequestRecord | None, model_id: str):
        self.record = record
        self.itl = metrics.itl.labels(model_id) if metrics is not None and record else None
        self.started = time.monotonic_ns()
        self.first: int | None = None
        self.last = 0
        self.count = 0  # pieces streamed: what a generation cut short is known to have made

    def token(self) -> None:
        self.count += 1
        if self.first is None:
            self.first = self.last = time.monotonic_ns()
            if self.record is not None:
                self.record.first_token()
        elif self.itl is not None:
            now = time.monotonic_ns()
            self.itl.observe((now - self.last) / 1e9)
            self.last = now

    def timings(self, load_ns: int) -> Timings:
        end = time.monotonic_ns()
        first = self.first if self.first is not None else end
        return Timings(load_ns, first - self.started, end - first)


class Pipeline:
    """Leases, preparation and the event translation, shared by every dialect; the limits
    (--max-queue, --request-timeout) and the request record's figures live here too, once."""

    def __init__(
        self,
        models: ModelManager,
        *,
        reasoning_format: ReasoningFormat = "parsed",
        metrics: Metrics | None = None,
        max_queue: int = 0,
        request_timeout: float = 0.0,
    ):
        self.models = models
        self.reasoning_format: ReasoningFormat = reasoning_format
        self.metrics = metrics
        self.max_queue = max_queue
        self.request_timeout = request_timeout

    async def stream(self, request: ConversationRequest, render: Renderer[T]) -> AsyncIterator[T]:
        """The rendered stream. Bad requests raise here, before anything streams; the stream
        holds the model's lease until it ends."""
        start = time.monotonic_ns()
        _asked(request)
        async with self.models.use(request.model, request.keep_alive) as lease:
            prepared = await self._prepare(request, lease.model, start)
            return lease.hold(render(prepared, self.events(prepared)))

    async def complete(self, request: ConversationRequest) -> tuple[Prepared, Result]:
        """The whole answer, gathered from the same events a stream sends."""
        start = time.monotonic_ns()
        _asked(request)
        async with self.models.use(request.model, request.keep_alive) as lease:
            prepared = await self._prepare(request, lease.model, start)
            n = prepared.n * len(prepared.generations)
            return prepared, await collect(self.events(prepared), n)

    async def count_tokens(self, request: ConversationRequest) -> TokenCount:
        """The prompt's length in tokens, as a generation would see it (no generation)."""
        async with self.models.use(request.model, request.keep_alive) as lease:
            model = lease.model
            if isinstance(model.engine, ConversationEngine):
                return await model.engine.count(request)
            _, tokens = await asyncio.to_thread(rendered, request, model, self.reasoning_format)
            return TokenCount(len(tokens))

    async def tokens(self, request: ConversationRequest) -> tuple[list[int], int]:
        """The prompt's tokens, as a generation would see them, and the model's context (a
        local model's only: an upstream's server counts its own, `count_tokens`)."""
        async with self.models.use(request.model, request.keep_alive) as lease:
            model = lease.model
            if isinstance(model.engine, ConversationEngine):
                raise InvalidRequestError(
                    f"the model '{model.entry.id}' is tokenized by its upstream server; "
                    "ask it for the token ids",
                    param="model",
                )
            _, tokens = await asyncio.to_thread(rendered, request, model, self.reasoning_format)
            return tokens, model.engine.info.ctx_size

    async def _prepare(
        self, request: ConversationRequest, model: LoadedModel, start: int
    ) -> Prepared:
        self.admit(model)
        record = current_record()
        if record is not None:  # a request that ends early is still logged under its model
            record.model = model.entry.id
        load_ns = time.monotonic_ns() - start
        engine = model.engine
        if isinstance(engine, ConversationEngine):
            prepared = prepare_remote(request, model)
            prepared.load_ns = load_ns
            source = engine.converse(request)
            try:
                # Its server took the request (a refusal raises here), within --request-timeout
                # (waiting for a slot under max_concurrency included).
                async with asyncio.timeout(self._remaining(start)):
                    await anext(source)
            except TimeoutError:
                await source.aclose()
                raise RequestTimeout(_TIMED_OUT.format(self.request_timeout)) from None
            except BaseException:
                await source.aclose()
                raise
            prepared.source = source
            if self.request_timeout:
                prepared.deadline = start / 1e9 + self.request_timeout
            return prepared
        # Rendering, tokenizing and checks are CPU work (and calls to an engine child).
        prepared = await asyncio.to_thread(prepare, request, model, self.reasoning_format)
        prepared.load_ns = load_ns
        if self.request_timeout:
            deadline = start / 1e9 + self.request_timeout  # monotonic_ns is time.monotonic's
            for gen in prepared.generations:
                gen.deadline = deadline
        return prepared

    def _remaining(self, start: int) -> float | None:
        """Seconds left of --request-timeout for a request that began at `start`."""
        if not self.request_timeout:
            return None
        return max(0.0, start / 1e9 + self.request_timeout - time.monotonic())

    def admit(self, model: LoadedModel) -> None:
        """--max-queue: with every sequence busy and that many requests waiting already, a
        new one is refused now (503) rather than queued for minutes. The caller's own lease
        counts in `active`."""
        if not self.max_queue:
            return
        parallel = getattr(model.engine, "parallel", 1)
        if self.models.active(model.entry.id) > parallel + self.max_queue:
            raise ServiceUnavailable(
                f"model '{model.entry.id}' has {self.max_queue} requests waiting already; "
                "retry later",
                code="queue_full",
                retry_after=1,
            )

    def events(self, prepared: Prepared) -> AsyncIterator[Event]:
        """The neutral events of every generation of `prepared`; choice i of prompt p is
        index p * n + i."""
        if prepared.source is not None:
            return self._remote_events(prepared, prepared.source)
        return self._local_events(prepared)

    async def _local_events(self, prepared: Prepared) -> AsyncIterator[Event]:
        total = prepared.n * len(prepared.generations)
        choices: list[_Choice | None] = [_Choice(prepared.parser()) for _ in range(total)]
        usage = Usage(0, 0, 0)
        record = current_record()
        clock = _Clock(self.metrics, record, prepared.model.entry.id)
        gens = prepared.generations
        # One prompt (every conversation): the engine's own stream, no merging layer.
        source = prepared.model.engine.generate(gens[0]) if len(gens) == 1 else _merged(prepared)
        try:
            async for event in source:
                if isinstance(event, TextDelta):
                    clock.token()
                    i = event.index
                    choice = choices[i]
                    assert choice is not None, "text after the choice finished"
                    pieces = choice.pieces(choice.parser.feed(event.text))
                    if pieces or event.logprobs is not None:  # held-back text: nothing yet
                        yield Output(i, pieces, event.logprobs)
                elif isinstance(event, ChoiceFinished):
                    i = event.index
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
                elif isinstance(event, GenerationFinished):
                    usage.prompt_tokens += event.usage.prompt_tokens
                    usage.completion_tokens += event.usage.completion_tokens
                    usage.cached_tokens += event.usage.cached_tokens
                    usage.draft_proposed += event.usage.draft_proposed
                    usage.draft_accepted += event.usage.draft_accepted
                elif isinstance(event, PromptProgress):
                    yield Progress(event.processed, event.total)
        except (GeneratorExit, asyncio.CancelledError):
            # The client left: what is known of the cut generation goes into its record.
            if record is not None:
                usage.prompt_tokens = usage.prompt_tokens or sum(len(g.prompt) for g in gens)
                usage.completion_tokens = max(usage.completion_tokens, clock.count)
                record.add_usage(prepared.model.entry.id, usage)
            raise
        except Exception as exc:
            if record is not None:
                record.add_usage(prepared.model.entry.id, usage)
                if isinstance(exc, HearthError):
                    record.failed(exc.type, exc.code)
            # The choices still open end here; the exception follows for the dialect to show.
            cut: FinishReason = "cancelled" if isinstance(exc, ModelUnloaded) else "error"
            for i, choice in enumerate(choices):
                if choice is not None:
                    yield Finished(i, cut)
            raise
        if record is not None:
            record.add_usage(prepared.model.entry.id, usage)
        yield Done(usage, clock.timings(prepared.load_ns))

    async def _remote_events(
        self, prepared: Prepared, source: AsyncGenerator[Event, None]
    ) -> AsyncIterator[Event]:
        """An upstream model's events, already parsed by its server: timed and recorded as
        a local model's are."""
        model_id = prepared.model.entry.id
        open_choices = set(range(prepared.n * len(prepared.generations)))
        usage = Usage(0, 0, 0)
        record = current_record()
        clock = _Clock(self.metrics, record, model_id)
        deadline = prepared.deadline
        try:
            async for event in source:
                if deadline is not None and time.monotonic() > deadline:
                    raise RequestTimeout(_TIMED_OUT.format(self.request_timeout))
                if isinstance(event, Output):
                    clock.token()
                    yield event
                elif isinstance(event, Finished):
                    open_choices.discard(event.index)
                    yield event
                elif isinstance(event, Done):
                    usage = event.usage
                else:
                    yield event
        except (GeneratorExit, asyncio.CancelledError):
            if record is not None:
                usage.completion_tokens = max(usage.completion_tokens, clock.count)
                record.add_usage(model_id, usage)
            raise
        except Exception as exc:
            if record is not None:
                record.add_usage(model_id, usage)
                if isinstance(exc, HearthError):
                    record.failed(exc.type, exc.code)
            cut: FinishReason = "cancelled" if isinstance(exc, ModelUnloaded) else "error"
            for i in sorted(open_choices):
                yield Finished(i, cut)
            raise
        finally:
            await source.aclose()  # a client that left: the upstream request is closed too
        if record is not None:
            record.add_usage(model_id, usage)
        yield Done(usage, clock.timings(prepared.load_ns))


def _asked(request: ConversationRequest) -> None:
    """The model the client named goes into the request log even when none serves it (an
    unknown or broken model); metrics take only the model that served."""
    record = current_record()
    if record is not None:
        record.asked_model = request.model[:512]


async def _merged(prepared: Prepared) -> AsyncIterator[EngineEvent]:
    """Several prompts' generations, merged as their events come; choice i of prompt p is
    renumbered p * n + i (the events are this request's own, so they are renumbered in
    place)."""
    model = prepared.model.engine
    n = prepared.n
    merged: asyncio.Queue[EngineEvent | BaseException | None] = asyncio.Queue()

    async def pump(p: int, gen: GenerationRequest) -> None:
        try:
            async for event in model.generate(gen):
                if isinstance(event, TextDelta | ChoiceFinished):
                    event.index += p * n
                merged.put_nowait(event)
        except Exception as exc:
            merged.put_nowait(exc)
        finally:
            merged.put_nowait(None)

    tasks = [asyncio.create_task(pump(p, g)) for p, g in enumerate(prepared.generations)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await merged.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
