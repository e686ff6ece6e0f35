"""Anthropic Messages to and from the pipeline: content blocks into a `ConversationRequest`
(tool_use as the assistant's tool calls, tool_result as tool turns, thinking as reasoning),
the neutral events out as Anthropic's stream events, the `Result` as one `Message`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from hearth.api.anthropic import protocol as wire
from hearth.api.openai_wire import new_id
from hearth.chat.pieces import (
    Content,
    Piece,
    Reasoning,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from hearth.engine.base import Usage
from hearth.errors import InvalidRequestError
from hearth.pipeline import events as ev
from hearth.pipeline.prepare import Prepared, normalize_stop
from hearth.pipeline.request import (
    ConversationRequest,
    Message,
    OutputFormat,
    Sampling,
    Tool,
    ToolCall,
    ToolMode,
)

log = logging.getLogger("hearth.api")

# Anthropic's tool_choice types ("tool" names one function: tool_name).
TOOL_MODES: dict[str, ToolMode] = {"auto": "auto", "any": "required", "none": "none"}

# -- request ------------------------------------------------------------------------------------


def conversation(
    request: wire.MessageCountTokensParams, keep_alive: float | None = None
) -> ConversationRequest:
    """The prompt-deciding fields (all that count_tokens has) as the internal request."""
    out = ConversationRequest(model=request.model, keep_alive=keep_alive)
    if request.system is not None:
        system = request.system
        text = system if isinstance(system, str) else "".join(b.text for b in system)
        out.messages.append(Message("system", text))
    for i, msg in enumerate(request.messages):
        if msg.role == "system" and (i == 0 or request.messages[i - 1].role != "user"):
            # Anthropic's placement rule: later instructions follow a user turn; the first
            # ones are the `system` field.
            raise InvalidRequestError(
                "a system message in messages must follow a user turn; put the first "
                "instructions in the top-level 'system' field",
                param=f"messages.{i}.role",
            )
        out.messages += _turns(i, msg)
    out.tools = [
        Tool(
            name=t.name,
            description=t.description,
            parameters=t.input_schema,
            extra=dict(t.model_extra or {}),
            param=f"tools.{i}.input_schema",
        )
        for i, t in enumerate(request.tools or [])
    ]
    choice = request.tool_choice
    if choice is not None:
        if choice.type == "tool":
            if not choice.name:
                raise InvalidRequestError(
                    "tool_choice of type 'tool' needs the tool's name", param="tool_choice.name"
                )
            out.tool_name = choice.name
        else:
            out.tool_choice = TOOL_MODES[choice.type]
        if choice.disable_parallel_tool_use:
            out.parallel_tool_calls = False
    # Anthropic thinks only when asked; templates with a switch read enable_thinking.
    thinking = request.thinking is not None and request.thinking.type != "disabled"
    out.template_kwargs = {"enable_thinking": thinking}
    out.reasoning_format = "parsed"
    return out


def create_request(request: wire.MessageCreateParams) -> ConversationRequest:
    """The whole create request as the internal one."""
    out = conversation(request, request.keep_alive_seconds)
    out.max_tokens = request.max_tokens
    out.stop = normalize_stop(request.stop_sequences)
    out.sampling = Sampling(
        temperature=request.temperature, top_p=request.top_p, top_k=request.top_k
    )
    config = request.output_config
    if config is not None and config.format is not None:
        out.format = OutputFormat(
            "json_schema",
            config.format.schema_,
            param="output_config",
            schema_param="output_config.format.schema",
        )
    return out


def _turns(i: int, msg: wire.MessageParam) -> list[Message]:
    """One Anthropic message as turns: a user message's tool results become tool turns (in
    their order, text between them kept), an assistant's blocks one assistant turn."""
    if isinstance(msg.content, str):
        return [Message(msg.role, msg.content)]
    if msg.role == "system":
        parts = []
        for j, block in enumerate(msg.content):
            if not isinstance(block, wire.TextBlockParam):
                raise InvalidRequestError(
                    "a system message holds text blocks only", param=f"messages.{i}.content.{j}"
                )
            parts.append(block.text)
        return [Message("system", "".join(parts))]
    turns: list[Message] = []
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(msg.content):
        where = f"messages.{i}.content.{j}"
        if isinstance(block, wire.MediaBlockParam):
            raise InvalidRequestError(
                f"'{block.type}' blocks need a model with vision; this server reads text, "
                "tool_use, tool_result and thinking blocks",
                param=where,
            )
        if isinstance(block, wire.TextBlockParam):
            text.append(block.text)
        elif isinstance(block, wire.ThinkingBlockParam):
            reasoning.append(block.thinking)
        elif isinstance(block, wire.RedactedThinkingBlockParam):
            continue  # encrypted by another server: nothing a local model can read
        elif isinstance(block, wire.ToolUseBlockParam):
            if msg.role != "assistant":
                raise InvalidRequestError("tool_use blocks belong to assistant turns", param=where)
            calls.append(ToolCall(block.id, block.name, block.input))
        else:  # tool_result
            if msg.role != "user":
                raise InvalidRequestError("tool_result blocks belong to user turns", param=where)
            if text:
                turns.append(Message("user", "".join(text)))
                text = []
            turns.append(Message("tool", _result_text(block), tool_call_id=block.tool_use_id))
    if msg.role == "assistant":
        joined = "".join(reasoning) or None
        turns.append(Message("assistant", "".join(text), tool_calls=calls, reasoning=joined))
    elif text or not turns:
        turns.append(Message("user", "".join(text)))
    return turns


def _result_text(block: wire.ToolResultBlockParam) -> str:
    content = block.content
    text = content if isinstance(content, str) else "".join(b.text for b in content or [])
    return f"Error: {text}" if block.is_error else text


# -- response -----------------------------------------------------------------------------------


def stop_reason(finish: ev.Finished | None) -> wire.StopReason:
    if finish is None or finish.reason == "stop":
        return "stop_sequence" if finish is not None and finish.stop_sequence else "end_turn"
    if finish.reason == "tool_calls":
        return "tool_use"
    return "max_tokens" if finish.reason == "length" else "end_turn"


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:  # the tool parsers pass only JSON objects; be safe anyway
        log.warning("tool call arguments are not JSON: %.200s", text)
        return {}


def _usage(usage: Usage) -> wire.Usage:
    return wire.Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=usage.cached_tokens,
    )


def message(prepared: Prepared, result: ev.Result) -> wire.Message:
    choice = result.choices[0]
    parts = choice.parts
    content: list[wire.ContentBlock] = []
    if parts.reasoning:
        content.append(wire.ThinkingBlock(thinking="".join(parts.reasoning)))
    if parts.content or not parts.tool_calls:
        content.append(wire.TextBlock(text="".join(parts.content)))
    for call in parts.tool_calls:
        args = _arguments("".join(call.arguments))
        content.append(wire.ToolUseBlock(id=call.id, name=call.name, input=args))
    finish = choice.finish
    return wire.Message(
        id=new_id("msg"),
        content=content,
        model=prepared.model.entry.id,
        stop_reason=stop_reason(finish),
        stop_sequence=finish.stop_sequence if finish is not None else None,
        usage=_usage(result.usage),
    )


class _Blocks:
    """The stream's content blocks: which one is open, and the events that open, fill and
    close them."""

    def __init__(self) -> None:
        self.count = 0
        self.open: str | None = None  # "text", "thinking", "tool_use"

    def close(self) -> list[wire.StreamEvent]:
        if self.open is None:
            return []
        self.open = None
        return [wire.ContentBlockStopEvent(index=self.count - 1)]

    def start(self, kind: str, block: wire.ContentBlock) -> list[wire.StreamEvent]:
        out = self.close()
        out.append(wire.ContentBlockStartEvent(index=self.count, content_block=block))
        self.count += 1
        self.open = kind
        return out

    def delta(
        self, delta: wire.TextDelta | wire.ThinkingDelta | wire.InputJSONDelta
    ) -> wire.StreamEvent:
        return wire.ContentBlockDeltaEvent(index=self.count - 1, delta=delta)

    def feed(self, piece: Piece) -> list[wire.StreamEvent]:
        out: list[wire.StreamEvent] = []
        if isinstance(piece, Content):
            if self.open != "text":
                out += self.start("text", wire.TextBlock(text=""))
            out.append(self.delta(wire.TextDelta(text=piece.text)))
        elif isinstance(piece, Reasoning):
            if self.open != "thinking":
                out += self.start("thinking", wire.ThinkingBlock(thinking=""))
            out.append(self.delta(wire.ThinkingDelta(thinking=piece.text)))
        elif isinstance(piece, ToolCallStart):
            block = wire.ToolUseBlock(id=piece.id, name=piece.name, input={})
            out += self.start("tool_use", block)
        elif isinstance(piece, ToolCallArgs):
            out.append(self.delta(wire.InputJSONDelta(partial_json=piece.text)))
        elif isinstance(piece, ToolCallEnd):
            out += self.close()
        return out


async def stream_events(
    prepared: Prepared, events: AsyncIterator[ev.Event]
) -> AsyncIterator[wire.StreamEvent | ev.KeepAlive]:
    """message_start, then content blocks (start, deltas, stop), message_delta with the stop
    reason and usage, message_stop. Keep-alives go out as `ping` events."""
    prompt = len(prepared.generations[0].prompt)
    start = wire.Message(
        id=new_id("msg"),
        content=[],
        model=prepared.model.entry.id,
        usage=wire.Usage(input_tokens=prompt, output_tokens=0),
    )
    yield wire.MessageStartEvent(message=start)
    yield ev.KEEP_ALIVE  # Anthropic sends one ping after message_start
    blocks = _Blocks()
    finish: ev.Finished | None = None
    async for event in events:
        if isinstance(event, ev.Output):
            for piece in event.pieces:
                for item in blocks.feed(piece):
                    yield item
        elif isinstance(event, ev.Finished):
            if event.reason in ("cancelled", "error"):
                continue  # the error event that follows says why
            finish = event
            for item in blocks.close():
                yield item
        elif isinstance(event, ev.Done):
            usage = _usage(event.usage)
            yield wire.MessageDeltaEvent(
                delta=wire.MessageDelta(
                    stop_reason=stop_reason(finish),
                    stop_sequence=finish.stop_sequence if finish is not None else None,
                ),
                usage=wire.MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )
            yield wire.MessageStopEvent()
        elif isinstance(event, ev.Progress):
            yield ev.KEEP_ALIVE
