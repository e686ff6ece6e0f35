"""The one internal request every dialect is translated into: a conversation (or raw prompts),
the tools it may call, the shape of the answer, sampling and the model's lifecycle.

Nothing here names a wire format. Fields that a dialect leaves out stay None and mean the
model's or the server's default, resolved once in `prepare`. Where an error must name a field
of the client's own request (a tool's schema, the output schema), the translator says which."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hearth.engine.base import SpecMode

ToolMode = Literal["none", "auto", "required"]
ReasoningFormat = Literal["parsed", "raw"]


@dataclass(slots=True)
class ToolCall:
    """A call the assistant made in an earlier turn."""

    id: str
    name: str
    # JSON text (as OpenAI sends it) or the object itself (as Ollama and Anthropic do).
    arguments: Any


@dataclass(slots=True)
class Message:
    """One turn: text content, and for the assistant its reasoning and tool calls; a tool
    result names the call it answers (and, where the dialect says it, the function)."""

    role: str  # system, developer, user, assistant, tool
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    # Other fields the client sent, handed to the chat template as they are.
    extra: dict[str, Any] = field(default_factory=dict)

    def for_template(self) -> dict[str, Any]:
        """The message as Hugging Face chat templates read it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        out.update(self.extra)
        return out


@dataclass(slots=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments
    strict: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where its parameters schema sits in the client's request, for errors that name it.
    param: str = "tools"

    def for_template(self) -> dict[str, Any]:
        """The tool as Hugging Face chat templates read it (OpenAI's function shape)."""
        fn: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            fn["description"] = self.description
        if self.parameters is not None:
            fn["parameters"] = self.parameters
        if self.strict is not None:
            fn["strict"] = self.strict
        fn.update(self.extra)
        return {"type": "function", "function": fn}


@dataclass(slots=True)
class OutputFormat:
    """The answer must be JSON: any object, or (json_schema) valid for `schema` (None: any
    JSON value)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | bool | None = None
    param: str = "response_format"  # the request field, for errors
    schema_param: str = "response_format"  # where the schema sits, for errors


@dataclass(slots=True)
class Sampling:
    """Sampling fields as the client gave them; None: the model's or server's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    logit_bias: Mapping[str, float] | None = None  # token id (as text) -> bias


@dataclass(slots=True)
class ConversationRequest:
    """What to generate, from which model, and how. Either `messages` go through the model's
    chat template, or `prompts` (texts or token ids, one generation each) are used as they
    are, with no template, tools or reasoning split."""

    model: str
    messages: list[Message] = field(default_factory=list)
    prompts: list[str | list[int]] | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolMode | None = None  # None: auto when there are tools
    tool_name: str | None = None  # tool_choice naming one function (implies required)
    parallel_tool_calls: bool | None = None
    format: OutputFormat | None = None
    grammar: str | None = None  # GBNF the output must follow (Hearth's extension)
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    logprobs: int | None = None  # None: none; k: the token's and the k best alternatives'
    ignore_eos: bool = False
    speculative: SpecMode | None = None
    draft_max: int | None = None
    reasoning_format: ReasoningFormat | None = None  # None: the server's setting
    reasoning_effort: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | None = None  # seconds the model stays loaded after; None: default
    # Token ids the prompt continues (Ollama's `context`: an earlier exchange as it returned
    # it); the prompt then gets no BOS token of its own.
    context: list[int] | None = None
    # Fill in the middle: the one raw prompt is the text before the gap, this the text after.
    suffix: str | None = None
    # The request's own context window (Ollama's num_ctx) within the model's: prompt and
    # answer must fit in it. `window_param` names the field for errors.
    window: int | None = None
    window_param: str = "window"
    # The prompt must leave room for all of max_tokens, not just some (Responses' truncation
    # `auto`: the oldest turns are dropped until it does); otherwise the answer is cut short
    # where the context ends.
    reserve_output: bool = False
