"""Responses to and from the pipeline: the request (with the earlier turns' items) into a
`ConversationRequest`, and the neutral events out as the Responses stream, which `Turn` also
gathers into the response object and the output items to store."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.api.responses import protocol as wire
from hearth.api.responses.items import Item, new_id, turns
from hearth.api.responses.mcp import Binding
from hearth.api.streaming import closing
from hearth.chat.pieces import Content, Piece, Reasoning, ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.engine.base import Usage
from hearth.errors import HearthError, InvalidRequestError, RequestCancelled
from hearth.pipeline import events as ev
from hearth.pipeline.request import (
    ConversationRequest,
    Message,
    OutputFormat,
    Sampling,
    Tool,
)

log = logging.getLogger("hearth.api")

# A custom tool's free-form input, offered to the model as a function of one string.
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}

# -- request ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """What a create request asks for, before the model runs: the internal request, the
    tools Hearth left out, and which tools are custom (their calls come back as such)."""

    conversation: ConversationRequest
    ignored_tools: list[str]
    custom_tools: set[str]
    history: int  # how many turns after the instructions are earlier ones (truncation drops them)


def _format(text: wire.TextConfig | None) -> OutputFormat | None:
    fmt = text.format if text is not None else None
    if isinstance(fmt, wire.TextFormatJSONObject):
        return OutputFormat("json_object", param="text.format", schema_param="text.format")
    if isinstance(fmt, wire.TextFormatJSONSchema):
        return OutputFormat(
            "json_schema", fmt.schema_, param="text.format", schema_param="text.format.schema"
        )
    return None


def plan(request: wire.ResponseCreateRequest, history: list[Item], current: list[Item]) -> Plan:
    """The turns: instructions (never inherited), the earlier items, this turn's input."""
    out = ConversationRequest(model=request.model, keep_alive=request.keep_alive_seconds)
    # One pass over all the items: a result names the function of a call from an earlier turn.
    out.messages = [Message("system", request.instructions)] if request.instructions else []
    out.messages += turns(history + current)
    ignored: list[str] = []
    custom: set[str] = set()
    for i, tool in enumerate(request.tools or []):
        if isinstance(tool, wire.FunctionToolParam):
            out.tools.append(
                Tool(
                    name=tool.name,
                    description=tool.description,
                    parameters=tool.parameters,
                    strict=tool.strict,
                    param=f"tools.{i}.parameters",
                )
            )
        elif isinstance(tool, wire.CustomToolParam):
            custom.add(tool.name)
            out.tools.append(
                Tool(name=tool.name, description=tool.description, parameters=CUSTOM_PARAMETERS)
            )
        else:
            ignored.append(tool.type)
    if ignored:
        log.info("responses: tools Hearth cannot run left out: %s", ", ".join(ignored))
    choice = request.tool_choice
    if isinstance(choice, wire.NamedToolChoice):
        if choice.name is None and choice.type != "mcp":
            raise InvalidRequestError("tool_choice needs the tool's name", param="tool_choice.name")
        if choice.name is None:
            out.tool_choice = "required"
        else:
            out.tool_name = choice.name
    elif choice is not None:
        out.tool_choice = choice
    out.parallel_tool_calls = request.parallel_tool_calls
    out.format = _format(request.text)
    out.sampling = Sampling(
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        seed=request.seed,
        logit_bias=request.logit_bias,
    )
    out.max_tokens = request.max_output_tokens
    out.reserve_output = request.truncation == "auto"
    if request.reasoning is not None and request.reasoning.effort is not None:
        out.reasoning_effort = request.reasoning.effort
    out.reasoning_format = "parsed"
    return Plan(out, ignored, custom, len(turns(history)) if history else 0)


def skeleton(
    request: wire.ResponseCreateRequest, response_id: str, created_at: int
) -> wire.Response:
    """The response object before any output: what `response.created` carries."""
    tools = [t.model_dump(exclude_none=True) for t in request.tools or []]
    choice = request.tool_choice
    fmt = request.text.format if request.text is not None else None
    conv = request.conversation_id
    return wire.Response(
        id=response_id,
        created_at=created_at,
        status="in_progress",
        model=request.model,
        previous_response_id=request.previous_response_id,
        instructions=request.instructions,
        tools=tools,
        tool_choice=choice.model_dump()
        if isinstance(choice, wire.NamedToolChoice)
        else choice or "auto",
        parallel_tool_calls=request.parallel_tool_calls is not False,
        text={"format": fmt.model_dump(by_alias=True) if fmt is not None else {"type": "text"}},
        truncation=request.truncation,
        metadata=request.metadata or {},
        conversation=wire.ConversationRef(id=conv) if conv else None,
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_output_tokens,
        reasoning=request.reasoning.model_dump() if request.reasoning is not None else None,
        store=request.store,
        user=request.user,
    )


# -- response -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """The output item being streamed: its index, kind and text so far."""

    index: int
    kind: str  # message, reasoning, function_call, custom_tool_call
    id: str
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class Turn:
    """One response being made: renders the neutral events as Responses stream events (each
    numbered), and keeps the output items, the events and the final object."""

    def __init__(
        self,
        response: wire.Response,
        custom_tools: set[str],
        mcp: dict[str, Binding] | None = None,
    ):
        self.response = response
        self.custom = custom_tools
        self.mcp = mcp or {}
        self.output: list[wire.OutputItem] = []
        # As sent, for the store (dumped once, when the response is written).
        self.events: list[wire.StreamEvent] = []
        self._open: _Open | None = None
        self._seq = 0
        self.cancel_requested = False
        # Across the rounds of one response (each MCP call the model makes, then its answer).
        self.usage = Usage(0, 0, 0)
        self.reasoning_tokens = 0
        self.last_finish: ev.Finished | None = None
        self.pending: list[int] = []  # this round's MCP calls to run: their output indexes
        self.client_calls = False  # the model called a tool the client runs: the turn ends
        self.awaiting_approval = False

    # -- events ---------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> wire.StreamEvent:
        event = wire.StreamEvent(type=kind, sequence_number=self._seq, **fields)
        self._seq += 1
        self.events.append(event)
        return event

    def _snapshot(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    def start(self) -> list[wire.StreamEvent]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def _item(self, item: wire.OutputItem) -> dict[str, Any]:
        return item.model_dump(mode="json")

    def _open_item(self, kind: str, piece: Piece | None = None) -> list[wire.StreamEvent]:
        out = self._close()
        index = len(self.output)  # one item is open at a time; it joins the output on close
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc"}[kind]
        opened = _Open(index, kind, new_id(prefix))
        self._open = opened
        if kind == "message":
            item: wire.OutputItem = wire.OutputMessage(
                id=opened.id, status="in_progress", content=[]
            )
            part: dict[str, Any] | None = wire.OutputText(text="").model_dump()
        elif kind == "reasoning":
            item = wire.ReasoningItem(id=opened.id, status="in_progress")
            part = wire.ReasoningText(text="").model_dump()
        else:
            assert isinstance(piece, ToolCallStart)
            opened.call_id, opened.name = piece.id, piece.name
            binding = self.mcp.get(piece.name)
            if piece.name in self.custom or (binding is not None and binding.approval):
                # Sent whole when complete: a custom call's input is JSON-wrapped, and an
                # approval request is one item with its arguments.
                opened.kind = "custom_tool_call" if binding is None else "mcp_approval_request"
                return out
            if binding is not None:
                opened.kind, opened.id = "mcp_call", new_id("mcp")
                item = wire.McpCallItem(
                    id=opened.id,
                    server_label=binding.label,
                    name=piece.name,
                    arguments="",
                    status="in_progress",
                )
                out.append(
                    self._event(
                        "response.output_item.added", output_index=index, item=self._item(item)
                    )
                )
                at = {"item_id": opened.id, "output_index": index}
                out.append(self._event("response.mcp_call.in_progress", **at))
                return out
            item = wire.FunctionCall(
                id=opened.id, call_id=piece.id, name=piece.name, arguments="", status="in_progress"
            )
            part = None
        out.append(
            self._event("response.output_item.added", output_index=index, item=self._item(item))
        )
        if part is not None:
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=opened.id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        return out

    def _close(self, status: wire.ItemStatus = "completed") -> list[wire.StreamEvent]:
        opened, self._open = self._open, None
        if opened is None:
            return []
        text = "".join(opened.text)
        at = {"item_id": opened.id, "output_index": opened.index}
        out: list[wire.StreamEvent] = []
        item: wire.OutputItem
        if opened.kind == "message":
            part = wire.OutputText(text=text)
            item = wire.OutputMessage(id=opened.id, status=status, content=[part])
            out.append(
                self._event(
                    "response.output_text.done", **at, content_index=0, text=text, logprobs=[]
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", **at, content_index=0, part=part.model_dump()
                )
            )
        elif opened.kind == "reasoning":
            part_r = wire.ReasoningText(text=text)
            item = wire.ReasoningItem(id=opened.id, status=status, content=[part_r])
            out.append(
                self._event("response.reasoning_text.done", **at, content_index=0, text=text)
            )
            out.append(
                self._event(
                    "response.content_part.done", **at, content_index=0, part=part_r.model_dump()
                )
            )
        elif opened.kind == "mcp_call":  # done once it has run (complete_call)
            out.append(self._event("response.mcp_call_arguments.done", **at, arguments=text))
            label = self.mcp[opened.name].label
            call = wire.McpCallItem(
                id=opened.id, server_label=label, name=opened.name, arguments=text, status="calling"
            )
            self.pending.append(len(self.output))
            self.output.append(call)
            return out
        elif opened.kind == "mcp_approval_request":
            item = wire.McpApprovalRequestItem(
                id=new_id("mcpr"),
                server_label=self.mcp[opened.name].label,
                name=opened.name,
                arguments=text,
            )
            self.awaiting_approval = True
            out.append(
                self._event(
                    "response.output_item.added", output_index=opened.index, item=self._item(item)
                )
            )
        elif opened.kind == "function_call":
            self.client_calls = True
            item = wire.FunctionCall(
                id=opened.id,
                call_id=opened.call_id,
                name=opened.name,
                arguments=text,
                status=status,
            )
            out.append(
                self._event(
                    "response.function_call_arguments.done", **at, name=opened.name, arguments=text
                )
            )
        else:
            self.client_calls = True
            item = wire.CustomToolCall(
                id=opened.id,
                call_id=opened.call_id,
                name=opened.name,
                input=_custom_input(text),
                status=status,
            )
            out.append(
                self._event(
                    "response.output_item.added", output_index=opened.index, item=self._item(item)
                )
            )
        self.output.append(item)
        out.append(
            self._event(
                "response.output_item.done", output_index=opened.index, item=self._item(item)
            )
        )
        return out

    def _text(self, kind: str, event: str, text: str, **extra: Any) -> list[wire.StreamEvent]:
        """More text of a message or reasoning item (opening one if another kind is open)."""
        opened = self._open
        out = self._open_item(kind) if opened is None or opened.kind != kind else []
        assert self._open is not None
        self._open.text.append(text)
        at = {"item_id": self._open.id, "output_index": self._open.index, "content_index": 0}
        out.append(self._event(event, **at, delta=text, **extra))
        return out

    def feed(self, piece: Piece) -> list[wire.StreamEvent]:
        opened = self._open
        if isinstance(piece, Content):
            return self._text("message", "response.output_text.delta", piece.text, logprobs=[])
        if isinstance(piece, Reasoning):
            return self._text("reasoning", "response.reasoning_text.delta", piece.text)
        if isinstance(piece, ToolCallStart):
            return self._open_item("function_call", piece)
        if isinstance(piece, ToolCallArgs) and opened is not None:
            opened.text.append(piece.text)
            if opened.kind == "mcp_call":
                at = {"item_id": opened.id, "output_index": opened.index}
                return [self._event("response.mcp_call_arguments.delta", **at, delta=piece.text)]
            if opened.kind != "function_call":
                return []
            return [
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=opened.id,
                    output_index=opened.index,
                    delta=piece.text,
                )
            ]
        if isinstance(piece, ToolCallEnd):
            return self._close()
        return []

    def listing(self, item: Item) -> list[wire.StreamEvent]:
        """An MCP server's tools listed (or why not), as one finished item."""
        index = len(self.output)
        listed = wire.McpListToolsItem.model_validate(item)
        self.output.append(listed)
        at = {"item_id": listed.id, "output_index": index}
        outcome = "failed" if listed.error else "completed"
        return [
            self._event(
                "response.output_item.added",
                output_index=index,
                item=self._item(listed.model_copy(update={"tools": []})),
            ),
            self._event("response.mcp_list_tools.in_progress", **at),
            self._event(f"response.mcp_list_tools.{outcome}", **at),
            self._event("response.output_item.done", output_index=index, item=self._item(listed)),
        ]

    def approved_call(
        self, label: str, name: str, arguments: str, request_id: str
    ) -> tuple[int, list[wire.StreamEvent]]:
        """An approved call, about to run: its item opened and its arguments sent whole.
        Returns its output index (for complete_call) and the events."""
        index = len(self.output)
        call = wire.McpCallItem(
            id=new_id("mcp"),
            server_label=label,
            name=name,
            arguments=arguments,
            status="calling",
            approval_request_id=request_id,
        )
        self.output.append(call)
        self.pending.append(index)
        at = {"item_id": call.id, "output_index": index}
        return index, [
            self._event("response.output_item.added", output_index=index, item=self._item(call)),
            self._event("response.mcp_call.in_progress", **at),
            self._event("response.mcp_call_arguments.done", **at, arguments=arguments),
        ]

    def complete_call(
        self, index: int, output: str | None, error: dict[str, Any] | None
    ) -> list[wire.StreamEvent]:
        """An MCP call that ran: its output (or error) in the item, which is done."""
        call = self.output[index]
        assert isinstance(call, wire.McpCallItem)
        done = call.model_copy(
            update={"output": output, "error": error, "status": "failed" if error else "completed"}
        )
        self.output[index] = done
        at = {"item_id": done.id, "output_index": index}
        outcome = "failed" if error else "completed"
        return [
            self._event(f"response.mcp_call.{outcome}", **at),
            self._event("response.output_item.done", output_index=index, item=self._item(done)),
        ]

    def close_open(self) -> list[wire.StreamEvent]:
        """Close the item still open when a generation ends (incomplete if it was cut)."""
        cut = self.last_finish is not None and self.last_finish.reason == "length"
        return self._close("incomplete" if cut else "completed")

    def finish(self) -> list[wire.StreamEvent]:
        """The terminal event: completed, or incomplete when the answer hit max_output_tokens."""
        finish, usage, reasoning_tokens = self.last_finish, self.usage, self.reasoning_tokens
        incomplete = finish is not None and finish.reason == "length"
        out = self._close("incomplete" if incomplete else "completed")
        r = self.response
        r.output = list(self.output)
        r.output_text = output_text(self.output)
        r.usage = wire.ResponseUsage(
            input_tokens=usage.prompt_tokens,
            input_tokens_details=wire.InputTokensDetails(cached_tokens=usage.cached_tokens),
            output_tokens=usage.completion_tokens,
            output_tokens_details=wire.OutputTokensDetails(reasoning_tokens=reasoning_tokens),
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )
        r.completed_at = int(time.time())
        if incomplete:
            r.status = "incomplete"
            r.incomplete_details = wire.IncompleteDetails(reason="max_output_tokens")
            out.append(self._event("response.incomplete", response=self._snapshot()))
        else:
            r.status = "completed"
            out.append(self._event("response.completed", response=self._snapshot()))
        return out

    def fail(self, exc: HearthError) -> list[wire.StreamEvent]:
        """A failure (or a cancel) mid-way: `response.failed`, never a bare error event."""
        out = self._close("incomplete")
        r = self.response
        r.output = list(self.output)
        r.output_text = output_text(self.output)
        cancelled = isinstance(exc, RequestCancelled)
        r.status = "cancelled" if cancelled else "failed"
        r.error = wire.ResponseError(code=exc.code or "server_error", message=exc.message)
        r.completed_at = int(time.time())
        out.append(self._event("response.failed", response=self._snapshot()))
        return out

    def output_items(self) -> list[Item]:
        return [item.model_dump(mode="json") for item in self.output]


def _custom_input(arguments: str) -> str:
    try:
        value = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return arguments
    return str(value.get("input", "")) if isinstance(value, dict) else str(value)


def output_text(items: list[wire.OutputItem]) -> str:
    return "".join(
        part.text for item in items if isinstance(item, wire.OutputMessage) for part in item.content
    )


async def run_round(
    turn: Turn, events: AsyncIterator[ev.Event], count: Callable[[str], Awaitable[int]]
) -> AsyncIterator[wire.StreamEvent | ev.KeepAlive]:
    """One generation of the turn (the first, or the one after MCP calls ran): its items'
    events; usage, reasoning tokens and the finish go into the turn. Errors propagate (the
    caller ends the response with `response.failed`). `count(text)` counts tokens."""
    reasoning: list[str] = []
    turn.pending = []
    # Closed on the way out: a cancel leaves the engine's stream mid-way, and closing it
    # frees the sequence now.
    async with closing(events) as stream:
        async for event in stream:
            if turn.cancel_requested:
                raise RequestCancelled("the response was cancelled")
            if isinstance(event, ev.Output):
                for piece in event.pieces:
                    if isinstance(piece, Reasoning):
                        reasoning.append(piece.text)
                    for item in turn.feed(piece):
                        yield item
            elif isinstance(event, ev.Finished):
                if event.reason not in ("cancelled", "error"):
                    turn.last_finish = event
            elif isinstance(event, ev.Done):
                for item in turn.close_open():
                    yield item
                u = event.usage
                turn.usage.prompt_tokens += u.prompt_tokens
                turn.usage.completion_tokens += u.completion_tokens
                turn.usage.cached_tokens += u.cached_tokens
                if reasoning:
                    turn.reasoning_tokens += await count("".join(reasoning))
            elif isinstance(event, ev.Progress):
                yield ev.KEEP_ALIVE
