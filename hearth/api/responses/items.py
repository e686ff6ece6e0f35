"""Responses items: what a client sends in `input` (or a conversation holds) checked and given
ids, and a list of items as the conversation's turns (messages, tool calls and results,
reasoning) for the pipeline.

Items stay JSON objects end to end: they are stored as they are, and a later turn rebuilds
the conversation from them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from hearth.errors import InvalidRequestError
from hearth.pipeline.request import Message, ToolCall

Item = dict[str, Any]

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
MEDIA_PARTS = ("input_image", "input_file", "input_audio")
ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}


def new_id(prefix: str) -> str:
    """An id as the Responses family writes them: `resp_...`, `msg_...`, `fc_...`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _fail(where: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {message}", param=where)


def _text(where: str, content: Any, field: str = "content") -> str:
    """A string, or parts whose text is joined; media parts are a 400 (no vision yet)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _fail(f"{where}.{field}", "must be a string or a list of content parts")
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in MEDIA_PARTS:
            raise _fail(
                f"{where}.{field}.{j}",
                f"'{kind}' parts need a model with vision; this server reads text only",
            )
        if kind == "refusal":
            out.append(str(part.get("refusal", "")))
            continue
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise _fail(f"{where}.{field}.{j}", f"unsupported content part {kind!r}")
        out.append(part["text"])
    return "".join(out)


def _string(where: str, item: Item, field: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise _fail(f"{where}.{field}", "must be a non-empty string")
    return value


def listed(item: Item) -> Item:
    """An item in the shape OpenAI lists it: a message's text as content parts, and a status
    on the kinds that carry one."""
    kind = item["type"]
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item["role"] == "assistant" else "input_text"
        item = {**item, "content": [{"type": part, "text": item["content"]}]}
    if kind in ("message", "function_call", "function_call_output") and "status" not in item:
        item = {**item, "status": "completed"}
    return item


def checked(
    raw: str | list[Any], where: str = "input", resolve: Callable[[str], Item | None] | None = None
) -> list[Item]:
    """The input as items, each checked, given an id if it has none, and in the shape they are
    listed in. `item_reference` items are replaced by the item they name (`resolve`)."""
    if isinstance(raw, str):
        return [listed({"type": "message", "id": new_id("msg"), "role": "user", "content": raw})]
    out = []
    for i, item in enumerate(raw):
        at = f"{where}.{i}"
        if not isinstance(item, dict):
            raise _fail(at, "each item must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "item_reference":
            found = resolve(_string(at, item, "id")) if resolve is not None else None
            if found is None:
                raise _fail(f"{at}.id", f"no stored item with id {item.get('id')!r}")
            out.append(found)
            continue
        if kind not in ID_PREFIX:
            raise _fail(at, f"unsupported item type {kind!r}")
        item = {**item, "type": kind}
        if "id" in item and (not isinstance(item["id"], str) or not item["id"]):
            raise _fail(f"{at}.id", "must be a non-empty string")
        if kind == "message":
            if item.get("role") not in ROLES:
                raise _fail(f"{at}.role", f"must be one of {', '.join(ROLES)}")
            _text(at, item.get("content"))
        elif kind in ("function_call", "custom_tool_call"):
            _string(at, item, "call_id")
            _string(at, item, "name")
            field = "arguments" if kind == "function_call" else "input"
            if not isinstance(item.get(field), str):
                raise _fail(f"{at}.{field}", "must be a string")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            _string(at, item, "call_id")
            _text(at, item.get("output"), "output")
        elif kind in ("mcp_call", "mcp_approval_request"):
            _string(at, item, "server_label")
            _string(at, item, "name")
            if not isinstance(item.get("arguments"), str):
                raise _fail(f"{at}.arguments", "must be a string")
        elif kind == "mcp_approval_response":
            _string(at, item, "approval_request_id")
            if not isinstance(item.get("approve"), bool):
                raise _fail(f"{at}.approve", "must be true or false")
        elif kind == "mcp_list_tools":
            _string(at, item, "server_label")
        else:  # reasoning: summary and content optional, as Codex sends them
            _text(at, item.get("summary"), "summary")
            _text(at, item.get("content"), "content")
        item.setdefault("id", new_id(ID_PREFIX[kind]))
        out.append(listed(item))
    return out


def turns(items: list[Item]) -> list[Message]:
    """Items as the conversation's turns: an assistant's reasoning, text and calls form one
    turn; a call's output is a tool turn naming its function."""
    out: list[Message] = []
    reasoning: list[str] = []
    names: dict[str, str] = {}

    def assistant() -> Message:
        """The assistant turn the next output joins: the last one, unless a turn came after."""
        if out and out[-1].role == "assistant" and not reasoning:
            return out[-1]
        out.append(Message("assistant", "", reasoning="".join(reasoning) or None))
        reasoning.clear()
        return out[-1]

    for item in items:
        kind = item["type"]
        if kind == "message":
            text = _text("input", item.get("content"))
            if item["role"] == "assistant":
                turn = assistant()
                if turn.tool_calls:  # text after calls starts a turn of its own
                    out.append(Message("assistant", text))
                else:
                    turn.content += text
            else:
                out.append(Message(item["role"], text))
        elif kind == "reasoning":
            reasoning.append(
                _text("input", item.get("content")) or _text("input", item.get("summary"))
            )
        elif kind in ("function_call", "custom_tool_call"):
            args = (
                item["arguments"]
                if kind == "function_call"
                else json.dumps({"input": item["input"]})
            )
            names[item["call_id"]] = item["name"]
            assistant().tool_calls.append(ToolCall(item["call_id"], item["name"], args))
        elif kind == "mcp_call":  # a call Hearth ran: the call, then what it returned
            call = item["id"]
            assistant().tool_calls.append(ToolCall(call, item["name"], item["arguments"]))
            result = item.get("output")
            if result is None:
                result = f"Error: {json.dumps(item.get('error'))}"
            out.append(Message("tool", str(result), tool_call_id=call, name=item["name"]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call = item["call_id"]
            result = _text("input", item.get("output"), "output")
            out.append(Message("tool", result, tool_call_id=call, name=names.get(call)))
        # mcp_list_tools: the tools are offered anew; an approval request and its answer:
        # the call it led to (an mcp_call) is what the model reads.
    return out
