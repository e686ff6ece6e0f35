"""Chat Completions: messages through the chat template, into the engine, back as OpenAI objects.

No FastAPI here: the same service is the in-process library API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hearth.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionRequest,
    Choice,
    ChoiceDelta,
    ChoiceLogprobs,
    ChunkChoice,
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
    with_system_prompt,
)
from hearth.engine.base import (
    ChoiceFinished,
    FinishReason,
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


def template_messages(messages: list[ChatCompletionMessageParam]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: content as one string."""
    out = []
    for i, msg in enumerate(messages):
        item = msg.model_dump(exclude_none=True)
        content = msg.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise InvalidRequestError(
                        f"content part type {part.get('type')!r} is not supported; "
                        "this server reads text parts only",
                        param=f"messages.{i}.content.{j}",
                    )
                texts.append(part["text"])
            item["content"] = "".join(texts)
        elif content is None:
            item["content"] = ""
        out.append(item)
    return out


class ChatCompletionsService:
    """POST /v1/chat/completions, without HTTP."""

    def __init__(self, models: ModelManager):
        self.models = models

    async def create(
        self, request: ChatCompletionRequest
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk | KeepAlive]:
        """A completion, or (stream=True) an iterator of chunks. Bad requests raise here,
        before anything streams."""
        # The lease keeps the model loaded until the answer (or the stream) is over.
        async with self.models.use(request.model, request.keep_alive_seconds) as lease:
            prepared = await self.prepare(request)
            if request.stream:
                return lease.hold(self._stream(prepared))
            return await self._complete(prepared)

    async def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        model = await self.models.get(request.model)
        engine = model.engine
        info = engine.info
        messages = with_system_prompt(template_messages(request.messages), model.system_prompt)
        text = model.template.render(messages)
        # Templates that write the BOS token themselves must not get a second one.
        add_special = not (info.bos_token and text.startswith(info.bos_token))
        tokens = engine.tokenize(text, add_special=add_special)
        sampling = resolve_sampling(
            request,
            info.sampling_defaults,
            info.n_vocab,
            configured=model.sampling,
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
        )
        engine.check(generation)
        return PreparedChat(request, model, generation)

    async def _complete(self, prepared: PreparedChat) -> ChatCompletion:
        n = prepared.generation.n
        texts: list[list[str]] = [[] for _ in range(n)]
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finish: list[FinishReason] = ["stop"] * n
        usage = None
        async for event in prepared.model.engine.generate(prepared.generation):
            if isinstance(event, TextDelta):
                texts[event.index].append(event.text)
                if event.logprobs:
                    logprobs[event.index].extend(event.logprobs)
            elif isinstance(event, ChoiceFinished):
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
                    message=ChatCompletionMessage(content="".join(texts[i])),
                    finish_reason=finish[i],
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

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=chunk_id,
                created=created,
                model=model_id,
                choices=choices,
                usage=wire_usage(usage) if usage is not None else None,
            )

        for i in range(prepared.generation.n):
            yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async for event in prepared.model.engine.generate(prepared.generation):
            if isinstance(event, TextDelta):
                yield chunk(
                    [
                        ChunkChoice(
                            index=event.index,
                            delta=ChoiceDelta(content=event.text),
                            logprobs=ChoiceLogprobs(content=wire_logprobs(event.logprobs))
                            if event.logprobs is not None
                            else None,
                        )
                    ]
                )
            elif isinstance(event, ChoiceFinished):
                yield chunk(
                    [
                        ChunkChoice(
                            index=event.index,
                            delta=ChoiceDelta(),
                            finish_reason=event.finish_reason,
                        )
                    ]
                )
            elif isinstance(event, GenerationFinished):
                if include_usage:
                    yield chunk([], event.usage)
            elif isinstance(event, PromptProgress):
                yield KEEP_ALIVE
