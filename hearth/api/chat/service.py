"""Chat Completions: messages through the chat template, into the engine, back as OpenAI objects
with reasoning and tool calls parsed out of the text.

No FastAPI here: the same service is the in-process library API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hearth.api.chat.plan import ChatPlan, build_plan
from hearth.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    FinishReason,
    Function,
    ReasoningFormat,
)
from hearth.api.generation import (
    KEEP_ALIVE,
    KeepAlive,
    new_id,
    normalize_stop,
    now,
    resolve_sampling,
    wire_logprobs,
    wire_usage,
)
from hearth.chat.output import MessageParts, OutputParser
from hearth.chat.pieces import Content, Piece, Reasoning, ToolCallStart
from hearth.engine.base import (
    ChoiceFinished,
    Engine,
    GenerationFinished,
    GenerationRequest,
    PromptProgress,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hearth.errors import InvalidRequestError
from hearth.models.manager import LoadedModel, ModelManager


@dataclass(slots=True)
class PreparedChat:
    request: ChatCompletionRequest
    model: LoadedModel
    generation: GenerationRequest
    plan: ChatPlan


def special_tokens(engine: Engine, markers: list[str]) -> frozenset[int]:
    """The markers that are single (control) tokens of this model, to be written as text."""
    out = set()
    for marker in markers:
        tokens = engine.tokenize(marker, add_special=False)
        if len(tokens) == 1:
            out.add(tokens[0])
    return frozenset(out)


def finish_reason(engine_reason: str, parts_have_calls: bool) -> FinishReason:
    """A choice that ended by itself after calling tools finished with "tool_calls"."""
    if engine_reason == "stop" and parts_have_calls:
        return "tool_calls"
    return "length" if engine_reason == "length" else "stop"


def delta_for(pieces: list[Piece]) -> list[ChoiceDelta]:
    """Stream deltas for pieces: one delta per run of the same kind, as OpenAI sends them."""
    deltas: list[ChoiceDelta] = []
    for piece in pieces:
        last = deltas[-1] if deltas else None
        if isinstance(piece, Content):
            if last is not None and last.content is not None:
                last.content += piece.text
            else:
                deltas.append(ChoiceDelta(content=piece.text))
        elif isinstance(piece, Reasoning):
            if last is not None and last.reasoning_content is not None:
                last.reasoning_content += piece.text
                last.reasoning = last.reasoning_content
            else:
                deltas.append(ChoiceDelta(reasoning_content=piece.text, reasoning=piece.text))
        elif isinstance(piece, ToolCallStart):
            call = ChoiceDeltaToolCall(
                index=piece.index,
                id=piece.id,
                type="function",
                function=ChoiceDeltaToolCallFunction(name=piece.name, arguments=""),
            )
            deltas.append(ChoiceDelta(tool_calls=[call]))
        else:
            fn = ChoiceDeltaToolCallFunction(arguments=piece.text)
            deltas.append(
                ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(index=piece.index, function=fn)])
            )
    return deltas


class ChatCompletionsService:
    """POST /v1/chat/completions, without HTTP."""

    def __init__(self, models: ModelManager, *, reasoning_format: ReasoningFormat = "parsed"):
        self.models = models
        self.reasoning_format: ReasoningFormat = reasoning_format

    async def create(
        self, request: ChatCompletionRequest
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk | KeepAlive]:
        """A completion, or (stream=True) an iterator of chunks. Bad requests raise here,
        before anything streams."""
        # The lease keeps the model loaded until the answer (or the stream) is over.
        async with self.models.use(request.model, request.keep_alive_seconds) as lease:
            # Rendering, tokenizing and checks are CPU work: off the event loop.
            prepared = await asyncio.to_thread(self.prepare, request, lease.model)
            if request.stream:
                return lease.hold(self._stream(prepared))
            return await self._complete(prepared)

    def prepare(self, request: ChatCompletionRequest, model: LoadedModel) -> PreparedChat:
        """The request made concrete for the model its lease holds; bad input raises here."""
        engine = model.engine
        info = engine.info
        plan = build_plan(
            request, model.template, self.reasoning_format, system_prompt=model.system_prompt
        )
        # Templates that write the BOS token themselves must not get a second one.
        add_special = not (info.bos_token and plan.prompt.startswith(info.bos_token))
        tokens = engine.tokenize(plan.prompt, add_special=add_special)
        sampling = resolve_sampling(
            request, info.sampling_defaults, info.n_vocab, configured=model.sampling
        )
        if request.top_logprobs is not None and not request.logprobs:
            raise InvalidRequestError("top_logprobs requires logprobs=true", param="top_logprobs")
        generation = GenerationRequest(
            prompt=tokens,
            sampling=sampling,
            max_tokens=request.max_completion_tokens or request.max_tokens,
            stop=normalize_stop(request.stop),
            n=request.n or 1,
            logprobs=(request.top_logprobs or 0) if request.logprobs else None,
            ignore_eos=bool(request.ignore_eos),
            speculative=request.speculative,
            draft_max=request.draft_max,
            grammar=plan.grammar,
            keep_special=special_tokens(engine, plan.markers),
        )
        engine.check(generation)
        return PreparedChat(request, model, generation, plan)

    async def _complete(self, prepared: PreparedChat) -> ChatCompletion:
        n = prepared.generation.n
        parsers = [prepared.plan.parser() for _ in range(n)]
        parts = [MessageParts() for _ in range(n)]
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finish: list[str] = ["stop"] * n
        usage = None
        async for event in prepared.model.engine.generate(prepared.generation):
            if isinstance(event, TextDelta):
                parts[event.index].add(parsers[event.index].feed(event.text))
                if event.logprobs:
                    logprobs[event.index].extend(event.logprobs)
            elif isinstance(event, ChoiceFinished):
                parts[event.index].add(parsers[event.index].finish())
                finish[event.index] = event.finish_reason
            elif isinstance(event, GenerationFinished):
                usage = event.usage
        want_logprobs = prepared.generation.logprobs is not None
        return ChatCompletion(
            id=new_id("chatcmpl"),
            created=now(),
            model=prepared.model.entry.id,
            choices=[
                Choice(
                    index=i,
                    message=_message(parts[i]),
                    finish_reason=finish_reason(finish[i], bool(parts[i].tool_calls)),
                    logprobs=ChoiceLogprobs(content=wire_logprobs(logprobs[i]))
                    if want_logprobs
                    else None,
                )
                for i in range(n)
            ],
            usage=wire_usage(usage) if usage is not None else None,
        )

    async def _stream(
        self, prepared: PreparedChat
    ) -> AsyncIterator[ChatCompletionChunk | KeepAlive]:
        request = prepared.request
        chunk_id = new_id("chatcmpl")
        created = now()
        model_id = prepared.model.entry.id
        include_usage = request.include_usage
        n = prepared.generation.n
        parsers: list[OutputParser] = [prepared.plan.parser() for _ in range(n)]
        called = [False] * n

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=chunk_id,
                created=created,
                model=model_id,
                choices=choices,
                usage=wire_usage(usage) if usage is not None else None,
            )

        def pieces_chunks(index: int, pieces: list[Piece]) -> list[ChatCompletionChunk]:
            called[index] = called[index] or any(isinstance(p, ToolCallStart) for p in pieces)
            return [chunk([ChunkChoice(index=index, delta=d)]) for d in delta_for(pieces)]

        for i in range(n):
            yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async for event in prepared.model.engine.generate(prepared.generation):
            if isinstance(event, TextDelta):
                chunks = pieces_chunks(event.index, parsers[event.index].feed(event.text))
                if event.logprobs is not None:
                    lps = ChoiceLogprobs(content=wire_logprobs(event.logprobs))
                    if not chunks:  # logprobs of held-back text still go out, in order
                        chunks = [chunk([ChunkChoice(index=event.index, delta=ChoiceDelta())])]
                    chunks[-1].choices[0].logprobs = lps
                for c in chunks:
                    yield c
            elif isinstance(event, ChoiceFinished):
                for c in pieces_chunks(event.index, parsers[event.index].finish()):
                    yield c
                reason = finish_reason(event.finish_reason, called[event.index])
                yield chunk(
                    [ChunkChoice(index=event.index, delta=ChoiceDelta(), finish_reason=reason)]
                )
            elif isinstance(event, GenerationFinished):
                if include_usage:
                    yield chunk([], event.usage)
            elif isinstance(event, PromptProgress):
                yield KEEP_ALIVE


def _message(parts: MessageParts) -> ChatCompletionMessage:
    content = "".join(parts.content)
    reasoning = "".join(parts.reasoning) or None
    calls = [
        ChatCompletionMessageToolCall(
            id=c.id, function=Function(name=c.name, arguments="".join(c.arguments))
        )
        for c in parts.tool_calls
    ]
    return ChatCompletionMessage(
        content=None if calls and not content else content,
        tool_calls=calls or None,
        reasoning_content=reasoning,
        reasoning=reasoning,
    )
