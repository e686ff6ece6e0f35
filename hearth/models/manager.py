"""Loaded models: lazy loading on first use, concurrent first requests sharing one load."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hearth.chat.template import ChatTemplate
from hearth.engine.base import Engine
from hearth.errors import HearthError, InvalidModelFile
from hearth.models.registry import ModelEntry, Registry

log = logging.getLogger("hearth.models")

EngineFactory = Callable[[ModelEntry], Engine]


@dataclass(slots=True)
class LoadedModel:
    """A model ready to serve: its engine and its chat template."""

    entry: ModelEntry
    engine: Engine
    template: ChatTemplate
    loaded_at: float = field(default_factory=time.time)


class ModelManager:
    """Owns every loaded engine; the only place that loads or closes one."""

    def __init__(
        self,
        registry: Registry,
        factory: EngineFactory,
        *,
        chat_template_file: Path | None = None,
    ):
        self.registry = registry
        self.factory = factory
        self.chat_template_file = chat_template_file
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self.load_errors: dict[str, str] = {}

    async def get(self, model: str) -> LoadedModel:
        """The loaded model for an id, loading it first if needed."""
        loaded = self._loaded.get(model.strip().lower())
        if loaded is not None:
            return loaded
        entry = self.registry.usable(model)
        loaded = self._loaded.get(entry.id)
        if loaded is not None:
            return loaded
        task = self._loading.get(entry.id)
        if task is None:
            task = asyncio.create_task(self._load(entry), name=f"load {entry.id}")
            self._loading[entry.id] = task
        # Shielded: a caller that goes away does not abort a load others may be waiting on.
        return await asyncio.shield(task)

    async def _load(self, entry: ModelEntry) -> LoadedModel:
        log.info("loading %s from %s", entry.id, entry.path)
        started = time.perf_counter()
        try:
            engine = await asyncio.to_thread(self.factory, entry)
            try:
                template = self._template(engine)
            except BaseException:
                await asyncio.to_thread(engine.close)
                raise
        except HearthError as exc:
            self.load_errors[entry.id] = exc.message
            raise
        except Exception as exc:
            self.load_errors[entry.id] = str(exc)
            raise InvalidModelFile(f"cannot load model '{entry.id}': {exc}", param="model") from exc
        finally:
            self._loading.pop(entry.id, None)
        self.load_errors.pop(entry.id, None)
        loaded = LoadedModel(entry=entry, engine=engine, template=template)
        self._loaded[entry.id] = loaded
        log.info("loaded %s in %.1fs", entry.id, time.perf_counter() - started)
        return loaded

    def _template(self, engine: Engine) -> ChatTemplate:
        info = engine.info
        if self.chat_template_file is not None:
            return ChatTemplate.from_file(
                self.chat_template_file, bos_token=info.bos_token, eos_token=info.eos_token
            )
        return ChatTemplate(info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token)

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def is_loading(self, model_id: str | None = None) -> bool:
        return bool(self._loading) if model_id is None else model_id in self._loading

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        for loaded in list(self._loaded.values()):
            await asyncio.to_thread(loaded.engine.close)
        self._loaded.clear()
