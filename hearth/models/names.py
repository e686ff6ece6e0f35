"""Copying, creating and deleting names (Ollama's /api/copy, /api/create, /api/delete) over the
saved names store, without HTTP.

A copy is another name for a model. A created model is a model's file under a new name with its
own settings (system prompt, sampling, context), or an uploaded GGUF moved into the models
directory under that name. A name can replace a copy (Ollama overwrites on copy and create) or,
through create, a created model without a file of its own; any other name that exists is a 409,
since replacing it would mean deleting a model's files. A model that copies or created models
rely on is not deleted (409, naming them): they would be left pointing at nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from hearth.errors import (
    AlreadyExists,
    Conflict,
    InvalidModelFile,
    InvalidRequestError,
    ModelBusy,
    ModelNotFound,
)
from hearth.models.blobs import blob_path, parse_digest, take_blob
from hearth.models.config import TAGGED, ModelConfig
from hearth.models.gguf_header import GGUFError
from hearth.models.manager import ModelManager
from hearth.models.paths import new_file_target
from hearth.models.registry import ModelEntry, Registry
from hearth.models.saved import SavedCopy, SavedModel, SavedNames, display_name, normalise_name
from hearth.models.store import delete_files, delete_model
from hearth.models.validate import found_at, validate_model


def _known(registry: Registry, name: str) -> bool:
    try:
        registry.get(name)
    except ModelNotFound:
        return False
    return True


def _check_free(registry: Registry, name: str, *, replace_created: bool) -> None:
    """A 409 unless `name` is free or may be replaced (a copy; for create, also a created
    model without a file of its own)."""
    saved = registry.saved.read()
    record = saved.find_model(name)
    if saved.find_copy(name) is not None or (replace_created and record and not record.owns_file):
        return
    if record is not None or _known(registry, name):
        raise AlreadyExists(
            f'model "{display_name(name)}" already exists; delete it first or choose another name',
            param="model",
        )


def _stored_path(registry: Registry, path: Path) -> str:
    """Inside the models directory a path is kept relative, so the directory can move."""
    root = registry.root()
    absolute = Path(os.path.abspath(path))
    return str(absolute.relative_to(root)) if absolute.is_relative_to(root) else str(absolute)


def _config(fields: dict[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.model_validate(fields, context=TAGGED)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            f"invalid value for '{where}': {first['msg']}", param=f"parameters.{where}"
        ) from None


def copy_model(registry: Registry, source: str, destination: str) -> str:
    """Make `destination` another name for `source`; returns the name as stored."""
    entry = registry.get(source)
    name = normalise_name(destination, param="destination")
    if name == entry.id or name in entry.aliases:
        return name  # already that model's name: nothing to do (as Ollama)
    saved = registry.saved.read()
    if saved.find_copy(name) is None and (
        saved.find_model(name) is not None or _known(registry, name)
    ):
        raise AlreadyExists(
            f'model "{display_name(name)}" already exists; delete it first',
            param="destination",
        )
    registry.saved.update(lambda s: s.with_copy(SavedCopy(name=name, target=entry.id)))
    registry.list()
    return name


def create_from(
    registry: Registry,
    name: str,
    source: str,
    settings: dict[str, Any],
    *,
    license: str | None = None,
) -> SavedModel:
    """A new model on `source`'s file: its settings (`[[models]]` fields) over the source's."""
    name = normalise_name(name)
    base = registry.usable(source)
    if base.upstream:
        raise InvalidRequestError(
            f"'{base.id}' is served by an upstream server; add a [[models]] entry with "
            'backend = "openai" for another set of settings',
            param="from",
        )
    _check_free(registry, name, replace_created=True)
    inherited = (
        base.config.model_dump(exclude={"id", "aliases", "path"}, exclude_none=True)
        if base.config is not None
        else {}
    )
    sampling = {**inherited.pop("sampling", {}), **settings.pop("sampling", {})}
    fields = {**inherited, **settings, "sampling": sampling}
    fields.update(id=name, path=_stored_path(registry, base.path))
    parent = display_name(source.strip().lower().removesuffix(":latest"))
    record = SavedModel(name=name, config=_config(fields), parent=parent, license=license)
    registry.saved.update(lambda s: s.with_model(record))
    registry.list()
    return record


def create_from_blob(
    registry: Registry,
    name: str,
    digest: str,
    settings: dict[str, Any],
    *,
    license: str | None = None,
) -> SavedModel:
    """A new model from an uploaded GGUF: validated, then moved into the models directory as
    `<name>.gguf` (a tag becomes `-tag`: `mine:v2` is `mine-v2.gguf`)."""
    name = normalise_name(name)
    hex_digest = parse_digest(digest, param="files")
    _check_free(registry, name, replace_created=False)
    blob = blob_path(registry.saved.state_dir(), hex_digest)
    if not blob.is_file():
        raise InvalidRequestError(
            f"blob sha256:{hex_digest} is not on this server; upload it first with "
            f"POST /api/blobs/sha256:{hex_digest}",
            param="files",
        )
    try:
        headers = validate_model(found_at(blob, None))
    except GGUFError as exc:
        raise InvalidModelFile(f"the uploaded file is not a usable GGUF: {exc.message}") from None
    if headers[0].architecture == "clip":
        raise InvalidRequestError("the uploaded file is a multimodal projector, not a model")
    target = new_file_target(registry.root(), name.replace(":", "-") + ".gguf", param="model")
    if target.exists() or target.is_symlink():
        raise AlreadyExists(f"{target.name} is already in the models directory", param="model")
    target.parent.mkdir(parents=True, exist_ok=True)
    take_blob(blob, target)
    fields = {**settings, "id": name, "path": _stored_path(registry, target)}
    record = SavedModel(
        name=name, config=_config(fields), owns_file=True, digest=hex_digest, license=license
    )
    registry.saved.update(lambda s: s.with_model(record))
    registry.list()
    return record


@dataclass(frozen=True, slots=True)
class Removal:
    """What deleting a name does: forget a copy, forget a created model, or delete files."""

    name: str
    entry: ModelEntry
    kind: Literal["copy", "created", "files"]
    record: SavedModel | None = None


def _users(registry: Registry, entry: ModelEntry, saved: SavedNames) -> list[str]:
    """The copies of `entry`, and when it owns its file, the created models on that file."""
    users = [c.name for c in saved.copies if c.target == entry.id]
    record = saved.find_model(entry.id)
    if record is None or record.owns_file:
        real = os.path.realpath(entry.path)
        root = registry.root()
        for m in saved.models:
            path = m.config.relative_to(root).path
            if m.name != entry.id and path is not None and os.path.realpath(path) == real:
                users.append(m.name)
    return sorted(users)


def plan_removal(registry: Registry, model: str) -> Removal:
    """What deleting `model` means; a 404 for an unknown name, a 409 for one others use."""
    entry = registry.get(model)
    wanted = model.strip().lower().removesuffix(":latest")
    saved = registry.saved.read()
    if saved.find_copy(wanted) is not None:
        return Removal(wanted, entry, "copy")
    users = _users(registry, entry, saved)
    if users:
        raise Conflict(
            f'model "{display_name(entry.id)}" is used by '
            f"{', '.join(display_name(u) for u in users)}; delete those first",
            param="model",
        )
    record = saved.find_model(entry.id)
    kind: Literal["created", "files"] = "created" if record and not record.owns_file else "files"
    return Removal(entry.id, entry, kind, record)


def forget(registry: Registry, name: str) -> None:
    """Drop a saved name (a copy or a created model) and refresh the registry."""
    registry.saved.update(lambda s: s.without(name))
    registry.list()


async def _unload(manager: ModelManager, model_id: str, force: bool) -> None:
    if manager.is_loaded(model_id) or manager.is_loading(model_id):
        if manager.active(model_id) and not force:
            raise ModelBusy(
                f"model '{model_id}' is serving {manager.active(model_id)} request(s); "
                "wait for them or delete with force",
                param="model",
            )
        await manager.unload(model_id, force=True)


async def delete_name(
    manager: ModelManager, model: str, *, force: bool = False
) -> tuple[str, list[Path]]:
    """DELETE /api/delete: a copy or a created model is forgotten (its file stays: it is
    another model's); any other model's files are deleted. Returns the name and the files."""
    removal = plan_removal(manager.registry, model)
    if removal.kind == "copy":
        forget(manager.registry, removal.name)
        return removal.name, []
    if removal.kind == "created":
        await _unload(manager, removal.name, force)
        forget(manager.registry, removal.name)
        return removal.name, []
    files = await delete_model(manager, removal.entry.id, force=force)
    if removal.record is not None:
        forget(manager.registry, removal.name)
    return removal.name, files


def delete_name_locally(registry: Registry, model: str) -> tuple[str, list[Path]]:
    """The same without a server (`hearth rm` when none runs)."""
    removal = plan_removal(registry, model)
    files = delete_files(registry, removal.entry) if removal.kind == "files" else []
    if removal.kind != "files" or removal.record is not None:
        forget(registry, removal.name)
    return removal.name, files
