"""The body of PATCH /api/settings: the fields to change, each optional (null empties the
nullable ones). Types are loose on purpose: the service checks each value by the Settings'
own rules and names the field at fault."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class KeyChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, description="new keys")
    remove: list[str] = Field(default_factory=list, description="names of keys, as GET shows")


class SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_model: str | None = None
    models_dir: str | None = None
    parallel: int | None = None
    ctx_size: int | None = None
    gpu_layers: int | None = None
    keep_alive: str | float | None = Field(None, description="'5m', '1h', seconds; -1 forever")
    cors_origins: list[str] | str | None = None
    api_keys: KeyChanges | None = None
    request_log_days: float | None = None
    request_log_rows: int | None = None
    host: str | None = None
    port: int | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as sent."""
        return self.model_dump(exclude_unset=True)
