"""Typed settings, read once at start-up.

Precedence, highest first: command-line flag > environment variable > config file > default.
Every field is documented in docs/configuration.md (a test keeps the two in step).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hearth.errors import ConfigError
from hearth.models.config import MAX_CTX, ModelConfig, listed, parse_models, read_models_file
from hearth.models.keepalive import DEFAULT_KEEP_ALIVE, KeepAliveValue, parse_keep_alive
from hearth.models.memory import memory_budget
from hearth.store.retention import DEFAULT_TTL, parse_ttl

APP_NAME = "hearth"

# Names kept from the original design, honoured after the HEARTH_* names.
LEGACY_ENV = {
    "port": "LLM_SERVER_PORT",
    "models_dir": "LLM_MODELS_DIR",
    "use_gpu": "LLM_USE_GPU",
    # huggingface_hub's own variable, so `hearth pull` follows a mirror the user set up.
    "hf_endpoint": "HF_ENDPOINT",
}

LIST_FIELDS = {"model", "cors_origins", "mcp_allow_urls", "api_key", "allowed_hosts", "upstream"}
FILE_ONLY = {"models"}  # tables of the config file, never flags or environment variables


_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0}
_PER["hour"] = 3600.0


def parse_rate(text: str) -> tuple[int, float]:
    """'60/min' as (60, 60.0): that many requests per window, per API key or client."""
    count, sep, per = text.strip().partition("/")
    window = _PER.get(per.strip().lower())
    if not sep or window is None or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"rate limit {text!r}: expected N/s, N/min or N/hour (N >= 1)")
    return int(count), window


def upstream_config(item: str) -> ModelConfig:
    """`NAME=URL` (from --upstream) as an upstream model entry."""
    name, sep, url = item.partition("=")
    if not sep or not name.strip() or not url.strip():
        raise ValueError(f"--upstream {item!r}: expected NAME=URL")
    try:
        return ModelConfig(id=name, backend="openai", base_url=[url])
    except ValidationError as exc:
        raise ValueError(f"--upstream {item!r}: {exc.errors()[0]['msg']}") from None


def default_models_dir() -> Path:
    """Where models live unless told otherwise: the user data directory."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def default_data_dir() -> Path:
    """Where Hearth keeps its database and archives unless told otherwise."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_config_file() -> Path:
    """The TOML config file read at start-up when it exists."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_mcp_config() -> Path:
    """The MCP servers file read at start-up when it exists (beside config.toml)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "mcp.json"


class Settings(BaseModel):
    """Server-wide settings. Per-request fields never live here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(11434, ge=0, le=65535)
    model: list[str] = Field(default_factory=list)
    models_dir: Path = Field(default_factory=default_models_dir)
    ctx_size: int | None = Field(None, ge=64, le=MAX_CTX)
    parallel: int = Field(4, ge=1, le=64)
    threads: int | None = Field(None, ge=1)
    threads_batch: int | None = Field(None, ge=1)
    batch_size: int = Field(512, ge=16)
    ubatch_size: int = Field(512, ge=16)
    gpu_layers: int | None = None
    use_gpu: bool = False
    flash_attn: Literal["auto", "on", "off"] = "auto"
    cache_type_k: Literal["f16", "q8_0", "q4_0"] = "f16"
    cache_type_v: Literal["f16", "q8_0", "q4_0"] = "f16"
    kv_unified: bool = False
    engine_isolation: Literal["process", "thread"] = "process"
    cache_ram: int = Field(4096, ge=0)
    speculative: Literal["none", "ngram", "draft"] | None = None
    draft_model: Path | None = None
    draft_max: int = Field(16, ge=1, le=64)
    chat_template_file: Path | None = None
    reasoning_format: Literal["parsed", "raw"] = "parsed"
    pooling: Literal["auto", "mean", "cls", "last"] = "auto"
    # -- security --
    api_key: list[str] = Field(default_factory=list)
    api_key_file: Path | None = None
    insecure_no_auth: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # -- limits --
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    max_headers: int = Field(100, ge=8)
    header_timeout: float = Field(10.0, gt=0)
    timeout_keep_alive: float = Field(5.0, gt=0)
    max_queue: int = Field(256, ge=0)
    request_timeout: float = Field(0.0, ge=0)
    rate_limit: str | None = None
    shutdown_timeout: float = Field(30.0, ge=0)
    # -- as a desktop app's sidecar (docs/desktop.md) --
    sidecar: bool = False
    parent_pid: int | None = Field(None, ge=1)
    exit_on_stdin_close: bool = False
    # -- observability --
    metrics: Literal["on", "off"] = "on"
    request_log: Literal["on", "off"] = "on"
    request_log_days: float = Field(14.0, ge=0)
    request_log_rows: int = Field(100_000, ge=0)
    request_log_bodies: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    config: Path | None = None
    # -- model lifecycle --
    keep_alive: KeepAliveValue = DEFAULT_KEEP_ALIVE
    max_loaded_models: int = Field(3, ge=1, le=64)
    max_memory: str = "auto"
    model_wait_timeout: float = Field(60.0, ge=0)
    models_config: Path | None = None
    models: list[ModelConfig] = Field(default_factory=list)
    # NAME=URL: a model served by an OpenAI-compatible server (a `backend = "openai"` entry).
    upstream: list[str] = Field(default_factory=list)
    hf_endpoint: str | None = None
    # -- the store --
    # Looked up when a Settings is made, so a test can point it at its tmp_path.
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    responses_ttl: str | float = DEFAULT_TTL
    # -- MCP servers --
    mcp_config: Path = Field(default_factory=lambda: default_mcp_config())
    mcp_eager: bool = False
    mcp_allow_urls: list[str] = Field(default_factory=list)

    @field_validator(
        "models_dir",
        "chat_template_file",
        "config",
        "models_config",
        "draft_model",
        "data_dir",
        "mcp_config",
        "api_key_file",
        mode="after",
    )
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("upstream", mode="after")
    @classmethod
    def _upstreams(cls, value: list[str]) -> list[str]:
        for item in value:
            upstream_config(item)
        return value

    @property
    def model_configs(self) -> list[ModelConfig]:
        """The `[[models]]` entries, then one per --upstream."""
        return [*self.models, *(upstream_config(item) for item in self.upstream)]

    @field_validator("keep_alive", mode="after")
    @classmethod
    def _keep_alive(cls, value: KeepAliveValue) -> KeepAliveValue:
        parse_keep_alive(value)
        return value

    _one_key = field_validator("api_key", mode="before")(listed)

    @field_validator("rate_limit", mode="after")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @property
    def rate(self) -> tuple[int, float] | None:
        """--rate-limit as (requests, per seconds); None: no limit."""
        return parse_rate(self.rate_limit) if self.rate_limit else None

    @field_validator("max_memory", mode="after")
    @classmethod
    def _max_memory(cls, value: str) -> str:
        memory_budget(value)
        return value

    @field_validator("responses_ttl", mode="after")
    @classmethod
    def _responses_ttl(cls, value: str | float) -> str | float:
        parse_ttl(value)
        return value

    @property
    def responses_ttl_seconds(self) -> float | None:
        """How long stored responses and conversations live after their last use (None:
        for good)."""
        return parse_ttl(self.responses_ttl)

    @property
    def database_path(self) -> Path:
        """The store's SQLite file."""
        return self.data_dir / "hearth.db"

    @property
    def archive_dir(self) -> Path:
        """Where expired conversations are archived, one JSON file each."""
        return self.data_dir / "conversation_logs"

    @property
    def keep_alive_seconds(self) -> float:
        """The server's default keep-alive in seconds (math.inf: never unload)."""
        return parse_keep_alive(self.keep_alive)

    @property
    def memory_budget(self) -> int | None:
        """Bytes loaded models may take together; None: no limit."""
        return memory_budget(self.max_memory)

    @property
    def effective_speculative(self) -> Literal["none", "ngram", "draft"]:
        """--speculative as given; unset means draft-model decoding when a draft model is set."""
        if self.speculative is not None:
            return self.speculative
        return "draft" if self.draft_model is not None else "none"

    @property
    def effective_gpu_layers(self) -> int:
        """Layers to offload: --gpu-layers wins; LLM_USE_GPU alone means all of them."""
        if self.gpu_layers is not None:
            return self.gpu_layers
        return -1 if self.use_gpu else 0


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name in FILE_ONLY:
            continue
        raw = environ.get(f"HEARTH_{name.upper()}")
        if raw is None and name in LEGACY_ENV:
            raw = environ.get(LEGACY_ENV[name])
        if raw is None:
            continue
        if name in LIST_FIELDS:
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    return values


def _file_values(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ConfigError(f"config file not found: {path}")
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    # Server settings sit at the top level; [[models]] entries are per-model settings.
    values = {k.replace("-", "_"): v for k, v in data.items() if k != "models"}
    if "models" in data:
        values["models"] = parse_models(data["models"], path.parent, path)
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge flags, environment and config file over the defaults, once."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None and v != []}
    env = os.environ if environ is None else environ
    env_values = _env_values(env)
    explicit = flags.get("config") or env_values.get("config")
    config_path = Path(explicit).expanduser() if explicit else default_config_file()
    merged = {**_file_values(config_path, required=bool(explicit)), **env_values, **flags}
    merged["config"] = config_path
    models_file = merged.get("models_config")
    if models_file:
        merged["models"] = [*merged.get("models", []), *read_models_file(Path(models_file))]
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
