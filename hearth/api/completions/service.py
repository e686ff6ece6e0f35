"""Completions: raw prompts (text or token ids) through the conversation pipeline, no chat
template; its events rendered back as OpenAI objects."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from hearth.api.completions import translate
from hearth.api.completions.protocol import Completion, CompletionRequest
from hearth.pipeline.events import KeepAlive
from hearth.pipeline.run import Pipeline


class CompletionsService:
    """POST /v1/completions, without HTTP."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def create(
        self, request: CompletionRequest
    ) -> Completion | AsyncIterator[Completion | KeepAlive]:
        """A completion, or (stream=True) an iterator of chunks. Bad requests raise here,
        before anything streams."""
        conversation = translate.conversation(request)
        if request.stream:
            render = functools.partial(translate.chunks, request=request)
            return await self.pipeline.stream(conversation, render)
        prepared, result = await self.pipeline.complete(conversation)
        return translate.completion(prepared, request, result)
