"""Chat Completions: the request translated into the conversation pipeline, its events
rendered back as OpenAI objects. No FastAPI here: the same service is the in-process library."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from hearth.api.chat import translate
from hearth.api.chat.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from hearth.pipeline.events import KeepAlive
from hearth.pipeline.run import Pipeline


class ChatCompletionsService:
    """POST /v1/chat/completions, without HTTP."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def create(
        self, request: ChatCompletionRequest
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk | KeepAlive]:
        """A completion, or (stream=True) an iterator of chunks. Bad requests raise here,
        before anything streams."""
        conversation = translate.conversation(request)
        if request.stream:
            render = functools.partial(translate.chunks, include_usage=request.include_usage)
            return await self.pipeline.stream(conversation, render)
        prepared, result = await self.pipeline.complete(conversation)
        return translate.completion(prepared, result)
