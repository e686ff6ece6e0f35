"""OpenAI wire conversions that Chat Completions and Completions share (and, for function
tools, Ollama's API): sampling, format and tool fields into the internal request, usage and
logprobs back out, ids."""

from __future__ import annotations

import time
import uuid

from hearth.api.chat.protocol import (
    ChatCompletionNamedToolChoiceParam,
    ChatCompletionToolParam,
    ToolChoice,
)
from hearth.api.protocol import (
    ChatCompletionTokenLogprob,
    CompletionUsage,
    PromptTokensDetails,
    ResponseFormat,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    SamplingRequest,
    TopLogprob,
)
from hearth.engine.base import TokenLogprob, Usage
from hearth.pipeline.prepare import normalize_stop
from hearth.pipeline.request import ConversationRequest, OutputFormat, Sampling, Tool


def sampling(fields: SamplingRequest) -> Sampling:
    return Sampling(
        temperature=fields.temperature,
        top_p=fields.top_p,
        top_k=fields.top_k,
        min_p=fields.min_p,
        repeat_penalty=fields.repeat_penalty,
        repeat_last_n=fields.repeat_last_n,
        presence_penalty=fields.presence_penalty,
        frequency_penalty=fields.frequency_penalty,
        seed=fields.seed,
        logit_bias=fields.logit_bias,
    )


def output_format(fmt: ResponseFormat | None) -> OutputFormat | None:
    """response_format as the internal format (type "text": none)."""
    if isinstance(fmt, ResponseFormatJSONObject):
        return OutputFormat("json_object")
    if isinstance(fmt, ResponseFormatJSONSchema):
        return OutputFormat(
            "json_schema",
            fmt.json_schema.schema_,
            schema_param="response_format.json_schema.schema",
        )
    return None


def base_request(fields: SamplingRequest, model: str) -> ConversationRequest:
    """The fields both OpenAI APIs share, as the internal request."""
    return ConversationRequest(
        model=model,
        sampling=sampling(fields),
        max_tokens=fields.max_tokens,
        stop=normalize_stop(fields.stop),
        n=fields.n or 1,
        ignore_eos=bool(fields.ignore_eos),
        speculative=fields.speculative,
        draft_max=fields.draft_max,
        keep_alive=fields.keep_alive_seconds,
    )


def function_tools(
    out: ConversationRequest, tools: list[ChatCompletionToolParam] | None, choice: ToolChoice | None
) -> None:
    """OpenAI's function tools and tool_choice (which Ollama takes too) into the request."""
    out.tools = [
        Tool(
            name=t.function.name,
            description=t.function.description,
            parameters=t.function.parameters,
            strict=t.function.strict,
            extra=dict(t.function.model_extra or {}),
            param=f"tools.{i}.function.parameters",
        )
        for i, t in enumerate(tools or [])
    ]
    if isinstance(choice, ChatCompletionNamedToolChoiceParam):
        out.tool_name = choice.function.name
    else:
        out.tool_choice = choice


def wire_usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


def wire_logprobs(items: list[TokenLogprob]) -> list[ChatCompletionTokenLogprob]:
    return [
        ChatCompletionTokenLogprob(
            token=lp.token,
            logprob=lp.logprob,
            bytes=lp.bytes,
            top_logprobs=[
                TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in lp.top
            ],
        )
        for lp in items
    ]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())
