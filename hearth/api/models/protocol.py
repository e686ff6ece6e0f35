"""Models API wire models: OpenAI's Model object plus Hearth's details in one block."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hearth.api.protocol import WireModel


class UpstreamUrl(WireModel):
    """One base URL of an upstream model, as the health check and the requests found it."""

    url: str
    up: bool | None = None  # None: not connected yet
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    last_error: str | None = None


class UpstreamDetails(WireModel):
    model: str  # the name the upstream server knows it by
    base_urls: list[UpstreamUrl]
    balance: str


class ModelDetails(WireModel):
    """Hearth's extension block: what the file is and whether it is in memory."""

    status: Literal["loaded", "loading", "available", "invalid", "crashed", "failed"]
    error: str | None = None
    file: str
    size_bytes: int
    quantization: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    context_length_trained: int | None = None
    # a local model's KV cache: sequences served at once, and their bytes together
    parallel: int | None = None
    kv_cache_bytes: int | None = None
    has_chat_template: bool | None = None
    tokenizer: str | None = None
    aliases: list[str] = Field(default_factory=list)
    files: int = 1  # a split model has several
    projector: str | None = None  # the multimodal projector file beside it, if any
    # while loaded: requests using it, estimated memory, and when it unloads if left idle
    active_requests: int = 0
    memory_bytes: int | None = None
    expires_at: int | None = None
    # what serves it: a local GGUF through llama.cpp, or an OpenAI-compatible server upstream
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    upstream: UpstreamDetails | None = None


class Model(WireModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str = "local"
    context_window: int
    max_output_tokens: int
    max_model_len: int  # context_window under vLLM's name, which many clients read
    # -- Hearth extension --
    hearth: ModelDetails


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[Model]
