"""GET /v1/models: the registry's entries with their state."""

from __future__ import annotations

from typing import Literal

from hearth.api.models.protocol import Model, ModelDetails, ModelList
from hearth.models.registry import ModelEntry
from hearth.runtime import Runtime


def describe(rt: Runtime, entry: ModelEntry) -> Model:
    header = entry.header
    status: Literal["loaded", "loading", "available", "invalid"]
    if entry.error:
        status = "invalid"
    elif rt.models.is_loaded(entry.id):
        status = "loaded"
    elif rt.models.is_loading(entry.id):
        status = "loading"
    else:
        status = "available"
    window = rt.context_window(entry)
    return Model(
        id=entry.id,
        created=entry.created,
        context_window=window,
        max_output_tokens=window,
        hearth=ModelDetails(
            status=status,
            error=entry.error or rt.models.load_errors.get(entry.id),
            file=entry.path.name,
            size_bytes=entry.size_bytes,
            quantization=header.quantization if header else None,
            architecture=header.architecture if header else None,
            parameters=header.n_params if header else None,
            context_length_trained=header.context_length if header else None,
            has_chat_template=header.chat_template is not None if header else None,
        ),
    )


def list_models(rt: Runtime) -> ModelList:
    return ModelList(data=[describe(rt, e) for e in rt.registry.list()])


def get_model(rt: Runtime, model_id: str) -> Model:
    return describe(rt, rt.registry.get(model_id))
