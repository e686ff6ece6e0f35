"""Wire models shared by the OpenAI-style APIs."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from hearth.errors import InvalidRequestError
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds

log = logging.getLogger("hearth.api")


# A token id in a prompt or input: strict, so JSON true is not token 1 nor "7" token 7.
TokenId = Annotated[int, Strict()]


def _token_arrays(value: object) -> object:
    """Names the item that is no token id, where pydantic would list every union member's
    complaint ('Input should be a valid string', ...)."""
    if not isinstance(value, list) or all(isinstance(v, str) for v in value):
        return value
    for i, item in enumerate(value):
        for token in item if isinstance(item, list) else [item]:
            if type(token) is not int:
                shown = json.dumps(token, default=repr)
                raise ValueError(f"token ids must be integers; item {i} holds {shown}")
    return value


# A prompt or embeddings input: text, texts, token ids, or lists of token ids.
TextOrTokens = Annotated[
    str | list[str] | list[TokenId] | list[list[TokenId]], BeforeValidator(_token_arrays)
]


class OpenAIRequest(BaseModel):
    """Base of request bodies: unknown fields are accepted and ignored (and logged at debug).
    NaN and infinities are no sampling value (Python's json reads NaN, Infinity, 1e999)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _log_unknown(cls, data: Any) -> Any:
        if isinstance(data, dict) and log.isEnabledFor(logging.DEBUG):
            unknown = set(data) - set(cls.model_fields)
            if unknown:
                log.debug("%s: ignoring fields %s", cls.__name__, sorted(unknown))
        return data


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class SamplingRequest(OpenAIRequest):
    """Fields Chat Completions and Completions share, as OpenAI names them."""

    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=8)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    # Any 64-bit seed, signed or unsigned as clients send them; llama.cpp uses it mod 2**32.
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = None
    # -- Hearth extensions (llama.cpp sampling knobs) --
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)  # llama.cpp takes an int32
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    # llama.cpp allocates a ring buffer of this many tokens per sequence: no 2**31 here.
    repeat_last_n: int | None = Field(None, ge=0, le=1 << 20)
    ignore_eos: bool | None = None
    speculative: Literal["none", "ngram", "draft"] | None = None
    draft_max: int | None = Field(None, ge=1, le=64)
    # -- Hearth extension (Ollama's meaning): how long the model stays loaded after this --
    keep_alive: KeepAliveField = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def keep_alive_seconds(self) -> float | None:
        """The request's keep_alive in seconds (math.inf: forever), or None when unset."""
        return keep_alive_seconds(self.keep_alive)


M = TypeVar("M", bound=BaseModel)


def validated(cls: type[M], fields: dict[str, Any]) -> M:
    """A request model from the library's keyword fields; a bad one is the same 400 the
    route would answer, naming the field."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise InvalidRequestError(
            f"invalid value for '{param}': {err['msg']}", param=param
        ) from None


def legacy_name(data: object) -> object:
    """Ollama's older requests name the model `name`; ours call it `model`."""
    if isinstance(data, dict) and "model" not in data and "name" in data:
        return {**data, "model": data["name"]}
    return data


class JSONSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJSONObject(BaseModel):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(BaseModel):
    type: Literal["json_schema"]
    json_schema: JSONSchema


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema,
    Field(discriminator="type"),
]


class WireModel(BaseModel):
    """Base of response bodies."""

    model_config = ConfigDict(extra="forbid")


class PromptTokensDetails(WireModel):
    cached_tokens: int = 0


class CompletionUsage(WireModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class TopLogprob(WireModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(WireModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)
