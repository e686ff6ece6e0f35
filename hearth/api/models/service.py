"""GET /v1/models: the registry's entries with their state."""

from __future__ import annotations

import contextlib
from typing import Literal

from hearth.api.models.protocol import (
    Model,
    ModelDetails,
    ModelList,
    UpstreamDetails,
    UpstreamUrl,
)
from hearth.models.manager import LoadedModel
from hearth.models.registry import ModelEntry
from hearth.runtime import Runtime


def describe(rt: Runtime, entry: ModelEntry) -> Model:
    """The wire form of a registry entry, with its lifecycle state."""
    header = entry.header
    status: Literal["loaded", "loading", "available", "invalid", "crashed", "failed"]
    loaded = next((m for m in rt.models.loaded() if m.entry.id == entry.id), None)
    crash = rt.models.failed.get(entry.id) or rt.models.crashes.get(entry.id)
    if loaded is not None:
        status = "loaded"
    elif entry.error:
        status = "invalid"
    elif rt.models.is_loading(entry.id):
        status = "loading"
    elif entry.id in rt.models.failed:
        status = "failed"
    elif entry.id in rt.models.crashes:
        status = "crashed"
    else:
        status = "available"
    window = rt.context_window(entry)
    plan = rt.context_plan(entry)
    return Model(
        id=entry.id,
        created=entry.created,
        context_window=window,
        max_output_tokens=rt.max_output_tokens(entry),
        max_model_len=window,
        hearth=ModelDetails(
            status=status,
            error=entry.error or rt.models.load_errors.get(entry.id) or crash,
            file="" if entry.upstream else entry.path.name,
            size_bytes=entry.size_bytes,
            quantization=header.quantization if header else None,
            architecture=header.architecture if header else None,
            parameters=entry.n_params if header else None,
            context_length_trained=header.context_length if header else None,
            parallel=plan.parallel if plan else None,
            kv_cache_bytes=plan.kv_bytes if plan and header else None,
            has_chat_template=header.chat_template is not None if header else None,
            tokenizer=header.tokenizer if header else None,
            aliases=list(entry.aliases),
            files=max(1, len(entry.parts)),
            projector=entry.projector.name if entry.projector else None,
            active_requests=rt.models.active(entry.id) if loaded else 0,
            memory_bytes=loaded.memory_bytes if loaded else None,
            expires_at=int(loaded.expires_at) if loaded and loaded.expires_at else None,
            backend="openai" if entry.upstream else "llamacpp",
            upstream=upstream_details(entry, loaded) if entry.upstream else None,
        ),
    )


def upstream_details(entry: ModelEntry, loaded: LoadedModel | None) -> UpstreamDetails:
    """Where an upstream model is served, and how its base URLs are doing."""
    cfg = entry.config
    assert cfg is not None
    urls = [UpstreamUrl(url=url) for url in cfg.base_url]
    if loaded is not None:
        with contextlib.suppress(Exception):  # a closing engine: no figures now
            urls = [
                UpstreamUrl(
                    url=u.url,
                    up=u.up,
                    in_flight=u.in_flight,
                    requests=u.requests,
                    errors=u.errors,
                    last_error=u.last_error,
                )
                for u in loaded.engine.status().upstreams
            ]
    return UpstreamDetails(
        model=cfg.upstream_model or entry.id, base_urls=urls, balance=cfg.balance
    )


def list_models(rt: Runtime) -> ModelList:
    """Every model of the registry."""
    return ModelList(data=[describe(rt, e) for e in rt.registry.list()])


def get_model(rt: Runtime, model_id: str) -> Model:
    """One model by id or alias (404 if unknown)."""
    return describe(rt, rt.registry.get(model_id))
