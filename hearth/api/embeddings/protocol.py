"""Embeddings wire models, named and ordered as in OpenAI's API reference."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hearth.api.protocol import OpenAIRequest, TextOrTokens, WireModel
from hearth.models.keepalive import KeepAliveField


class EmbeddingRequest(OpenAIRequest):
    input: TextOrTokens
    model: str
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    # -- Hearth extension (Ollama's meaning): how long the model stays loaded after this --
    keep_alive: KeepAliveField = None


class Embedding(WireModel):
    # A list of floats, or (encoding_format base64) their little-endian float32 bytes.
    embedding: list[float] | str
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(WireModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(WireModel):
    data: list[Embedding]
    model: str
    object: Literal["list"] = "list"
    usage: EmbeddingUsage
