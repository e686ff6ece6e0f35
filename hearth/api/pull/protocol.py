"""Wire models of POST /api/pull, shaped like Ollama's progress lines."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.api.protocol import WireModel, legacy_name


class PullRequest(BaseModel):
    """`model`: owner/repo/file.gguf, owner/repo:Q4_K_M or a URL (Ollama's older `name` is
    accepted for it). `filename` renames the download; `sha256` is checked when the hub
    gives none."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=2048)
    insecure: bool = False  # sent by Ollama's clients; accepted and ignored
    stream: bool = True
    # -- Hearth extension --
    filename: str | None = Field(None, min_length=1, max_length=512)
    sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_name(cls, data: object) -> object:
        return legacy_name(data)


class PullStatus(WireModel):
    """One progress line: `status`, and for a transfer `total` and `completed` bytes."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    # -- Hearth extension --
    file: str | None = None
    model: str | None = None  # the new model's id, on the final `success` line
