"""LlamaCppEngine: the async face of one loaded GGUF model and its batch worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
from hearth.engine.llamacpp.embed import Embedder
from hearth.engine.llamacpp.native import NativeModel, default_threads
from hearth.engine.llamacpp.sampler import grammar_parses
from hearth.engine.llamacpp.slots import Job
from hearth.engine.llamacpp.speculative import DraftModel
from hearth.engine.llamacpp.worker import ContextConfig, Worker
from hearth.errors import ContextLengthExceeded, HearthError, InvalidRequestError

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


class LlamaCppEngine(Engine):
    """A GGUF model served by a continuous-batching worker thread (and, once asked for
    embeddings, an embedding context on a thread of its own)."""

    supports_embeddings = True

    def __init__(self, model_id: str, path: Path, options: EngineOptions):
        self.model = NativeModel(path, gpu_layers=options.gpu_layers)
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
                ),
                draft,
            )
        except BaseException:
            if draft is not None:
                draft.close()
            self.model.close()
            raise
        self.parallel = options.parallel
        self.max_output_tokens = options.max_output_tokens
        self.options = options
        self.threads = threads
        self.embedder: Embedder | None = None
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

    def _sampling_defaults(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for name, (key, kind) in _SAMPLING_KEYS.items():
            raw = self.model.meta(key)
            if raw is not None:
                with contextlib.suppress(ValueError):  # a malformed hint is no hint
                    out[name] = kind(raw)
        return out

    # -- Engine -------------------------------------------------------------------------------

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Reject what cannot run before any work is done; resolve max_tokens."""
        ctx = self.info.ctx_size
        n_prompt = len(request.prompt)
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if request.n < 1:
            raise InvalidRequestError(f"n must be at least 1, got {request.n}", param="n")
        if request.grammar is not None and not grammar_parses(self.model.vocab, request.grammar):
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
        return request

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.check(request)
        loop = asyncio.get_running_loop()
        # More choices than sequences: groups of at most `parallel` choices, each a job queued
        # in turn (as llama-server queues a task per choice). A group decodes the prompt once
        # for its choices; a later group finds it cached in the sequences the last one freed.
        channel: asyncio.Queue[Any] = asyncio.Queue()
        jobs = [
            Job(replace(request, n=min(self.parallel, request.n - first)), loop, channel, first)
            for first in range(0, request.n, self.parallel)
        ]
        for job in jobs:
            self.worker.submit(job)
        usage: Usage | None = None
        try:
            for _ in jobs:
                while not isinstance(event := await channel.get(), GenerationFinished):
                    if isinstance(event, HearthError):
                        raise event
                    yield event
                usage = event.usage if usage is None else _merged(usage, event.usage)
            assert usage is not None
            yield GenerationFinished(usage)
        finally:
            # The caller stopped listening (disconnect, error, break): free the sequences.
            for job in jobs:
                if not job.finished:
                    job.cancelled = True

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        if self.embedder is None:  # only models asked for embeddings pay for the context
            self.embedder = Embedder(
                self.model,
                ctx_size=self.info.ctx_size,
                threads=self.threads,
                pooling=self.options.pooling,
            )
        return await self.embedder.embed(inputs)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.model.detokenize(tokens)

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
        )

    def close(self) -> None:
        self.worker.stop()
        if self.embedder is not None:
            self.embedder.close()
        self.model.close()


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
