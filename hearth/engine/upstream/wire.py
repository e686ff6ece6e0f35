"""The internal conversation request as an OpenAI Chat Completions (or Completions) request
to an upstream server, and the upstream's stream chunks back as the pipeline's neutral events.

The upstream applies its own chat template, tool-call and reasoning parsing, so its deltas
already say which text is content, reasoning or a call; nothing here parses model text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.chat.pieces import Content, Piece, Reasoning, ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.engine.base import TokenLogprob, TopLogprob, Usage
from hearth.errors import (
    ContextLengthExceeded,
    HearthError,
    InvalidRequestError,
    UpstreamError,
)
from hearth.pipeline.events import Finished, FinishReason, Output
from hearth.pipeline.plan import with_system_prompt
from hearth.pipeline.request import ConversationRequest, Message

# The request's sampling fields and the names OpenAI-compatible servers read them by; a
# penalty goes under both vLLM's and llama.cpp's name (each ignores the other's).
_SAMPLING: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "min_p": ("min_p",),
    "repeat_penalty": ("repetition_penalty", "repeat_penalty"),
    "repeat_last_n": ("repeat_last_n",),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
}


def _message(message: Message) -> dict[str, Any]:
    """A message as Chat Completions takes it: the template's form, with call arguments as
    JSON text and no content beside calls."""
    out = message.for_template()
    for call in out.get("tool_calls", []):
        fn = call["function"]
        if not isinstance(fn["arguments"], str):
            fn["arguments"] = json.dumps(fn["arguments"], ensure_ascii=False)
    if message.tool_calls and not message.content:
        out["content"] = None
    return out


def _response_format(request: ConversationRequest) -> dict[str, Any] | None:
    fmt = request.format
    if fmt is None:
        return None
    if fmt.kind == "json_object" or not isinstance(fmt.schema, dict):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.schema}}


def _common(
    request: ConversationRequest,
    model: str,
    sampling: Mapping[str, float | int],
    max_output: int | None,
) -> dict[str, Any]:
    """What both endpoints take: sampling (the request's, else the model's configured
    defaults; the rest is the upstream's own), limits, stops, n, streaming with usage."""
    body: dict[str, Any] = {"model": model, "stream": True}
    body["stream_options"] = {"include_usage": True}
    fields = request.sampling
    for name, keys in _SAMPLING.items():
        value = getattr(fields, name)
        if value is None:
            value = sampling.get(name)
        if value is not None:
            for key in keys:
                body[key] = value
    if fields.seed is not None:
        body["seed"] = fields.seed
    if fields.logit_bias:
        body["logit_bias"] = dict(fields.logit_bias)
    max_tokens = request.max_tokens
    if max_output is not None:
        max_tokens = min(max_tokens or max_output, max_output)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.n != 1:
        body["n"] = request.n
    if request.ignore_eos:
        body["ignore_eos"] = True
    if request.grammar is not None:
        body["grammar"] = request.grammar  # llama.cpp's server and Hearth take GBNF so
    return body


def chat_body(
    request: ConversationRequest,
    model: str,
    sampling: Mapping[str, float | int],
    max_output: int | None,
    system_prompt: str | None = None,
) -> dict[str, Any]:
    """A Chat Completions request (streamed, with usage) for a conversation; the model's
    configured system prompt goes first when the request brings none. Hearth's own
    reasoning_format is not sent: servers name theirs differently (llama.cpp refuses ours)."""
    body = _common(request, model, sampling, max_output)
    body["messages"] = with_system_prompt([_message(m) for m in request.messages], system_prompt)
    if request.tools:
        body["tools"] = [tool.for_template() for tool in request.tools]
        if request.tool_name is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": request.tool_name}}
        elif request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = _response_format(request)
    if fmt is not None:
        body["response_format"] = fmt
    if request.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.logprobs
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
    if request.template_kwargs:
        body["chat_template_kwargs"] = request.template_kwargs
    return body


def completion_body(
    request: ConversationRequest,
    model: str,
    sampling: Mapping[str, float | int],
    max_output: int | None,
) -> dict[str, Any]:
    """A Completions request for raw prompts (texts or token ids), with no template."""
    prompts = request.prompts or []
    if not prompts:
        raise InvalidRequestError("prompt must not be empty", param="prompt")
    body = _common(request, model, sampling, max_output)
    # Unset is "up to the context", as here; vLLM's and SGLang's completions would stop at 16.
    body.setdefault("max_tokens", None)
    body["prompt"] = prompts[0] if len(prompts) == 1 else prompts
    if request.suffix is not None:
        body["suffix"] = request.suffix
    if request.logprobs is not None:
        body["logprobs"] = request.logprobs
    if request.format is not None:
        fmt = _response_format(request)
        body["response_format"] = fmt
    return body


def error_from(status: int, payload: Any, url: str) -> HearthError:
    """The upstream's error answer as the error the client sees: its message and code, its
    4xx status (a context overflow stays one, for truncation to act on), a 5xx as 502."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message, code, param, kind = None, None, None, None
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        code, param, kind = error.get("code"), error.get("param"), error.get("type")
    elif isinstance(error, str):
        message = error
    text = str(message) if message else f"HTTP {status}"
    code = code if isinstance(code, str) else None
    param = param if isinstance(param, str) else None
    kind = kind if isinstance(kind, str) else None
    overflow = code == "context_length_exceeded" or kind == "exceed_context_size_error"
    if status == 400 and (overflow or "context length" in text or "context size" in text):
        return ContextLengthExceeded(f"upstream: {text}", param=param or "messages")
    where = f"the upstream server ({url}) answered {status}: "
    if status not in _CLIENTS_FAULT:  # its key, its model name, its bug: not the client's
        return UpstreamError(where + text)
    return UpstreamError(where + text, status=status, code=code, param=param, kind=kind)


# Upstream statuses that are about the request itself, passed on; any other (401/403: our
# key to it is wrong; 404: its model name is stale; 5xx) is the upstream's problem: a 502.
_CLIENTS_FAULT = {400, 413, 422, 429}


def _logprobs_chat(raw: Any) -> list[TokenLogprob] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        return None
    out = []
    for item in raw["content"]:
        if not isinstance(item, dict):
            continue
        token = str(item.get("token", ""))
        top = [
            TopLogprob(
                str(t.get("token", "")),
                float(t.get("logprob", 0.0)),
                list(t.get("bytes") or str(t.get("token", "")).encode()),
            )
            for t in item.get("top_logprobs") or []
            if isinstance(t, dict)
        ]
        out.append(
            TokenLogprob(
                token,
                float(item.get("logprob", 0.0)),
                list(item.get("bytes") or token.encode()),
                top,
            )
        )
    return out


def _logprobs_text(raw: Any) -> list[TokenLogprob] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("tokens"), list):
        return None
    values = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or []
    out = []
    for i, token in enumerate(raw["tokens"]):
        alts = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(
            TokenLogprob(
                str(token),
                float(values[i] if i < len(values) and values[i] is not None else 0.0),
                list(str(token).encode()),
                [TopLogprob(str(t), float(v), list(str(t).encode())) for t, v in alts.items()],
            )
        )
    return out


_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "stop",
}


@dataclass(slots=True)
class _ChoiceState:
    calls: dict[Any, int] = field(default_factory=dict)  # upstream call key -> our index
    keys: list[Any] = field(default_factory=list)  # the keys in the order calls opened
    ids: dict[Any, Any] = field(default_factory=dict)  # upstream call key -> its id
    open_call: int | None = None
    tokens: int = 0
    done: bool = False


class ChunkReader:
    """Upstream chunks (decoded JSON) into neutral events, per choice: content, reasoning and
    tool-call pieces as they come, a call closed when the next opens or the choice ends, one
    `Finished` each; the usage last."""

    def __init__(self, choices: int, *, chat: bool, url: str):
        self.chat = chat
        self.url = url
        self.states = [_ChoiceState() for _ in range(choices)]
        self.usage = Usage(0, 0, 0)
        self.saw_usage = False

    def _state(self, index: Any) -> tuple[int, _ChoiceState]:
        if not isinstance(index, int) or not 0 <= index < len(self.states):
            raise UpstreamError(f"the upstream server ({self.url}) sent choice {index!r}")
        return index, self.states[index]

    def feed(self, chunk: Any) -> list[Output | Finished]:
        if not isinstance(chunk, dict):
            raise UpstreamError(f"the upstream server ({self.url}) sent a chunk that is no object")
        if "error" in chunk:
            raise error_from(502, chunk, self.url)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        out: list[Output | Finished] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index, state = self._state(choice.get("index", 0))
            if state.done:
                continue
            pieces = self._pieces(choice, state)
            logprobs = (_logprobs_chat if self.chat else _logprobs_text)(choice.get("logprobs"))
            if pieces or logprobs:
                state.tokens += 1
                out.append(Output(index, pieces, logprobs))
            reason = choice.get("finish_reason")
            if reason == "abort":  # vLLM's: the upstream gave the generation up
                raise UpstreamError(f"the upstream server ({self.url}) aborted the generation")
            if reason:
                out += self._finish(index, state, _REASONS.get(str(reason), "stop"), choice)
        return out

    def _pieces(self, choice: dict[str, Any], state: _ChoiceState) -> list[Piece]:
        if not self.chat:
            text = choice.get("text")
            return [Content(text)] if isinstance(text, str) and text else []
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        pieces: list[Piece] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            pieces.append(Reasoning(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            pieces.append(Content(content))
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                pieces += self._call(call, state)
        return pieces

    def _call(self, call: dict[str, Any], state: _ChoiceState) -> list[Piece]:
        pieces: list[Piece] = []
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(fn, dict)
        call_id = call.get("id")
        key = call.get("index")
        if key is None:  # no index: the open call goes on, unless a new id starts another
            open_key = state.keys[-1] if state.keys else None
            new = open_key is None or (call_id and call_id != state.ids.get(open_key))
            key = len(state.calls) if new else open_key
        elif key in state.calls and call_id and state.ids.get(key) not in (None, call_id):
            key = (key, call_id)  # an index used again for a call of another id
        if key not in state.calls:
            if state.open_call is not None:
                pieces.append(ToolCallEnd(state.open_call))
            ours = len(state.calls)
            state.calls[key] = ours
            state.keys.append(key)
            state.ids[key] = call_id
            state.open_call = ours
            pieces.append(
                ToolCallStart(ours, str(call_id or f"call_{ours}"), str(fn.get("name") or ""))
            )
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            pieces.append(ToolCallArgs(state.calls[key], arguments))
        return pieces

    def _finish(
        self, index: int, state: _ChoiceState, reason: FinishReason, choice: dict[str, Any]
    ) -> list[Output | Finished]:
        out: list[Output | Finished] = []
        if state.open_call is not None:
            out.append(Output(index, [ToolCallEnd(state.open_call)]))
            state.open_call = None
        if reason == "stop" and state.calls:
            reason = "tool_calls"
        stop = choice.get("stop_reason")
        state.done = True
        out.append(Finished(index, reason, state.tokens, stop if isinstance(stop, str) else None))
        return out

    def finish_all(self) -> list[Output | Finished]:
        """The stream ended ([DONE]): choices the upstream never finished end as stopped."""
        out: list[Output | Finished] = []
        for index, state in enumerate(self.states):
            if not state.done:
                out += self._finish(index, state, "stop", {})
        return out

    def _usage(self, usage: dict[str, Any]) -> None:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        self.usage = Usage(
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int(cached or 0),
        )
        self.saw_usage = True

    def final_usage(self) -> Usage:
        """The upstream's usage; without one (a server that ignores include_usage), the
        chunks counted."""
        if not self.saw_usage:
            self.usage.completion_tokens = sum(s.tokens for s in self.states)
        return self.usage
