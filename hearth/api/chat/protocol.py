"""Chat Completions wire models, named and ordered as in OpenAI's API reference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from hearth.api.protocol import (
    ChatCompletionTokenLogprob,
    CompletionUsage,
    ResponseFormat,
    SamplingRequest,
    WireModel,
)

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
ReasoningFormat = Literal["parsed", "raw"]


class SparseModel(WireModel):
    """A response part that carries only the fields that are set, as OpenAI sends deltas."""

    @model_serializer(mode="wrap")
    def _only_set_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatCompletionMessageParam(BaseModel):
    """One input message. Content is text or a list of content parts."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-zA-Z0-9_.:-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatCompletionToolParam(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class ChatCompletionNamedToolChoiceParam(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | ChatCompletionNamedToolChoiceParam


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    model: str
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    tools: list[ChatCompletionToolParam] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # -- Hearth extensions --
    # Extra variables for the chat template (e.g. {"enable_thinking": false}).
    chat_template_kwargs: dict[str, Any] | None = None
    # "parsed": reasoning moves to reasoning_content; "raw": it stays in content.
    reasoning_format: ReasoningFormat | None = None
    # A GBNF grammar the output must follow.
    grammar: str | None = None


class ChoiceLogprobs(WireModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class Function(WireModel):
    arguments: str
    name: str


class ChatCompletionMessageToolCall(WireModel):
    id: str
    function: Function
    type: Literal["function"] = "function"


class ChatCompletionMessage(WireModel):
    content: str | None = None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    # -- Hearth extensions: reasoning, under both names clients read --
    reasoning_content: str | None = None
    reasoning: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # content and refusal are always sent (null included), as OpenAI does; the rest only
        # when present.
        return {
            k: v for k, v in handler(self).items() if v is not None or k in ("content", "refusal")
        }


class Choice(WireModel):
    finish_reason: FinishReason
    index: int
    logprobs: ChoiceLogprobs | None = None
    message: ChatCompletionMessage


class ChatCompletion(WireModel):
    id: str
    choices: list[Choice]
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


class ChoiceDeltaToolCallFunction(SparseModel):
    arguments: str | None = None
    name: str | None = None


class ChoiceDeltaToolCall(SparseModel):
    index: int
    id: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None
    type: Literal["function"] | None = None


class ChoiceDelta(SparseModel):
    """Deltas carry only what changed, as OpenAI sends them; it keeps every chunk small."""

    content: str | None = None
    refusal: str | None = None
    role: Literal["assistant"] | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    # -- Hearth extensions: reasoning, under both names clients read --
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChunkChoice(WireModel):
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(WireModel):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
