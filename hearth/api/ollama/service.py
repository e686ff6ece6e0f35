"""Ollama's generation routes over the conversation pipeline and the embeddings service. No
FastAPI here: the same service is the library's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TypeAlias

from hearth.api.embeddings.service import EmbeddingsService
from hearth.api.ollama import protocol as wire
from hearth.api.ollama import translate
from hearth.api.streaming import closing
from hearth.models.manager import ModelManager
from hearth.pipeline.events import Event, KeepAlive
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.run import Pipeline

# The Ollama release whose API this one follows (clients read /api/version to decide what
# they may send: `think`, `logprobs`, tools).
OLLAMA_VERSION = "0.13.0"

Lines: TypeAlias = AsyncIterator[translate.Line | KeepAlive]


class OllamaService:
    """POST /api/chat, /api/generate, /api/embed and /api/embeddings, without HTTP. A
    streamed answer is its lines; a whole one, one object."""

    def __init__(self, pipeline: Pipeline, models: ModelManager, embeddings: EmbeddingsService):
        self.pipeline = pipeline
        self.models = models
        self.embeddings = embeddings

    async def chat(self, request: wire.ChatRequest) -> wire.ChatResponse | Lines:
        start = time.monotonic_ns()
        if not request.messages:
            return wire.ChatResponse(**await self._load_or_unload(request))
        conversation = translate.chat_request(request)
        if request.stream:
            return await self.pipeline.stream(
                conversation, lambda _, events: translate.lines(request, events, start)
            )
        prepared, result = await self.pipeline.complete(conversation)
        return translate.chat_response(request, prepared, result, start)

    async def generate(self, request: wire.GenerateRequest) -> wire.GenerateResponse | Lines:
        start = time.monotonic_ns()
        if not request.prompt and request.suffix is None:
            return wire.GenerateResponse(**await self._load_or_unload(request))
        conversation = translate.generate_request(request)

        def render(prepared: Prepared, events: AsyncIterator[Event]) -> Lines:
            # `context` is tokenized while the stream holds the model (off the loop).
            return translate.lines(request, events, start, lambda text: _context(prepared, text))

        lines = await self.pipeline.stream(conversation, render)
        if request.stream:
            return lines
        return await _gathered(lines)

    async def _load_or_unload(
        self, request: wire.ChatRequest | wire.GenerateRequest
    ) -> dict[str, object]:
        """Ollama's way to load a model (nothing to say) or, with keep_alive 0, unload it."""
        keep_alive = request.keep_alive_seconds
        base = {"model": request.model, "created_at": translate.created_at(), "done": True}
        if keep_alive == 0:
            await self.models.unload(request.model)
            return base | {"done_reason": "unload"}
        await self.models.load(request.model, keep_alive)
        return base | {"done_reason": "load"}

    async def embed(self, request: wire.EmbedRequest) -> wire.EmbedResponse:
        start = time.monotonic_ns()
        out = await self.embeddings.embed(
            request.model,
            request.input,
            keep_alive=request.keep_alive_seconds,
            dimensions=request.dimensions,
            truncate=request.truncate,
        )
        return wire.EmbedResponse(
            model=request.model,
            embeddings=out.vectors,
            total_duration=time.monotonic_ns() - start,
            load_duration=out.load_ns,
            prompt_eval_count=out.tokens,
        )

    async def embeddings_legacy(self, request: wire.EmbeddingsRequest) -> wire.EmbeddingsResponse:
        """The older route: one prompt, one vector (an empty prompt: an empty vector)."""
        if not request.prompt:
            self.models.registry.usable(request.model)  # an unknown model is still a 404
            return wire.EmbeddingsResponse(embedding=[])
        out = await self.embeddings.embed(
            request.model, request.prompt, keep_alive=request.keep_alive_seconds, truncate=True
        )
        return wire.EmbeddingsResponse(embedding=out.vectors[0])

    def version(self) -> wire.VersionResponse:
        return wire.VersionResponse(version=OLLAMA_VERSION)


async def _gathered(lines: Lines) -> wire.GenerateResponse:
    """A whole generate answer from its stream's lines: the texts joined into the last."""
    text: list[str] = []
    thinking: list[str] = []
    logprobs: list[wire.Logprob] = []
    last: wire.GenerateResponse | None = None
    async with closing(lines) as stream:
        async for line in stream:
            if not isinstance(line, wire.GenerateResponse):
                continue
            text.append(line.response)
            thinking.append(line.thinking or "")
            logprobs += line.logprobs or []
            last = line
    assert last is not None and last.done, "a generation ends with its stats"
    update = {"response": "".join(text), "thinking": "".join(thinking) or None}
    return last.model_copy(update={**update, "logprobs": logprobs or None})


def _context(prepared: Prepared, response: str) -> list[int] | None:
    """Generate's `context`: the prompt's tokens and the response's, for the next request to
    continue (the response re-tokenized: the engine streams text, not ids). None when the
    prompt's tokens are not known here (an upstream model's are its server's)."""
    engine = prepared.model.engine
    if not prepared.generations[0].prompt:
        return None
    tokens = engine.tokenize(response, add_special=False) if response else []
    return [*prepared.generations[0].prompt, *tokens]
