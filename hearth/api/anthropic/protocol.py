"""Anthropic Messages API wire models, named as in Anthropic's API reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hearth.api.protocol import OpenAIRequest, WireModel
from hearth.errors import HearthError
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds


class Block(BaseModel):
    """A content block of a request; unknown block fields are kept and ignored."""

    model_config = ConfigDict(extra="allow")


class TextBlockParam(Block):
    type: Literal["text"]
    text: str


class ToolUseBlockParam(Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: Any = None


class ToolResultBlockParam(Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlockParam] | None = None
    is_error: bool | None = None


class ThinkingBlockParam(Block):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlockParam(Block):
    type: Literal["redacted_thinking"]
    data: str = ""


class MediaBlockParam(Block):
    """Images and documents: accepted on the wire, refused with a clear 400 (no vision)."""

    type: Literal["image", "document"]


ContentBlockParam = Annotated[
    TextBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
    | MediaBlockParam,
    Field(discriminator="type"),
]


class MessageParam(BaseModel):
    # "system": instructions later in the conversation (Anthropic takes them after a user
    # turn; Claude Code sends its environment so).
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]


class ToolParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(BaseModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(BaseModel):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=0)


class JSONOutputFormat(BaseModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """Structured output: the answer is JSON valid for the schema."""

    model_config = ConfigDict(extra="allow")

    format: JSONOutputFormat | None = None


class MessageCountTokensParams(OpenAIRequest):
    """The fields that decide the prompt: POST /v1/messages/count_tokens."""

    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessageCreateParams(MessageCountTokensParams):
    max_tokens: int = Field(ge=1)
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    # -- Hearth extension (Ollama's meaning): how long the model stays loaded after this --
    keep_alive: KeepAliveField = None

    @property
    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)


# -- responses ----------------------------------------------------------------------------------


class TextBlock(WireModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(WireModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""  # Hearth's reasoning is not signed


class ToolUseBlock(WireModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: Any


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Usage(WireModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(WireModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageTokensCount(WireModel):
    input_tokens: int
    # -- Hearth extension: an upstream model's server could not count, so this is a guess --
    estimated: bool | None = Field(None, exclude_if=lambda v: v is None)


# -- stream events ------------------------------------------------------------------------------


class MessageStartEvent(WireModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(WireModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(WireModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingDelta(WireModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class InputJSONDelta(WireModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(WireModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDelta | ThinkingDelta | InputJSONDelta


class ContentBlockStopEvent(WireModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(WireModel):
    stop_reason: StopReason | None
    stop_sequence: str | None


class MessageDeltaUsage(WireModel):
    output_tokens: int
    input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDeltaEvent(WireModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(WireModel):
    type: Literal["message_stop"] = "message_stop"


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
)

# -- errors -------------------------------------------------------------------------------------

# Anthropic names its error types by status; Hearth's errors carry their status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(exc: HearthError) -> dict[str, Any]:
    """{"type": "error", "error": {"type", "message"}} as Anthropic sends it."""
    status = exc.status_code
    kind = _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}
