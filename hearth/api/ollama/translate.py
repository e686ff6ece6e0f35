"""Ollama's chat and generate to and from the pipeline: messages (tool calls with object
arguments, tool results by function name, thinking), options and format into a
`ConversationRequest`; the neutral events out as Ollama's NDJSON lines, the `Result` whole."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from hearth.api.ollama import protocol as wire
from hearth.api.openai_wire import function_tools, new_id
from hearth.chat.output import ToolCallParts
from hearth.chat.pieces import Content, Reasoning, ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.engine.base import TokenLogprob
from hearth.errors import InvalidRequestError
from hearth.pipeline import events as ev
from hearth.pipeline.prepare import Prepared, normalize_stop
from hearth.pipeline.request import (
    ConversationRequest,
    Message,
    OutputFormat,
    Sampling,
    ToolCall,
)

log = logging.getLogger("hearth.api")

# -- request ------------------------------------------------------------------------------------


def _no_images(images: list[str] | None, param: str) -> None:
    if images:
        raise InvalidRequestError(
            "images need a model with vision; this server reads text only", param=param
        )


def _options(out: ConversationRequest, opts: wire.Options | None) -> None:
    if opts is None:
        return
    out.sampling = Sampling(
        temperature=opts.temperature,
        top_p=opts.top_p,
        top_k=opts.top_k,
        min_p=opts.min_p,
        repeat_penalty=opts.repeat_penalty,
        repeat_last_n=opts.repeat_last_n,
        presence_penalty=opts.presence_penalty,
        frequency_penalty=opts.frequency_penalty,
        seed=opts.seed,
    )
    if opts.num_predict == 0:
        raise InvalidRequestError(
            "num_predict must be a positive count, or -1 for no limit", param="options.num_predict"
        )
    # -1 and -2 both mean as much as the context holds.
    out.max_tokens = opts.num_predict if opts.num_predict and opts.num_predict > 0 else None
    out.stop = normalize_stop(opts.stop)
    out.window, out.window_param = opts.num_ctx, "options.num_ctx"


def _format(fmt: wire.Format) -> OutputFormat | None:
    if fmt == "json":
        return OutputFormat("json_object", param="format", schema_param="format")
    if isinstance(fmt, dict):
        return OutputFormat("json_schema", fmt, param="format", schema_param="format")
    return None


def _common(request: wire.GenerationRequest) -> ConversationRequest:
    """What chat and generate share: options, format, think, logprobs, keep_alive."""
    out = ConversationRequest(model=request.model, keep_alive=request.keep_alive_seconds)
    _options(out, request.options)
    out.format = _format(request.format)
    think = request.think
    if think is not None:
        # Templates with a switch read enable_thinking; gpt-oss reads the effort.
        out.template_kwargs = {"enable_thinking": think is not False}
        if isinstance(think, str):
            out.reasoning_effort = think
    out.reasoning_format = "parsed"  # thinking goes in its own field
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequestError("top_logprobs requires logprobs=true", param="top_logprobs")
    if request.logprobs:
        out.logprobs = request.top_logprobs or 0
    return out


def _message(i: int, msg: wire.ChatMessageParam) -> Message:
    _no_images(msg.images, f"messages.{i}.images")
    calls = [
        ToolCall(c.id or new_id("call"), c.function.name, c.function.arguments)
        for c in msg.tool_calls or []
    ]
    if calls and msg.role != "assistant":
        raise InvalidRequestError(
            "tool_calls belong to assistant messages", param=f"messages.{i}.tool_calls"
        )
    return Message(
        msg.role,
        msg.content or "",
        tool_calls=calls,
        tool_call_id=msg.tool_call_id,
        name=msg.tool_name if msg.role == "tool" else None,
        reasoning=msg.thinking,
    )


def chat_request(request: wire.ChatRequest) -> ConversationRequest:
    """The chat request as the internal one (it has messages: an empty list loads)."""
    out = _common(request)
    out.messages = [_message(i, m) for i, m in enumerate(request.messages)]
    function_tools(out, request.tools, request.tool_choice)
    return out


def generate_request(request: wire.GenerateRequest) -> ConversationRequest:
    """The prompt through the chat template (with `system`), or as it is (`raw`), or around
    a gap (`suffix`); `context` continues an earlier exchange."""
    if request.template is not None:
        raise InvalidRequestError(
            "Hearth renders the model's Jinja chat template and does not take Go templates; "
            "leave out `template` (or set a chat template in the model's config)",
            param="template",
        )
    _no_images(request.images, "images")
    out = _common(request)
    out.context = list(request.context) if request.context else None
    if request.suffix is not None:
        out.prompts, out.suffix = [request.prompt], request.suffix
    elif request.raw:
        out.prompts = [request.prompt]
    else:
        if request.system is not None:
            out.messages.append(Message("system", request.system))
        out.messages.append(Message("user", request.prompt))
    return out


# -- response -----------------------------------------------------------------------------------


def created_at() -> str:
    """RFC 3339 in UTC, as Ollama writes its timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def done_reason(finish: ev.Finished | None) -> wire.DoneReason:
    return "length" if finish is not None and finish.reason == "length" else "stop"


def _arguments(parts: list[str]) -> dict[str, Any]:
    text = "".join(parts)
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:  # the tool parsers pass only JSON objects; be safe anyway
        log.warning("tool call arguments are not JSON: %.200s", text)
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _call(index: int, call: ToolCallParts) -> wire.ToolCall:
    fn = wire.ToolCallFunction(index=index, name=call.name, arguments=_arguments(call.arguments))
    return wire.ToolCall(id=call.id, function=fn)


def logprobs(items: list[TokenLogprob] | None, top: bool) -> list[wire.Logprob] | None:
    if items is None:
        return None
    return [
        wire.Logprob(
            token=lp.token,
            logprob=lp.logprob,
            bytes=lp.bytes,
            top_logprobs=[
                wire.TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in lp.top
            ]
            if top
            else None,
        )
        for lp in items
    ]


def stats(
    model: str, start_ns: int, finish: ev.Finished | None, usage: Any, timings: ev.Timings
) -> dict[str, Any]:
    """The final line's fields, measured: nanoseconds from the request's arrival."""
    return {
        "model": model,
        "created_at": created_at(),
        "done": True,
        "done_reason": done_reason(finish),
        "total_duration": time.monotonic_ns() - start_ns,
        "load_duration": timings.load_ns,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": timings.prompt_ns,
        "eval_count": usage.completion_tokens,
        "eval_duration": timings.generation_ns,
    }


def chat_response(
    request: wire.ChatRequest, prepared: Prepared, result: ev.Result, start_ns: int
) -> wire.ChatResponse:
    choice = result.choices[0]
    parts = choice.parts
    message = wire.ChatMessage(
        content="".join(parts.content),
        thinking="".join(parts.reasoning) or None,
        tool_calls=[_call(i, c) for i, c in enumerate(parts.tool_calls)] or None,
    )
    top = bool(request.top_logprobs)
    return wire.ChatResponse(
        message=message,
        logprobs=logprobs(choice.logprobs, top) if request.logprobs else None,
        **stats(request.model, start_ns, choice.finish, result.usage, result.timings),
    )


Line = wire.ChatResponse | wire.GenerateResponse


async def lines(
    request: wire.ChatRequest | wire.GenerateRequest,
    events: AsyncIterator[ev.Event],
    start_ns: int,
    context: Callable[[str], list[int] | None] | None = None,
) -> AsyncIterator[Line | ev.KeepAlive]:
    """One line per piece of text (thinking and content), one per complete tool call (Ollama
    sends calls whole), and the final line with the stats (and, for generate, `context`, from
    `context(response_text)`, run off the loop)."""
    chat = isinstance(request, wire.ChatRequest)
    top = bool(request.top_logprobs)
    calls: list[ToolCallParts] = []
    finish: ev.Finished | None = None
    text: list[str] = []  # generate's whole response, for its context
    async for event in events:
        if isinstance(event, ev.Output):
            content: list[str] = []
            thinking: list[str] = []
            done_calls: list[wire.ToolCall] = []
            for piece in event.pieces:
                if isinstance(piece, Content):
                    content.append(piece.text)
                elif isinstance(piece, Reasoning):
                    thinking.append(piece.text)
                elif isinstance(piece, ToolCallStart):
                    calls.append(ToolCallParts(piece.id, piece.name))
                elif isinstance(piece, ToolCallArgs):
                    calls[piece.index].arguments.append(piece.text)
                elif isinstance(piece, ToolCallEnd):
                    done_calls.append(_call(piece.index, calls[piece.index]))
            lp = logprobs(event.logprobs, top) if request.logprobs else None
            if not (content or thinking or done_calls or lp):
                continue
            joined = "".join(content)
            if chat:
                message = wire.ChatMessage(
                    content=joined,
                    thinking="".join(thinking) or None,
                    tool_calls=done_calls or None,
                )
                yield wire.ChatResponse(
                    model=request.model, created_at=created_at(), message=message, logprobs=lp
                )
            else:
                text.append(joined)
                yield wire.GenerateResponse(
                    model=request.model,
                    created_at=created_at(),
                    response=joined,
                    thinking="".join(thinking) or None,
                    logprobs=lp,
                )
        elif isinstance(event, ev.Finished):
            if event.reason not in ("cancelled", "error"):  # else the error line follows
                finish = event
        elif isinstance(event, ev.Done):
            fields = stats(request.model, start_ns, finish, event.usage, event.timings)
            if chat:
                yield wire.ChatResponse(**fields)
            else:
                joined = "".join(text)
                ids = await asyncio.to_thread(context, joined) if context else None
                yield wire.GenerateResponse(context=ids, **fields)
        elif isinstance(event, ev.Progress):
            yield ev.KEEP_ALIVE
