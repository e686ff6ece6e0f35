"""Everything a running Hearth holds, built once from Settings: registry, loaded models and
the services. The HTTP app and the in-process library both sit on one of these."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.api.anthropic.service import MessagesService
from hearth.api.chat.service import ChatCompletionsService
from hearth.api.completions.service import CompletionsService
from hearth.api.conversations.service import ConversationsService
from hearth.api.embeddings.service import EmbeddingsService
from hearth.api.ollama.service import OllamaService
from hearth.api.responses.service import ResponsesService
from hearth.api.security import KeyRing, load_api_keys
from hearth.api.settings.service import SettingsService
from hearth.api.tokenize.service import TokenizeService
from hearth.errors import ConfigError, HearthError, InvalidModelFile, ModelNotFound
from hearth.mcp.config import ServerConfig, load_mcp_config
from hearth.mcp.manager import McpManager
from hearth.models.gguf_header import GGUFError
from hearth.models.manager import EngineFactory, ModelManager, Policy
from hearth.models.memory import ContextPlan, estimate_bytes, plan_context
from hearth.models.registry import ModelEntry, Registry
from hearth.models.validate import found_at, validate_model
from hearth.observe.metrics import Metrics
from hearth.observe.requestlog import RequestLog
from hearth.pipeline.run import Pipeline
from hearth.settings import Settings, default_mcp_config
from hearth.store import Store

log = logging.getLogger("hearth")

if TYPE_CHECKING:
    from hearth.engine.base import Engine
    from hearth.engine.llamacpp.common import EngineOptions
    from hearth.engine.llamacpp.compute import ComputeThread
    from hearth.engine.llamacpp.process import ChildPool


def context_plan(settings: Settings, entry: ModelEntry) -> ContextPlan:
    """The context a local model gets at load: its `[[models]]` ctx_size, else --ctx-size,
    else its trained context within --max-memory."""
    cfg = entry.config
    return plan_context(
        entry.header,
        entry.size_bytes,
        requested=(cfg.ctx_size if cfg else None) or settings.ctx_size,
        parallel=(cfg.parallel if cfg else None) or settings.parallel,
        budget=settings.memory_budget,
        cache_type_k=settings.cache_type_k,
        cache_type_v=settings.cache_type_v,
    )


def engine_options(
    settings: Settings, entry: ModelEntry, plan: ContextPlan | None = None
) -> EngineOptions:
    """How to load one model: its `[[models]]` settings over the server-wide ones (its
    context as `plan` says, when the caller has planned it already)."""
    from hearth.engine.llamacpp.common import EngineOptions

    cfg = entry.config
    gpu_layers = cfg.gpu_layers if cfg and cfg.gpu_layers is not None else None
    plan = plan or context_plan(settings, entry)
    return EngineOptions(
        ctx_size=plan.ctx_size,
        parallel=plan.parallel,
        threads=settings.threads,
        threads_batch=settings.threads_batch,
        batch_size=settings.batch_size,
        ubatch_size=settings.ubatch_size,
        gpu_layers=settings.effective_gpu_layers if gpu_layers is None else gpu_layers,
        flash_attn=settings.flash_attn,
        cache_type_k=settings.cache_type_k,
        cache_type_v=settings.cache_type_v,
        kv_unified=settings.kv_unified,
        cache_ram_mib=settings.cache_ram,
        speculative=settings.effective_speculative,
        draft_max=settings.draft_max,
        draft_model=settings.draft_model,
        max_output_tokens=cfg.max_output_tokens if cfg else None,
        pooling=settings.pooling,
    )


class LlamaCppFactory:
    """Builds llama.cpp engines with the server's settings (llama_cpp is imported lazily):
    each in a child process (with a spare child kept started), or, with thread isolation, all
    on one compute thread of this process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: ChildPool | None = None
        self._compute: ComputeThread | None = None
        self.plans: dict[str, ContextPlan] = {}  # each local model's, as it was last loaded

    def __call__(self, entry: ModelEntry) -> Engine:
        if entry.config is not None and entry.config.upstream:
            from hearth.engine.upstream.engine import UpstreamEngine

            cfg = entry.config
            key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
            return UpstreamEngine(cfg, key)
        plan = self.plans[entry.id] = context_plan(self.settings, entry)
        log.info("%s: %s", entry.id, plan.describe())
        options = engine_options(self.settings, entry, plan)
        if options.draft_model is not None:  # llama.cpp opens it too: validate it first
            try:
                validate_model(found_at(options.draft_model, None))
            except GGUFError as exc:
                raise InvalidModelFile(
                    f"draft model {options.draft_model.name}: {exc.message}", param="draft_model"
                ) from None
        if self.settings.engine_isolation == "process":
            # Only this mode's modules: the server itself never imports llama_cpp here.
            from hearth.engine.llamacpp.process import ChildPool, ProcessEngine

            if self._pool is None:
                self._pool = ChildPool()
            return ProcessEngine(entry.id, entry.path, options, self._pool)
        from hearth.engine.llamacpp.compute import ComputeThread
        from hearth.engine.llamacpp.engine import LlamaCppEngine

        if self._compute is None:
            self._compute = ComputeThread()
        return LlamaCppEngine(entry.id, entry.path, options, self._compute)

    def close(self) -> None:
        """Let the spare child go (loaded engines are the manager's to close)."""
        if self._pool is not None:
            self._pool.close()


def memory_estimator(settings: Settings) -> Callable[[ModelEntry], int]:
    """Estimated bytes a model takes once loaded with its effective settings."""

    def estimate(entry: ModelEntry) -> int:
        if entry.upstream:
            return 0
        plan = context_plan(settings, entry)
        return estimate_bytes(
            entry.header,
            entry.size_bytes,
            ctx_size=plan.ctx_size,
            parallel=plan.parallel,
            cache_type_k=settings.cache_type_k,
            cache_type_v=settings.cache_type_v,
        )

    return estimate


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    models: ModelManager
    pipeline: Pipeline
    chat: ChatCompletionsService
    completions: CompletionsService
    messages: MessagesService
    embeddings: EmbeddingsService
    ollama: OllamaService
    store: Store
    conversations: ConversationsService
    responses: ResponsesService
    mcp: McpManager
    tokenize: TokenizeService
    metrics: Metrics | None = None
    request_log: RequestLog | None = None
    keys: KeyRing = field(default_factory=lambda: KeyRing([]))
    configuration: SettingsService = field(init=False)
    preload: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    preloaded: bool = False  # the start-up models have loaded (they may unload later)
    preload_errors: dict[str, HearthError] = field(default_factory=dict)  # id -> why not
    draining: bool = False  # shutting down: new requests get 503
    # Set by the server when it runs as a sidecar: POST /api/shutdown calls it.
    shutdown: Callable[[], None] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.configuration = SettingsService(self)

    async def stop_generations(self) -> None:
        """End every running generation now, each with its API's final event: responses end
        `cancelled` (and are stored so), other streams end with an error event saying the
        model was unloaded; waiting requests fail the same way."""
        self.responses.cancel_all()
        await asyncio.sleep(0.2)  # a cancelled response ends at its next token
        await self.models.close()

    async def close(self) -> None:
        """Stop the MCP servers, unload every model, then release what the engines shared,
        then the request log and the store."""
        await self.mcp.close()
        await self.models.close()
        for close in self.closers:
            close()
        if self.request_log is not None:
            self.request_log.close()
        self.store.close()

    def apply(self, settings: Settings) -> None:
        """Put changed settings in force (the settings API): keys, origins, keep-alive and the
        request log's retention at once; what shapes an engine at the next load."""
        self.settings = settings
        if isinstance(self.models.factory, LlamaCppFactory):
            self.models.factory.settings = settings
        self.models.estimate = memory_estimator(settings)
        self.models.policy = replace(self.models.policy, keep_alive=settings.keep_alive_seconds)
        self.keys.keys = load_api_keys(settings)
        if self.request_log is not None:
            self.request_log.days = settings.request_log_days
            self.request_log.rows = settings.request_log_rows

    def context_plan(self, entry: ModelEntry) -> ContextPlan | None:
        """A local model's context: as it loaded, else as it would load now (None: upstream)."""
        if entry.upstream:
            return None
        factory = self.models.factory
        loaded = any(m.entry.id == entry.id for m in self.models.loaded())
        if loaded and isinstance(factory, LlamaCppFactory) and entry.id in factory.plans:
            return factory.plans[entry.id]
        return context_plan(self.settings, entry)

    def context_window(self, entry: ModelEntry) -> int:
        """The context one request may use for this model, loaded or not (for an upstream
        model, what it reported when loaded, else the configured one, else 0: unknown)."""
        loaded = next((m for m in self.models.loaded() if m.entry.id == entry.id), None)
        if loaded is not None:  # what it got (the settings may have changed since)
            return loaded.engine.info.ctx_size
        if entry.upstream:
            return entry.config.ctx_size if entry.config and entry.config.ctx_size else 0
        return context_plan(self.settings, entry).ctx_size

    def max_output_tokens(self, entry: ModelEntry) -> int:
        """The most tokens one answer may have: the configured cap, else the whole context."""
        configured = entry.config.max_output_tokens if entry.config else None
        return answer_cap(self.context_window(entry), configured)


def answer_cap(window: int, configured: int | None) -> int:
    """The most tokens one answer may have: the configured cap within the context (0:
    unknown), else the whole context."""
    if not window:
        return configured or 0
    return min(configured, window) if configured else window


def mcp_servers(settings: Settings, environ: Mapping[str, str]) -> dict[str, ServerConfig]:
    """The servers of --mcp-config; none when the default file is absent."""
    path = settings.mcp_config
    if path == default_mcp_config() and not path.exists():
        return {}
    return load_mcp_config(path, environ)


def build_runtime(settings: Settings, factory: EngineFactory | None = None) -> Runtime:
    """Registry, model manager and services for these settings."""
    # Read before anything starts, so a bad mcp.json stops start-up with its message.
    mcp = McpManager(mcp_servers(settings, os.environ), allow_urls=settings.mcp_allow_urls)
    registry = Registry(settings.models_dir, configs=settings.model_configs)
    for cfg in settings.model_configs:
        # The key of an upstream lives in the environment only; a missing one is a typo.
        if cfg.upstream and cfg.api_key_env and cfg.api_key_env not in os.environ:
            raise ConfigError(
                f"model '{cfg.id}': api_key_env names {cfg.api_key_env}, which is not set"
            )
    preload = []
    for name in settings.model:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" or path.is_file():
            if not path.is_file():
                raise ConfigError(f"--model {name}: no such file", code="model_not_found")
            preload.append(registry.add_path(path).id)
        else:
            try:
                preload.append(registry.get(name).id)
            except ModelNotFound:
                raise ConfigError(
                    f"--model {name}: no such model in {settings.models_dir} "
                    "(give a path to a .gguf file, or an id from `hearth models`)",
                    code="model_not_found",
                ) from None
    closers = []
    if factory is None:
        llama = LlamaCppFactory(settings)
        factory, closers = llama, [llama.close]
    models = ModelManager(
        registry,
        factory,
        chat_template_file=settings.chat_template_file,
        policy=Policy(
            max_loaded=settings.max_loaded_models,
            memory_budget=settings.memory_budget,
            keep_alive=settings.keep_alive_seconds,
            wait_timeout=settings.model_wait_timeout,
        ),
        estimate=memory_estimator(settings),
    )
    for model_id in preload:
        models.keep_forever(model_id)
    metrics = Metrics(models, mcp) if settings.metrics == "on" else None
    pipeline = Pipeline(
        models,
        reasoning_format=settings.reasoning_format,
        metrics=metrics,
        max_queue=settings.max_queue,
        request_timeout=settings.request_timeout,
    )
    embeddings = EmbeddingsService(models)
    store = Store(
        settings.database_path,
        ttl_seconds=settings.responses_ttl_seconds,
        archive_dir=settings.archive_dir,
    )
    request_log = None
    if settings.request_log == "on":
        request_log = RequestLog(
            store,
            days=settings.request_log_days,
            rows=settings.request_log_rows,
            bodies=settings.request_log_bodies,
        )
    return Runtime(
        settings=settings,
        registry=registry,
        models=models,
        pipeline=pipeline,
        chat=ChatCompletionsService(pipeline),
        completions=CompletionsService(pipeline),
        messages=MessagesService(pipeline),
        embeddings=embeddings,
        ollama=OllamaService(pipeline, models, embeddings),
        store=store,
        conversations=ConversationsService(store),
        responses=ResponsesService(pipeline, store, mcp),
        mcp=mcp,
        tokenize=TokenizeService(pipeline),
        metrics=metrics,
        request_log=request_log,
        keys=KeyRing(load_api_keys(settings)),  # a bad key file stops start-up with its line
        preload=preload,
        closers=closers,
    )
