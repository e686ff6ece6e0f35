"""What the OpenAI-style services share: sampling resolution, stop strings, usage, logprobs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

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
from hearth.engine.base import SamplingParams, TokenLogprob, Usage
from hearth.errors import InvalidRequestError
from hearth.grammar.gbnf import RuleSet, gbnf_problem
from hearth.grammar.json_schema import schema_to_grammar

MAX_STOP = 16

# The server's defaults when neither the request nor the model's GGUF says otherwise;
# the same as llama.cpp's server, so outputs are comparable.
SERVER_SAMPLING_DEFAULTS = SamplingParams()


class KeepAlive:
    """Yielded by service streams while a long prompt is read; HTTP sends an SSE comment."""

    __slots__ = ()


KEEP_ALIVE = KeepAlive()


def resolve_sampling(
    fields: SamplingRequest,
    model_defaults: Mapping[str, float | int],
    n_vocab: int,
    configured: Mapping[str, float | int] | None = None,
) -> SamplingParams:
    """Request value, else the model's configured default (`[[models]]` sampling), else its
    recommendation (from its GGUF), else the server default."""
    base = SERVER_SAMPLING_DEFAULTS
    configured = configured or {}

    def pick(name: str, value: float | int | None) -> float:
        if value is not None:
            return value
        if name in configured:
            return configured[name]
        if name in model_defaults:
            return model_defaults[name]
        return float(getattr(base, name))

    return SamplingParams(
        temperature=pick("temperature", fields.temperature),
        top_p=pick("top_p", fields.top_p),
        top_k=int(pick("top_k", fields.top_k)),
        min_p=pick("min_p", fields.min_p),
        repeat_penalty=pick("repeat_penalty", fields.repeat_penalty),
        repeat_last_n=int(pick("repeat_last_n", fields.repeat_last_n)),
        presence_penalty=pick("presence_penalty", fields.presence_penalty),
        frequency_penalty=pick("frequency_penalty", fields.frequency_penalty),
        seed=fields.seed,
        logit_bias=parse_logit_bias(fields.logit_bias, n_vocab),
    )


def with_system_prompt(
    messages: list[dict[str, Any]], system_prompt: str | None
) -> list[dict[str, Any]]:
    """The model's default system prompt goes first when the request brings none."""
    if system_prompt is None or any(m.get("role") in ("system", "developer") for m in messages):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def check_token_ids(ids: Iterable[int], n_vocab: int, param: str, where: str = "") -> None:
    """Refuse a token id outside the vocabulary before any native call sees it (llama.cpp
    reads out of bounds, or aborts the process). `where` names the part: 'in prompt 2'."""
    for token in ids:
        # bool is an int to Python; the wire models refuse it, library callers may not.
        if isinstance(token, bool) or not 0 <= token < n_vocab:
            at = f" {where}" if where else ""
            raise InvalidRequestError(
                f"token id {token!r}{at} is outside the vocabulary (0..{n_vocab - 1})",
                param=param,
            )


def parse_logit_bias(
    bias: Mapping[str, float] | None, n_vocab: int
) -> tuple[tuple[int, float], ...]:
    if not bias:
        return ()
    out = []
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequestError(
                f"logit_bias keys must be token ids, got {key!r}", param="logit_bias"
            ) from None
        check_token_ids([token], n_vocab, "logit_bias", where="in logit_bias")
        if not -100.0 <= value <= 100.0:
            raise InvalidRequestError(
                f"logit_bias values must be between -100 and 100, got {value}", param="logit_bias"
            )
        out.append((token, float(value)))
    return tuple(out)


def normalize_stop(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP:
        raise InvalidRequestError(f"at most {MAX_STOP} stop strings are allowed", param="stop")
    return [s for s in stops if s]


def checked_grammar(grammar: str) -> str:
    """A user's GBNF grammar, refused with a 400 that explains a first problem found."""
    problem = gbnf_problem(grammar)
    if problem:
        raise InvalidRequestError(f"the grammar was refused: {problem}", param="grammar")
    return grammar


def response_format_rule(rules: RuleSet, fmt: ResponseFormat | None) -> str | None:
    """The rule the reply must match for this response_format (None: free text)."""
    if isinstance(fmt, ResponseFormatJSONObject):
        return rules.json("json-object")
    if isinstance(fmt, ResponseFormatJSONSchema):
        schema = fmt.json_schema.schema_
        if schema is None:
            return rules.json("json-value")
        return schema_to_grammar(rules, schema, param="response_format.json_schema.schema")
    return None


def output_grammar(fmt: ResponseFormat | None, grammar: str | None) -> str | None:
    """The grammar text for a request's response_format or grammar field (not both)."""
    if grammar is not None:
        if fmt is not None and fmt.type != "text":
            raise InvalidRequestError(
                "give response_format or grammar, not both", param="response_format"
            )
        return checked_grammar(grammar)
    rules = RuleSet()
    root = response_format_rule(rules, fmt)
    return rules.render(root) if root else None


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
