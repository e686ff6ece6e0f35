"""Tokenizing and detokenizing with a model's own vocabulary, without HTTP."""

from __future__ import annotations

import asyncio

from hearth.api.chat import translate
from hearth.api.chat.protocol import ChatCompletionRequest
from hearth.api.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from hearth.engine.base import ConversationEngine
from hearth.errors import InvalidRequestError
from hearth.pipeline.prepare import check_token_ids
from hearth.pipeline.run import Pipeline


class TokenizeService:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        """The prompt's tokens, or the messages' as the chat template renders them (with the
        generation prompt, as a chat request would)."""
        if (request.prompt is None) == (request.messages is None):
            raise InvalidRequestError("give either prompt or messages", param="prompt")
        if request.messages is not None:
            chat = ChatCompletionRequest(
                model=request.model,
                messages=request.messages,
                tools=request.tools,
                chat_template_kwargs=request.chat_template_kwargs,
            )
            tokens, window = await self.pipeline.tokens(translate.conversation(chat))
            return TokenizeResponse(count=len(tokens), max_model_len=window, tokens=tokens)
        prompt = request.prompt or ""
        async with self.pipeline.models.use(request.model) as lease:
            engine = lease.model.engine
            ids = await asyncio.to_thread(
                engine.tokenize, prompt, add_special=request.add_special_tokens
            )
            return TokenizeResponse(count=len(ids), max_model_len=engine.info.ctx_size, tokens=ids)

    async def detokenize(self, request: DetokenizeRequest) -> DetokenizeResponse:
        async with self.pipeline.models.use(request.model) as lease:
            engine = lease.model.engine
            if not isinstance(engine, ConversationEngine):  # ids reach llama.cpp: checked
                check_token_ids(request.tokens, engine.info.n_vocab, "tokens")
            text = await asyncio.to_thread(engine.detokenize, list(request.tokens))
            return DetokenizeResponse(prompt=text, content=text)
