"""Completions (legacy text completion) wire models, as in OpenAI's API reference."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hearth.api.protocol import (
    CompletionUsage,
    ResponseFormat,
    SamplingRequest,
    TextOrTokens,
    WireModel,
)


class CompletionRequest(SamplingRequest):
    model: str
    prompt: TextOrTokens
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    # -- Hearth extensions (as llama.cpp's server has them): constrained output --
    response_format: ResponseFormat | None = None
    grammar: str | None = None


class Logprobs(WireModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)


class CompletionChoice(WireModel):
    finish_reason: Literal["stop", "length", "content_filter"] | None
    index: int
    logprobs: Logprobs | None = None
    text: str


class Completion(WireModel):
    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
