"""Messages: the request translated into the conversation pipeline, its events rendered as
Anthropic's message or stream events. No FastAPI here: the same service is the library's."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.api.anthropic import protocol as wire
from hearth.api.anthropic import translate
from hearth.pipeline.events import KeepAlive
from hearth.pipeline.run import Pipeline


class MessagesService:
    """POST /v1/messages and /v1/messages/count_tokens, without HTTP."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def create(
        self, request: wire.MessageCreateParams
    ) -> wire.Message | AsyncIterator[wire.StreamEvent | KeepAlive]:
        """A message, or (stream=True) its stream events. Bad requests raise here, before
        anything streams."""
        conversation = translate.create_request(request)
        if request.stream:
            return await self.pipeline.stream(conversation, translate.stream_events)
        prepared, result = await self.pipeline.complete(conversation)
        return translate.message(prepared, result)

    async def count_tokens(self, request: wire.MessageCountTokensParams) -> wire.MessageTokensCount:
        """The prompt's tokens, counted as a create request with the same fields counts them."""
        count = await self.pipeline.count_tokens(translate.conversation(request))
        estimated = True if count.estimated else None
        return wire.MessageTokensCount(input_tokens=count.tokens, estimated=estimated)
