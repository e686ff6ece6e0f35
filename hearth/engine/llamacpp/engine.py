"""llama.cpp engines: the native core of one model (LlamaCppCore) and its async face.

`LlamaCppEngine` runs the core in the server's own process (`--engine-isolation thread`);
`process.ProcessEngine` runs it in a child process and shares everything else here."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import llama_cpp

from hearth.engine.base import (
    Engine,
    EngineStatus,
    Event,
    GenerationFinished,
    GenerationRequest,
    ModelInfo,
    SpecMode,
    Usage,
    resolve_ctx_size,
)
from hearth.engine.llamacpp.compute import ComputeThread
from hearth.engine.llamacpp.embed import EmbedTask
from hearth.engine.llamacpp.native import NativeModel, default_threads
from hearth.engine.llamacpp.sampler import grammar_parses
from hearth.engine.llamacpp.slots import Job
from hearth.engine.llamacpp.speculative import DraftModel
from hearth.engine.llamacpp.worker import ContextConfig, Sink, Worker
from hearth.errors import ContextLengthExceeded, HearthError, InvalidRequestError, ModelUnloaded

_CACHE_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}
_FLASH_ATTN = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}
# GGUF keys through which a model may recommend sampling defaults.
_SAMPLING_KEYS = {
    "temperature": ("general.sampling.temp", float),
    "top_p": ("general.sampling.top_p", float),
    "top_k": ("general.sampling.top_k", int),
    "min_p": ("general.sampling.min_p", float),
}


UNLOADED = "the model was unloaded while this request ran"


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to load one model; built from Settings (and, later, per-model config)."""

    ctx_size: int | None = None
    parallel: int = 4
    threads: int | None = None
    threads_batch: int | None = None
    batch_size: int = 512
    ubatch_size: int = 512
    gpu_layers: int = 0
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    kv_unified: bool = False
    cache_ram_mib: int = 0
    speculative: SpecMode = "none"
    draft_max: int = 16
    draft_model: Path | None = None
    max_output_tokens: int | None = None  # a per-model cap on one answer
    pooling: str = "auto"  # embeddings: auto (the model's own, else mean), mean, cls, last


class LlamaCppCore:
    """One model's native side: the weights, the batch worker (and draft model) and what the
    API needs to know of it. Lives in the engine child, or in the server with thread isolation."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        options: EngineOptions,
        *,
        compute: ComputeThread,
        sink: Sink | None = None,
    ):
        self.model = NativeModel(path, gpu_layers=options.gpu_layers)
        self.compute = compute
        draft: DraftModel | None = None
        try:
            n_ctx_train = self.model.n_ctx_train
            ctx_size = resolve_ctx_size(options.ctx_size, n_ctx_train)
            threads = options.threads or default_threads()
            if options.draft_model is not None:
                draft = DraftModel(
                    options.draft_model,
                    n_seq=options.parallel,
                    ctx_size=ctx_size,
                    threads=threads,
                    target=self.model,
                )
            self.worker = Worker(
                self.model,
                ContextConfig(
                    ctx_size=ctx_size,
                    parallel=options.parallel,
                    batch_size=options.batch_size,
                    ubatch_size=options.ubatch_size,
                    threads=threads,
                    threads_batch=options.threads_batch or threads,
                    flash_attn=_FLASH_ATTN[options.flash_attn],
                    type_k=_CACHE_TYPES[options.cache_type_k],
                    type_v=_CACHE_TYPES[options.cache_type_v],
                    kv_unified=options.kv_unified,
                    cache_ram_bytes=options.cache_ram_mib * 2**20,
                    speculative=options.speculative,
                    draft_max=options.draft_max,
                    pooling=options.pooling,
                ),
                draft,
                sink,
            )
        except BaseException:
            if draft is not None:
                draft.close()
            self.model.close()
            raise
        self.info = ModelInfo(
            id=model_id,
            path=str(path),
            n_ctx_train=n_ctx_train,
            ctx_size=ctx_size,
            n_vocab=self.model.n_vocab,
            n_params=self.model.n_params(),
            size_bytes=path.stat().st_size,
            architecture=self.model.meta("general.architecture") or "unknown",
            description=self.model.description(),
            chat_template=self.model.chat_template(),
            bos_token=self.model.token_text(self.model.bos),
            eos_token=self.model.token_text(self.model.eos),
            add_bos=self.model.add_bos,
            sampling_defaults=self._sampling_defaults(),
            n_embd=llama_cpp.llama_model_n_embd_out(self.model.ptr) or self.model.n_embd,
        )
        compute.attach(self.worker)

    def _sampling_defaults(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for name, (key, kind) in _SAMPLING_KEYS.items():
            raw = self.model.meta(key)
            if raw is not None:
                with contextlib.suppress(ValueError):  # a malformed hint is no hint
                    out[name] = kind(raw)
        return out

    def submit(self, item: Job | EmbedTask) -> None:
        self.compute.submit(self.worker, item)

    def status(self) -> EngineStatus:
        w = self.worker
        cache = w.cache
        return EngineStatus(
            slots=w.slot_status(),
            queued=w.queued(),
            requests_served=w.requests_served,
            steps=w.steps,
            decode_seconds=w.decode_seconds,
            step_seconds=w.step_seconds,
            draft_proposed=w.draft_proposed,
            draft_accepted=w.draft_accepted,
            cache_entries=len(cache) if cache is not None else 0,
            cache_bytes=cache.used_bytes if cache is not None else 0,
            cache_hits=cache.hits if cache is not None else 0,
            embed_decodes=w.embed_decodes,
            pid=os.getpid(),
            decode_threads=sorted(w.decode_threads),
            threads=w.threads_in_use,
        )

    def close(self) -> None:
        """Fail what is still running, then free the context and the weights."""
        self.compute.detach(self.worker, ModelUnloaded(UNLOADED))
        self.worker.free()
        self.model.close()


class _Handle(Protocol):
    """What generate() keeps of each submitted choice group."""

    finished: bool


class LlamaCppEngineBase(Engine):
    """What both isolation modes share: checks before any work, choice groups, usage."""

    supports_embeddings = True
    parallel: int
    max_output_tokens: int | None

    @abc.abstractmethod
    def _start(
        self,
        request: GenerationRequest,
        first_index: int,
        loop: asyncio.AbstractEventLoop,
        channel: asyncio.Queue[Any],
    ) -> _Handle:
        """Submit one choice group; its events arrive on `channel`."""

    @abc.abstractmethod
    def _cancel(self, handle: _Handle) -> None:
        """The caller stopped listening: free the group's sequences."""

    @abc.abstractmethod
    def _grammar_parses(self, grammar: str) -> bool:
        """Whether llama.cpp accepts this GBNF (its parser, with this model's vocabulary)."""

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.tokenize_many([text], add_special=add_special)[0]

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Reject what cannot run before any work is done; resolve max_tokens."""
        ctx = self.info.ctx_size
        n_prompt = len(request.prompt)
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if request.n < 1:
            raise InvalidRequestError(f"n must be at least 1, got {request.n}", param="n")
        if request.grammar is not None and not self._grammar_parses(request.grammar):
            raise InvalidRequestError("llama.cpp could not parse the grammar", param="grammar")
        if request.max_tokens is None:
            if n_prompt >= ctx:
                raise ContextLengthExceeded(
                    f"This model's context is {ctx} tokens; the prompt has {n_prompt} tokens "
                    "and leaves no room for output.",
                    param="messages",
                )
            request.max_tokens = min(ctx - n_prompt, self.max_output_tokens or ctx)
        elif self.max_output_tokens and request.max_tokens > self.max_output_tokens:
            raise InvalidRequestError(
                f"max_tokens is {request.max_tokens}; this model answers with at most "
                f"{self.max_output_tokens} tokens (its max_output_tokens)",
                param="max_tokens",
            )
        elif n_prompt + request.max_tokens > ctx:
            raise ContextLengthExceeded(
                f"This model's context is {ctx} tokens; the prompt has {n_prompt} tokens and "
                f"max_tokens asks for {request.max_tokens} more ({n_prompt + request.max_tokens} "
                "in all). Shorten the prompt or lower max_tokens.",
                param="max_tokens",
            )
        request.checked = True
        return request

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if not request.checked:
            self.check(request)
        loop = asyncio.get_running_loop()
        # More choices than sequences: groups of at most `parallel` choices, each a job queued
        # in turn (as llama-server queues a task per choice). A group decodes the prompt once
        # for its choices; a later group finds it cached in the sequences the last one freed.
        channel: asyncio.Queue[Any] = asyncio.Queue()
        handles = [
            self._start(
                replace(request, n=min(self.parallel, request.n - first)), first, loop, channel
            )
            for first in range(0, request.n, self.parallel)
        ]
        usage: Usage | None = None
        try:
            for _ in handles:
                while not isinstance(event := await channel.get(), GenerationFinished):
                    if isinstance(event, HearthError):
                        raise event
                    yield event
                usage = event.usage if usage is None else _merged(usage, event.usage)
            assert usage is not None
            yield GenerationFinished(usage)
        finally:
            # The caller stopped listening (disconnect, error, break): free the sequences.
            for handle in handles:
                if not handle.finished:
                    self._cancel(handle)


class LlamaCppEngine(LlamaCppEngineBase):
    """A GGUF model whose worker runs in this process, on the shared compute thread."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        options: EngineOptions,
        compute: ComputeThread | None = None,
    ):
        self.core = LlamaCppCore(model_id, path, options, compute=compute or ComputeThread())
        self.info = self.core.info
        self.parallel = options.parallel
        self.max_output_tokens = options.max_output_tokens

    def _start(
        self,
        request: GenerationRequest,
        first_index: int,
        loop: asyncio.AbstractEventLoop,
        channel: asyncio.Queue[Any],
    ) -> Job:
        job = Job(request, loop, channel, first_index)
        self.core.submit(job)
        return job

    def _cancel(self, handle: _Handle) -> None:
        assert isinstance(handle, Job)
        handle.cancelled = True  # read by the worker at its next step

    def _grammar_parses(self, grammar: str) -> bool:
        return grammar_parses(self.core.model.vocab, grammar)

    def tokenize_many(self, texts: list[str], *, add_special: bool = True) -> list[list[int]]:
        return [self.core.model.tokenize(t, add_special=add_special) for t in texts]

    def detokenize(self, tokens: list[int]) -> str:
        return self.core.model.detokenize(tokens)

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[float]]] = loop.create_future()

        def done(result: list[list[float]] | Exception) -> None:  # on the compute thread
            loop.call_soon_threadsafe(settle, future, result)

        self.core.submit(EmbedTask(inputs, done))
        return await future

    def status(self) -> EngineStatus:
        return self.core.status()

    def close(self) -> None:
        self.core.close()


def settle(future: asyncio.Future[Any], result: Any) -> None:
    """Resolve a future with a result, or an exception carried as the result."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _merged(a: Usage, b: Usage) -> Usage:
    """One request's usage from two of its choice groups: the prompt counts once, cached as
    the least any group found (the first group's read, which later groups reuse)."""
    return Usage(
        prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cached_tokens=min(a.cached_tokens, b.cached_tokens),
        draft_proposed=a.draft_proposed + b.draft_proposed,
        draft_accepted=a.draft_accepted + b.draft_accepted,
    )
