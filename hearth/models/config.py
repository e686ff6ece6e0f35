"""Per-model settings from the config file's `[[models]]` entries or a JSON models file.

An entry names a file anywhere on disk (`path`), or, without a path, adds settings to a model of
the models directory by its id. The original design's JSON shape
`{"models": [{"id", "path", "context_window", "max_output_tokens"}]}` is accepted as is."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from hearth.errors import ConfigError
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds

# Ids and aliases: lower-case, readable, usable in a URL path; '/' only between segments.
_ID = re.compile(r"[a-z0-9][a-z0-9._+-]*(/[a-z0-9][a-z0-9._+-]*)*")
# Names made through Ollama's API (copy, create) may carry one tag: `mine:v2`.
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The validation context that lets ModelConfig ids carry a tag (saved names only).
TAGGED = {"tagged": True}


MAX_CTX = 1 << 24


def check_model_id(value: str, *, tagged: bool = False) -> str:
    """A configured id or alias, lower-cased; refused if it could not come from a file name.
    With `tagged`, one `:tag` may follow; `:latest` is Ollama's default tag and is dropped."""
    value = value.strip().lower()
    base, tag = value, "latest"
    if tagged:
        value = value.removesuffix(":latest")
        base, colon, tag = value.partition(":")
        tag = tag if colon else "latest"
    if not _ID.fullmatch(base) or not _TAG.fullmatch(tag) or len(value) > 200:
        what = "name" if tagged else "id"
        rule = "letters, digits, '.', '_', '+', '-' and '/' between segments"
        rule += ", then optionally ':' and a tag" if tagged else ""
        raise ValueError(f"{value!r} is not a valid model {what}: use {rule}")
    return value


class SamplingDefaults(BaseModel):
    """Sampling values a model uses when a request leaves them unset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)  # llama.cpp takes an int32
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    # llama.cpp allocates a ring buffer of this many tokens per sequence.
    repeat_last_n: int | None = Field(None, ge=0, le=1 << 20)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)

    def as_dict(self) -> dict[str, float | int]:
        """Only the values that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def listed(value: Any) -> Any:
    """A setting that takes one string or a list of them, as a list."""
    return [value] if isinstance(value, str) else value


def check_base_url(value: str) -> str:
    """An upstream's address: http(s), a host, no query; kept without a trailing `/v1`, which
    OpenAI SDK users write and Hearth adds itself (`/health` and `/tokenize` are beside it)."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{value!r}: a base URL takes no query, fragment or credentials")
    return url.removesuffix("/v1")


class ModelConfig(BaseModel):
    """One `[[models]]` entry. Unset fields fall back to the server-wide settings. With
    `backend = "openai"` the model is served by an OpenAI-compatible server upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str | None = None
    path: Path | None = None
    aliases: list[str] = Field(default_factory=list)
    ctx_size: int | None = Field(
        # At most 2**24: times --parallel (<= 64) it stays within llama.cpp's uint32 n_ctx.
        None,
        ge=64,
        le=MAX_CTX,
        validation_alias=AliasChoices("ctx_size", "context_window"),
    )
    max_output_tokens: int | None = Field(None, ge=1)
    parallel: int | None = Field(None, ge=1, le=64)
    gpu_layers: int | None = None
    chat_template: str | None = None
    chat_template_file: Path | None = None
    keep_alive: KeepAliveField = None
    system_prompt: str | None = None
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    # -- an upstream server (backend "openai") --
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    base_url: list[str] = Field(default_factory=list)
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    upstream_model: str | None = Field(None, min_length=1, max_length=512)
    timeout_s: float | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, ge=1, le=1 << 16)
    balance: Literal["round-robin", "least-busy"] = "round-robin"

    _one_url = field_validator("base_url", mode="before")(listed)

    @field_validator("base_url", mode="after")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [check_base_url(url) for url in value]

    @field_validator("id", mode="after")
    @classmethod
    def _id(cls, value: str | None, info: ValidationInfo) -> str | None:
        tagged = bool(info.context and info.context.get("tagged"))
        return check_model_id(value, tagged=tagged) if value is not None else None

    @field_validator("aliases", mode="after")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        return [check_model_id(a) for a in value]

    def model_post_init(self, _: Any) -> None:
        """Checks that involve several fields."""
        if self.id is None and self.path is None:
            raise ValueError("a models entry needs an id, a path, or both")
        if self.chat_template is not None and self.chat_template_file is not None:
            raise ValueError("give chat_template or chat_template_file, not both")
        if self.backend == "openai":
            if self.id is None or not self.base_url:
                raise ValueError('backend "openai" needs an id and a base_url')
            local = ("path", "parallel", "gpu_layers", "chat_template", "chat_template_file")
            given = [name for name in local if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f'backend "openai" models run upstream: {", ".join(given)} cannot apply'
                )
        elif self.base_url:
            raise ValueError('base_url needs backend = "openai"')

    @property
    def upstream(self) -> bool:
        """Served by another server (nothing of it loads here)."""
        return self.backend == "openai"

    @property
    def keep_alive_seconds(self) -> float | None:
        """The configured keep-alive in seconds, or None when unset."""
        return keep_alive_seconds(self.keep_alive)

    def relative_to(self, base: Path) -> ModelConfig:
        """Relative paths in a config file are relative to that file's folder."""
        update: dict[str, Path] = {}
        for name in ("path", "chat_template_file"):
            value = getattr(self, name)
            if value is not None and not value.expanduser().is_absolute():
                update[name] = base / value
            elif value is not None:
                update[name] = value.expanduser()
        return self.model_copy(update=update)


def parse_models(raw: object, base: Path, source: Path) -> list[ModelConfig]:
    """Validate a `models` list read from `source`; paths become relative to `base`."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'models' must be a list of tables")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(ModelConfig.model_validate(item).relative_to(base))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"{source}: models[{i}]: {problems}") from None
    return out


def read_models_file(path: Path) -> list[ModelConfig]:
    """A JSON (or TOML) file holding `{"models": [...]}`."""
    path = path.expanduser()
    try:
        text = path.read_bytes()
        data = tomllib.loads(text.decode()) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read models file {path}: {exc}") from exc
    if not isinstance(data, dict) or "models" not in data:
        raise ConfigError(f'{path}: expected an object with a "models" list')
    unknown = set(data) - {"models"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    return parse_models(data["models"], path.parent, path)
