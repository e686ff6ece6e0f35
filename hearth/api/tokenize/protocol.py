"""POST /tokenize and /detokenize in vLLM's shape (which SGLang and llama.cpp's server come
close to): what a Hearth in front of this one counts tokens with."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from hearth.api.chat.protocol import ChatCompletionMessageParam, ChatCompletionToolParam
from hearth.api.protocol import OpenAIRequest, TokenId, WireModel


class TokenizeRequest(OpenAIRequest):
    """A prompt (`content` is llama.cpp's name for it), or chat messages rendered through the
    model's template as a generation would render them."""

    model: str
    prompt: str | None = Field(None, validation_alias=AliasChoices("prompt", "content"))
    messages: list[ChatCompletionMessageParam] | None = Field(None, min_length=1)
    tools: list[ChatCompletionToolParam] | None = None
    add_special_tokens: bool = Field(
        True, validation_alias=AliasChoices("add_special_tokens", "add_special")
    )
    chat_template_kwargs: dict[str, Any] | None = None


class TokenizeResponse(WireModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(OpenAIRequest):
    model: str
    tokens: list[TokenId] = Field(max_length=1 << 20)


class DetokenizeResponse(WireModel):
    prompt: str
    content: str  # llama.cpp's name
