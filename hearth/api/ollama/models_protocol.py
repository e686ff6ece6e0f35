"""Wire models of Ollama's model-management routes (/api/tags, show, copy, create), named as
Ollama's API reference and its `api` package name them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.api.protocol import WireModel, legacy_name

NAME = Field(min_length=1, max_length=512)


class ModelDetails(WireModel):
    """What the model is: `family` is the GGUF's architecture, `parent_model` the model a
    created one was made from ("" otherwise)."""

    parent_model: str = ""
    format: str = "gguf"
    family: str | None = None
    families: list[str] | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


class ListModel(WireModel):
    """One name in GET /api/tags: an id (`:latest` added), an alias, a copy or a created model."""

    name: str
    model: str
    modified_at: str  # ISO 8601
    size: int
    digest: str  # see Registry.digest: derived from the header and settings, not the weights
    details: ModelDetails


class ListResponse(WireModel):
    """GET /api/tags."""

    models: list[ListModel]


class ShowRequest(BaseModel):
    """POST /api/show; Ollama's older `name` is accepted for `model`. `verbose` adds the long
    arrays (the vocabulary, merges) to `model_info`."""

    model_config = ConfigDict(extra="ignore")

    model: str = NAME
    verbose: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_name(cls, data: object) -> object:
        return legacy_name(data)


class ShowResponse(WireModel):
    """POST /api/show. `template` is the Jinja chat template in effect (Hearth's, not a Go
    template); `parameters` is Ollama's text form of the model's configured settings."""

    license: str | None = None
    modelfile: str
    parameters: str
    template: str
    system: str | None = None
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class CopyRequest(BaseModel):
    """POST /api/copy."""

    model_config = ConfigDict(extra="ignore")

    source: str = NAME
    destination: str = NAME


class CreateRequest(BaseModel):
    """POST /api/create: `from` an existing model, or `files` naming one uploaded GGUF
    (`{"x.gguf": "sha256:<hex>"}`), with `system`, `parameters` and `license`. Go `template`s,
    `adapters`, `messages`, `quantize` and the old `modelfile` form are refused clearly."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = NAME
    from_: str | None = Field(None, alias="from", min_length=1, max_length=512)
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Any] | None = None
    quantize: str | None = None
    stream: bool = True
    # Ollama's older form: the Modelfile's text, and a path on the server.
    modelfile: str | None = None
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_name(cls, data: object) -> object:
        return legacy_name(data)


class StatusResponse(WireModel):
    """One progress line of /api/create (`success` last)."""

    status: str
