"""Everything a running Hearth holds, built once from Settings: registry, loaded models and
the services. The HTTP app and the in-process library both sit on one of these."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hearth.api.chat.service import ChatCompletionsService
from hearth.api.completions.service import CompletionsService
from hearth.api.embeddings.service import EmbeddingsService
from hearth.engine.base import resolve_ctx_size
from hearth.errors import ConfigError, ModelNotFound
from hearth.models.manager import EngineFactory, ModelManager
from hearth.models.registry import ModelEntry, Registry
from hearth.settings import Settings


def llamacpp_factory(settings: Settings) -> EngineFactory:
    """Builds llama.cpp engines with the server's settings (llama_cpp is imported lazily)."""

    def build(entry: ModelEntry) -> object:
        from hearth.engine.llamacpp.engine import EngineOptions, LlamaCppEngine

        return LlamaCppEngine(
            entry.id,
            entry.path,
            EngineOptions(
                ctx_size=settings.ctx_size,
                parallel=settings.parallel,
                threads=settings.threads,
                threads_batch=settings.threads_batch,
                batch_size=settings.batch_size,
                ubatch_size=settings.ubatch_size,
                gpu_layers=settings.effective_gpu_layers,
                flash_attn=settings.flash_attn,
                cache_type_k=settings.cache_type_k,
                cache_type_v=settings.cache_type_v,
                kv_unified=settings.kv_unified,
                pooling=settings.pooling,
            ),
        )

    return build  # type: ignore[return-value]


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    models: ModelManager
    chat: ChatCompletionsService
    completions: CompletionsService
    embeddings: EmbeddingsService
    preload: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def context_window(self, entry: ModelEntry) -> int:
        """The context one request may use for this model, loaded or not."""
        trained = entry.header.context_length if entry.header else None
        return resolve_ctx_size(self.settings.ctx_size, trained)


def build_runtime(settings: Settings, factory: EngineFactory | None = None) -> Runtime:
    registry = Registry(settings.models_dir)
    preload = []
    for name in settings.model:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" or path.is_file():
            if not path.is_file():
                raise ConfigError(f"--model {name}: no such file")
            preload.append(registry.add_path(path).id)
        else:
            try:
                preload.append(registry.get(name).id)
            except ModelNotFound:
                raise ConfigError(
                    f"--model {name}: no such model in {settings.models_dir} "
                    "(give a path to a .gguf file, or an id from `hearth models`)"
                ) from None
    models = ModelManager(
        registry,
        factory or llamacpp_factory(settings),
        chat_template_file=settings.chat_template_file,
    )
    return Runtime(
        settings=settings,
        registry=registry,
        models=models,
        chat=ChatCompletionsService(models, reasoning_format=settings.reasoning_format),
        completions=CompletionsService(models),
        embeddings=EmbeddingsService(models),
        preload=preload,
    )
