"""Wire models of the lifecycle routes, named as Ollama names them where it has the route."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.api.ollama.models_protocol import ModelDetails
from hearth.api.protocol import WireModel, legacy_name
from hearth.models.keepalive import KeepAliveField, keep_alive_seconds


class ModelRequest(BaseModel):
    """A request naming one model (Ollama's older `name` is accepted for `model`); unknown
    fields are ignored, as in the OpenAI routes."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=512)

    @model_validator(mode="before")
    @classmethod
    def _legacy_name(cls, data: object) -> object:
        return legacy_name(data)


class LoadRequest(ModelRequest):
    """POST /api/load."""

    keep_alive: KeepAliveField = None

    @property
    def keep_alive_seconds(self) -> float | None:
        """Seconds to stay loaded once idle (math.inf: forever), or None for the default."""
        return keep_alive_seconds(self.keep_alive)


class UnloadRequest(ModelRequest):
    """POST /api/unload; `force` unloads even while requests run (they fail)."""

    force: bool = False


class DeleteRequest(ModelRequest):
    """DELETE /api/delete; `force` deletes even while requests run."""

    force: bool = False


class ProcessModel(WireModel):
    """One loaded model, as Ollama's /api/ps shows it."""

    name: str
    model: str
    size: int  # estimated bytes in memory
    digest: str  # as in /api/tags
    size_vram: int
    details: ModelDetails
    expires_at: str | None  # ISO 8601; None while in use or when kept loaded for good
    context_length: int
    # -- Hearth extension --
    active_requests: int
    idle_seconds: float | None  # None while in use
    keep_alive: str  # 'forever', '0s', '5m'...
    loaded_at: str


class ProcessList(WireModel):
    """GET /api/ps."""

    models: list[ProcessModel]


class LoadResponse(WireModel):
    """The loaded model and its state."""

    model: str
    status: Literal["loaded"] = "loaded"
    process: ProcessModel


class UnloadResponse(WireModel):
    """`unloading`: busy, it goes when its requests end."""

    model: str
    status: Literal["unloaded", "unloading", "not_loaded"]


class DeleteResponse(WireModel):
    """The files removed (a symlink is removed as a link)."""

    model: str
    status: Literal["deleted"] = "deleted"
    files: list[str]
