"""Responses API wire models, named as OpenAI's API reference names them: the create request
(input items, function and custom tools, text.format), the response object with its output
items, and the stream's events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from hearth.api.protocol import OpenAIRequest, WireModel
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds

# -- request ------------------------------------------------------------------------------------


class FunctionToolParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_.:-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomToolParam(BaseModel):
    """A tool taking free-form text (Codex's apply_patch); offered as a one-string function."""

    model_config = ConfigDict(extra="allow")

    type: Literal["custom"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_.:-]{1,64}$")
    description: str | None = None
    format: dict[str, Any] | None = None


# require_approval: "never", "always", or per tool: {"never": {"tool_names": [...]}, ...}
ApprovalPolicy = Literal["never", "always"] | dict[str, Any]


class McpToolParam(BaseModel):
    """A configured MCP server's tools (by `server_label`), run by Hearth itself."""

    model_config = ConfigDict(extra="allow")

    type: Literal["mcp"]
    server_label: str = Field(min_length=1, max_length=200)
    server_url: str | None = Field(None, max_length=2048)
    allowed_tools: list[str] | dict[str, Any] | None = None
    require_approval: ApprovalPolicy | None = None
    headers: dict[str, str] | None = None
    server_description: str | None = None


_KNOWN_TOOLS = ("function", "custom", "mcp")


class OtherToolParam(BaseModel):
    """A tool type Hearth cannot run (web_search, file_search, computer_use...): left out of
    the prompt and named in the x-hearth-ignored-tools header."""

    model_config = ConfigDict(extra="allow")

    # Never one of the types above (the discriminator sends those there): oneOf holds.
    type: str = Field(json_schema_extra={"not": {"enum": list(_KNOWN_TOOLS)}})


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _KNOWN_TOOLS else "other"


# By `type`, so a function tool with bad fields is a 400 naming them, never an ignored tool.
ToolParam = Annotated[
    Annotated[FunctionToolParam, Tag("function")]
    | Annotated[CustomToolParam, Tag("custom")]
    | Annotated[McpToolParam, Tag("mcp")]
    | Annotated[OtherToolParam, Tag("other")],
    Discriminator(_tool_kind),
]


class NamedToolChoice(BaseModel):
    """One tool by name: a function, a custom tool, or an MCP server's tool."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function", "custom", "mcp"]
    name: str | None = None  # only an MCP choice may leave it out: any of that server's
    server_label: str | None = None


ToolChoiceParam = Literal["auto", "none", "required"] | NamedToolChoice


class TextFormatText(BaseModel):
    type: Literal["text"]


class TextFormatJSONObject(BaseModel):
    type: Literal["json_object"]


class TextFormatJSONSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field("response", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | bool | None = Field(None, alias="schema")
    strict: bool | None = None


TextFormat = Annotated[
    TextFormatText | TextFormatJSONObject | TextFormatJSONSchema, Field(discriminator="type")
]


class TextConfig(WireModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningParam(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponseCreateRequest(OpenAIRequest):
    """POST /v1/responses. Input items are checked by the translator, which names the item
    (`input.3`) a problem is in."""

    model: str = Field(min_length=1, max_length=512)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    previous_response_id: str | None = Field(None, max_length=200)
    conversation: str | dict[str, Any] | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1, le=64)  # MCP calls Hearth runs, at most
    text: TextConfig | None = None
    reasoning: ReasoningParam | None = None
    metadata: dict[str, str] | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # -- Hearth extensions, as on chat --
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    logit_bias: dict[str, float] | None = None
    keep_alive: KeepAliveField = None

    @property
    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)

    @field_validator("conversation")
    @classmethod
    def _conversation(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, dict) and not (isinstance(value.get("id"), str) and value["id"]):
            raise ValueError("must be a conversation id, or an object with its `id`")
        if isinstance(value, str) and not value:
            raise ValueError("must be a conversation id")
        return value

    @property
    def conversation_id(self) -> str | None:
        conv = self.conversation
        if isinstance(conv, dict):
            value = conv.get("id")
            return value if isinstance(value, str) else None
        return conv


# -- response -----------------------------------------------------------------------------------


class OutputText(WireModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class ReasoningText(WireModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(WireModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class ReasoningItem(WireModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[Any] = Field(default_factory=list)
    content: list[ReasoningText] = Field(default_factory=list)
    status: ItemStatus | None = None


class FunctionCall(WireModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class CustomToolCall(WireModel):
    type: Literal["custom_tool_call"] = "custom_tool_call"
    id: str
    call_id: str
    name: str
    input: str
    status: ItemStatus | None = None


class McpCallItem(WireModel):
    type: Literal["mcp_call"] = "mcp_call"
    id: str
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    error: dict[str, Any] | None = None
    status: Literal["in_progress", "calling", "completed", "incomplete", "failed"]
    approval_request_id: str | None = None


class McpListToolsItem(WireModel):
    type: Literal["mcp_list_tools"] = "mcp_list_tools"
    id: str
    server_label: str
    tools: list[dict[str, Any]]
    error: str | None = None


class McpApprovalRequestItem(WireModel):
    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    id: str
    server_label: str
    name: str
    arguments: str


OutputItem = (
    OutputMessage
    | ReasoningItem
    | FunctionCall
    | CustomToolCall
    | McpCallItem
    | McpListToolsItem
    | McpApprovalRequestItem
)


class InputTokensDetails(WireModel):
    cached_tokens: int = 0


class OutputTokensDetails(WireModel):
    reasoning_tokens: int = 0


class ResponseUsage(WireModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(WireModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(WireModel):
    code: str
    message: str


class ConversationRef(WireModel):
    id: str


Status = Literal["in_progress", "completed", "incomplete", "failed", "cancelled"]


class Response(WireModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Status
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    output_text: str = ""
    usage: ResponseUsage | None = None
    previous_response_id: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    truncation: Literal["auto", "disabled"] = "disabled"
    metadata: dict[str, str] = Field(default_factory=dict)
    conversation: ConversationRef | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    background: bool = False
    user: str | None = None


class DeletedResponse(WireModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputItemList(WireModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


# -- stream events ------------------------------------------------------------------------------


class StreamEvent(WireModel):
    """Every event has its type and its place in the stream (from 0)."""

    model_config = ConfigDict(extra="allow")

    type: str
    sequence_number: int = 0
