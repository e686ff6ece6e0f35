"""Wire models shared by the OpenAI-style APIs."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.models.keepalive import KeepAliveField, keep_alive_seconds

log = logging.getLogger("hearth.api")


class OpenAIRequest(BaseModel):
    """Base of request bodies: unknown fields are accepted and ignored (and logged at debug)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

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
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = None
    # -- Hearth extensions (llama.cpp sampling knobs) --
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    repeat_last_n: int | None = Field(None, ge=0)
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
