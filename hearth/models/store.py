"""Changing what is in the models directory: importing a local file, deleting a model.

Every name is checked by hearth.models.paths; a copy goes to a `.partial` file first and is
renamed into place only once complete, so a failed import leaves nothing that looks like a
model. Imports are validated before anything is written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hearth.errors import AlreadyExists, InvalidRequestError, ModelBusy
from hearth.models.manager import ModelManager
from hearth.models.paths import check_free_space, new_file_target, open_partial, removable
from hearth.models.registry import ModelEntry, Registry
from hearth.models.scan import is_projector, model_id_for
from hearth.models.validate import found_at, split_part_names, validate_model

COPY_CHUNK = 4 * 2**20


def _target_names(source: Path, name: str | None, split_count: int) -> list[str]:
    if split_count == 1:
        chosen = name or source.name
        return [chosen if chosen.lower().endswith(".gguf") else chosen + ".gguf"]
    stem = (name or "").removesuffix(".gguf") or source.name.split("-00001-of-")[0]
    return split_part_names(stem, split_count)


def import_model(
    source: Path,
    models_dir: Path,
    *,
    name: str | None = None,
    link: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, list[Path]]:
    """Copy (or symlink) a validated GGUF, or all parts of a split one, into models_dir.
    Returns the new model's id and the files written."""
    source = Path(os.path.abspath(source.expanduser()))
    if not source.is_file():
        raise InvalidRequestError(f"no such file: {source}", param="path")
    if is_projector(source):
        raise InvalidRequestError(f"{source.name} is a multimodal projector, not a model")
    found = found_at(source, None)
    validate_model(found)
    names = _target_names(found.parts[0], name, found.split_count)
    targets = [new_file_target(models_dir, n) for n in names]
    for target in targets:
        if target.exists() or target.is_symlink():
            raise AlreadyExists(f"{target.name} is already in the models directory")
    total = sum(p.stat().st_size for p in found.parts)
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    if not link:
        check_free_space(targets[0].parent, total)
    done = 0
    for part, target in zip(found.parts, targets, strict=True):
        if link:
            os.symlink(part, target)
            continue
        done = _copy(part, target, done, total, progress)
    root = models_dir.expanduser().resolve()
    return model_id_for(targets[0], root), targets


def _copy(
    source: Path, target: Path, done: int, total: int, progress: Callable[[int, int], None] | None
) -> int:
    partial = target.with_name(target.name + ".partial")
    fd = open_partial(partial)
    try:
        with source.open("rb") as src, os.fdopen(fd, "wb") as out:
            while block := src.read(COPY_CHUNK):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return done


def delete_files(registry: Registry, entry: ModelEntry) -> list[Path]:
    """Remove a model's files from the models directory; a symlink goes as a link (its target
    stays). Refused for anything outside the directory or reached through a symlinked folder."""
    _refuse_upstream(entry)
    files = list(entry.parts) or [entry.path]
    root = registry.root()
    targets = [removable(root, path) for path in files]
    for target in targets:
        target.unlink(missing_ok=True)
    registry.list()  # refresh ids and aliases now
    return targets


async def delete_model(manager: ModelManager, model: str, *, force: bool = False) -> list[Path]:
    """Unload (if loaded) and delete a model. One serving requests is refused unless forced."""
    entry = manager.registry.get(model)
    _refuse_upstream(entry)
    for path in list(entry.parts) or [entry.path]:
        removable(manager.registry.root(), path)  # refuse before unloading anything
    if manager.is_loaded(entry.id) or manager.is_loading(entry.id):
        if manager.active(entry.id) and not force:
            raise ModelBusy(
                f"model '{entry.id}' is serving {manager.active(entry.id)} request(s); "
                "wait for them or delete with force",
                param="model",
            )
        await manager.unload(entry.id, force=True)
    return delete_files(manager.registry, entry)


def _refuse_upstream(entry: ModelEntry) -> None:
    if entry.upstream:
        raise InvalidRequestError(
            f"model '{entry.id}' is served by an upstream server and has no files here; "
            "remove its [[models]] entry (or --upstream) instead",
            param="model",
        )
