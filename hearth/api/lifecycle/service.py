"""Listing, loading, unloading and deleting models, without HTTP."""

from __future__ import annotations

import time

from hearth.api.lifecycle.protocol import (
    DeleteRequest,
    DeleteResponse,
    LoadRequest,
    LoadResponse,
    ProcessList,
    ProcessModel,
    UnloadRequest,
    UnloadResponse,
)
from hearth.api.ollama.models_service import details, iso
from hearth.models.keepalive import format_keep_alive
from hearth.models.manager import LoadedModel
from hearth.models.names import delete_name
from hearth.runtime import Runtime


def _vram(rt: Runtime, loaded: LoadedModel) -> int:
    """The part of the estimate that sits on a GPU: all of it with every layer offloaded."""
    cfg = loaded.entry.config
    layers = cfg.gpu_layers if cfg and cfg.gpu_layers is not None else None
    if layers is None:
        layers = rt.settings.effective_gpu_layers
    if layers == 0:
        return 0
    header = loaded.entry.header
    total = header.metadata.get(f"{header.architecture}.block_count") if header else None
    if layers < 0 or not isinstance(total, int) or layers >= total:
        return loaded.memory_bytes
    return loaded.memory_bytes * layers // total


def process(rt: Runtime, loaded: LoadedModel) -> ProcessModel:
    """One loaded model with its memory and idle timer."""
    entry = loaded.entry
    active = rt.models.active(entry.id)
    return ProcessModel(
        name=entry.id,
        model=entry.id,
        size=loaded.memory_bytes,
        digest=rt.registry.digest(entry),
        size_vram=_vram(rt, loaded),
        details=details(entry, rt.registry.saved.read()),
        expires_at=iso(loaded.expires_at) if loaded.expires_at and not active else None,
        context_length=loaded.engine.info.ctx_size,
        active_requests=active,
        idle_seconds=None if active else round(time.monotonic() - loaded.last_used, 1),
        keep_alive=format_keep_alive(loaded.keep_alive),
        loaded_at=iso(loaded.loaded_at),
    )


def list_processes(rt: Runtime) -> ProcessList:
    """GET /api/ps: the loaded models, most recently used first."""
    return ProcessList(models=[process(rt, m) for m in rt.models.loaded()])


async def load(rt: Runtime, request: LoadRequest) -> LoadResponse:
    """POST /api/load: load now (making room if needed); the keep-alive timer starts."""
    loaded = await rt.models.load(request.model, request.keep_alive_seconds)
    return LoadResponse(model=loaded.entry.id, process=process(rt, loaded))


async def unload(rt: Runtime, request: UnloadRequest) -> UnloadResponse:
    """POST /api/unload: unload now, or as soon as its requests end (force: now anyway)."""
    model_id, status = await rt.models.unload(request.model, force=request.force)
    return UnloadResponse(model=model_id, status=status)


async def delete(rt: Runtime, request: DeleteRequest) -> DeleteResponse:
    """DELETE /api/delete: remove the model's files (refused while busy unless forced); a copy
    or a created model is only forgotten, and a model they rely on is refused (409)."""
    name, files = await delete_name(rt.models, request.model, force=request.force)
    return DeleteResponse(model=name, files=[f.name for f in files])
