"""Chat Completions to and from the pipeline: the request into a `ConversationRequest`, the
neutral events out as `ChatCompletionChunk`s, the gathered `Result` as a `ChatCompletion`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hearth.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    FinishReason,
    Function,
)
from hearth.api.openai_wire import (
    base_request,
    function_tools,
    new_id,
    now,
    output_format,
    wire_logprobs,
    wire_usage,
)
from hearth.chat.output import MessageParts
from hearth.chat.pieces import Content, Piece, Reasoning, ToolCallArgs, ToolCallStart
from hearth.engine.base import Usage
from hearth.errors import InvalidRequestError
from hearth.pipeline.events import (
    KEEP_ALIVE,
    Done,
    Event,
    Finished,
    KeepAlive,
    Output,
    Progress,
    Result,
)
from hearth.pipeline.events import FinishReason as NeutralFinish
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.request import ConversationRequest, Message, ToolCall

# -- request ------------------------------------------------------------------------------------


def conversation(request: ChatCompletionRequest) -> ConversationRequest:
    """The chat request as the internal one; chat-only checks happen here."""
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidRequestError("top_logprobs requires logprobs=true", param="top_logprobs")
    out = base_request(request, request.model)
    out.messages = [_message(i, m) for i, m in enumerate(request.messages)]
    function_tools(out, request.tools, request.tool_choice)
    out.parallel_tool_calls = request.parallel_tool_calls
    out.format = output_format(request.response_format)
    out.grammar = request.grammar
    out.max_tokens = request.max_completion_tokens or request.max_tokens
    out.logprobs = (request.top_logprobs or 0) if request.logprobs else None
    out.reasoning_format = request.reasoning_format
    out.reasoning_effort = request.reasoning_effort
    out.template_kwargs = dict(request.chat_template_kwargs or {})
    return out


def _message(i: int, msg: ChatCompletionMessageParam) -> Message:
    """One message: content parts joined into text (text parts only)."""
    content = msg.content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequestError(
                    f"content part type {part.get('type')!r} is not supported; "
                    "this server reads text parts only",
                    param=f"messages.{i}.content.{j}",
                )
            texts.append(part["text"])
        content = "".join(texts)
    if msg.role == "tool" and not msg.tool_call_id:
        raise InvalidRequestError(
            "a message with role 'tool' needs the 'tool_call_id' it answers",
            param=f"messages.{i}.tool_call_id",
        )
    extra: dict[str, Any] = dict(msg.model_extra or {})
    # An earlier turn's reasoning, which thinking templates read as reasoning_content.
    reasoning = (
        extra.pop("reasoning_content") if isinstance(extra.get("reasoning_content"), str) else None
    )
    return Message(
        role=msg.role,
        content=content or "",
        tool_calls=[_tool_call(i, j, c) for j, c in enumerate(msg.tool_calls or [])],
        tool_call_id=msg.tool_call_id,
        name=msg.name,
        reasoning=reasoning,
        extra=extra,
    )


def _tool_call(i: int, j: int, call: dict[str, Any]) -> ToolCall:
    fn = call.get("function") or {}
    if not isinstance(fn, dict) or not isinstance(fn.get("name") or "", str):
        raise InvalidRequestError(
            "a tool call's 'function' must be an object with the function's 'name'",
            param=f"messages.{i}.tool_calls.{j}.function",
        )
    return ToolCall(
        id=str(call.get("id") or ""), name=fn.get("name") or "", arguments=fn.get("arguments")
    )


# -- response -----------------------------------------------------------------------------------


def finish_reason(reason: NeutralFinish) -> FinishReason:
    return "tool_calls" if reason == "tool_calls" else "length" if reason == "length" else "stop"


def delta_for(pieces: list[Piece]) -> list[ChoiceDelta]:
    """Stream deltas for pieces: one delta per run of the same kind, as OpenAI sends them."""
    deltas: list[ChoiceDelta] = []
    for piece in pieces:
        last = deltas[-1] if deltas else None
        if isinstance(piece, Content):
            if last is not None and last.content is not None:
                last.content += piece.text
            else:
                deltas.append(ChoiceDelta(content=piece.text))
        elif isinstance(piece, Reasoning):
            if last is not None and last.reasoning_content is not None:
                last.reasoning_content += piece.text
                last.reasoning = last.reasoning_content
            else:
                deltas.append(ChoiceDelta(reasoning_content=piece.text, reasoning=piece.text))
        elif isinstance(piece, ToolCallStart):
            call = ChoiceDeltaToolCall(
                index=piece.index,
                id=piece.id,
                type="function",
                function=ChoiceDeltaToolCallFunction(name=piece.name, arguments=""),
            )
            deltas.append(ChoiceDelta(tool_calls=[call]))
        elif isinstance(piece, ToolCallArgs):
            fn = ChoiceDeltaToolCallFunction(arguments=piece.text)
            deltas.append(
                ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(index=piece.index, function=fn)])
            )
    return deltas


def completion(prepared: Prepared, result: Result) -> ChatCompletion:
    want_logprobs = prepared.request.logprobs is not None
    return ChatCompletion(
        id=new_id("chatcmpl"),
        created=now(),
        model=prepared.model.entry.id,
        choices=[
            Choice(
                index=i,
                message=_reply(c.parts),
                finish_reason=finish_reason(c.finish.reason if c.finish else "stop"),
                logprobs=ChoiceLogprobs(content=wire_logprobs(c.logprobs))
                if want_logprobs
                else None,
            )
            for i, c in enumerate(result.choices)
        ],
        usage=wire_usage(result.usage),
    )


def _reply(parts: MessageParts) -> ChatCompletionMessage:
    content = "".join(parts.content)
    reasoning = "".join(parts.reasoning) or None
    calls = [
        ChatCompletionMessageToolCall(
            id=c.id, function=Function(name=c.name, arguments="".join(c.arguments))
        )
        for c in parts.tool_calls
    ]
    return ChatCompletionMessage(
        content=None if calls and not content else content,
        tool_calls=calls or None,
        reasoning_content=reasoning,
        reasoning=reasoning,
    )


async def chunks(
    prepared: Prepared, events: AsyncIterator[Event], *, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk | KeepAlive]:
    """The stream: a role chunk per choice, deltas, one finish chunk per choice, usage when
    asked."""
    chunk_id = new_id("chatcmpl")
    created = now()
    model_id = prepared.model.entry.id

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=chunk_id,
            created=created,
            model=model_id,
            choices=choices,
            usage=wire_usage(usage) if usage is not None else None,
        )

    for i in range(prepared.n):
        yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
    async for event in events:
        if isinstance(event, Output):
            out = [
                chunk([ChunkChoice(index=event.index, delta=d)]) for d in delta_for(event.pieces)
            ]
            if event.logprobs is not None:
                lps = ChoiceLogprobs(content=wire_logprobs(event.logprobs))
                if not out:  # logprobs of held-back text still go out, in order
                    out = [chunk([ChunkChoice(index=event.index, delta=ChoiceDelta())])]
                out[-1].choices[0].logprobs = lps
            for c in out:
                yield c
        elif isinstance(event, Finished):
            if event.reason in ("cancelled", "error"):
                continue  # the error event that follows says why
            reason = finish_reason(event.reason)
            yield chunk([ChunkChoice(index=event.index, delta=ChoiceDelta(), finish_reason=reason)])
        elif isinstance(event, Done):
            if include_usage:
                yield chunk([], event.usage)
        elif isinstance(event, Progress):
            yield KEEP_ALIVE
