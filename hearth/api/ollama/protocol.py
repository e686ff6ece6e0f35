"""Ollama's generation API wire models (/api/chat, /api/generate, /api/embed, /api/embeddings),
named as Ollama's API reference names them. Responses leave out what is unset, as Ollama does."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from hearth.api.chat.protocol import ChatCompletionToolParam, ToolChoice
from hearth.api.protocol import OpenAIRequest, TokenId, legacy_name
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds

# `think`: on or off, or how hard (the levels gpt-oss reads).
Think = bool | Literal["low", "medium", "high"]
# `format`: "json" (any JSON value), a JSON schema, or "" / null for free text.
Format = Literal["json", ""] | dict[str, Any] | None


class Options(BaseModel):
    """The sampling and context options Hearth reads. Ollama's load-time options (num_gpu,
    num_thread, use_mmap...) and samplers llama.cpp dropped (mirostat, tfs_z) are ignored, as
    Ollama ignores options it does not know; a known option of the wrong type is a 400."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    num_ctx: int | None = Field(None, ge=1, le=2**31 - 1)
    # -1: no limit, -2: until the context is full (both: the context's room)
    num_predict: int | None = Field(None, ge=-2, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0.0)
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    repeat_last_n: int | None = Field(None, ge=0, le=1 << 20)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    num_keep: int | None = None  # accepted; Hearth never shifts a context (see docs)


class OllamaRequest(OpenAIRequest):
    """Fields every generation route shares; Ollama's older `name` is accepted for `model`."""

    model: str = Field(min_length=1, max_length=512)
    options: Options | None = None
    keep_alive: KeepAliveField = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_name(cls, data: object) -> object:
        return legacy_name(data)

    @property
    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)


class ToolCallFunctionParam(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    arguments: dict[str, Any] = Field(default_factory=dict)  # an object, as Ollama sends it


class ToolCallParam(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    function: ToolCallFunctionParam


class ChatMessageParam(BaseModel):
    """One message; a tool result names its function in `tool_name`."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class GenerationRequest(OllamaRequest):
    """What chat and generate share."""

    format: Format = None
    stream: bool = True  # Ollama streams unless told not to
    think: Think | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


class ChatRequest(GenerationRequest):
    """POST /api/chat. No messages: load the model (with keep_alive 0: unload it)."""

    messages: list[ChatMessageParam] = Field(default_factory=list)
    tools: list[ChatCompletionToolParam] | None = None
    # -- Hearth extension (OpenAI's meaning; Ollama has none): force a call, or any --
    tool_choice: ToolChoice | None = None


class GenerateRequest(GenerationRequest):
    """POST /api/generate. No prompt: load the model (with keep_alive 0: unload it)."""

    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None  # refused: Hearth renders Jinja chat templates
    context: list[TokenId] | None = None
    raw: bool = False
    images: list[str] | None = None


class EmbedRequest(OllamaRequest):
    """POST /api/embed: one text or several; `truncate` (default) cuts inputs to the context."""

    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)


class EmbeddingsRequest(OllamaRequest):
    """POST /api/embeddings, the older route: one prompt, one vector."""

    prompt: str


# -- responses ----------------------------------------------------------------------------------


class Sparse(BaseModel):
    """A response object without its unset fields, as Ollama writes them."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ToolCallFunction(Sparse):
    index: int | None = None
    name: str
    arguments: dict[str, Any]


class ToolCall(Sparse):
    id: str | None = None
    function: ToolCallFunction


class ChatMessage(Sparse):
    role: Literal["assistant"] = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None


class TopLogprob(Sparse):
    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(Sparse):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


DoneReason = Literal["stop", "length", "load", "unload"]


class Stats(Sparse):
    """The final object's fields: why it ended and where the time went (nanoseconds)."""

    model: str
    created_at: str
    done: bool = False
    done_reason: DoneReason | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ChatResponse(Stats):
    """A /api/chat stream line, or the whole answer."""

    message: ChatMessage = Field(default_factory=ChatMessage)
    logprobs: list[Logprob] | None = None


class GenerateResponse(Stats):
    """A /api/generate stream line, or the whole answer; the last carries `context`."""

    response: str = ""
    thinking: str | None = None
    context: list[int] | None = None
    logprobs: list[Logprob] | None = None


class EmbedResponse(Sparse):
    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class EmbeddingsResponse(Sparse):
    embedding: list[float]


class VersionResponse(Sparse):
    version: str
