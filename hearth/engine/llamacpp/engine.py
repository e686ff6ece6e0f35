"""llama.cpp's native side: the core of one model (LlamaCppCore), and `LlamaCppEngine`, which
runs it in the server's own process (`--engine-isolation thread`). `process.ProcessEngine`
runs the core in a child; what both share is in common.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import llama_cpp

from hearth.engine.base import (
    EngineStatus,
    GenerationRequest,
    ModelInfo,
    resolve_ctx_size,
)
from hearth.engine.llamacpp.common import (
    UNLOADED,
    EngineOptions,
    LlamaCppEngineBase,
    _Handle,
    settle,
)
from hearth.engine.llamacpp.compute import ComputeThread
from hearth.engine.llamacpp.embed import EmbedTask
from hearth.engine.llamacpp.native import NativeModel, default_threads
from hearth.engine.llamacpp.sampler import grammar_parses
from hearth.engine.llamacpp.slots import Job
from hearth.engine.llamacpp.speculative import DraftModel
from hearth.engine.llamacpp.worker import ContextConfig, Sink, Worker
from hearth.errors import ModelUnloaded

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
            fim=self.model.fim_tokens(),
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

    # What both isolation modes answer at once, off the compute thread (read-only vocab).

    def tokenize_many(self, texts: list[str], add_special: bool) -> list[list[int]]:
        return [self.model.tokenize(t, add_special=add_special) for t in texts]

    def detokenize(self, tokens: list[int]) -> str:
        return self.model.detokenize(tokens)

    def grammar_parses(self, grammar: str) -> bool:
        return grammar_parses(self.model.vocab, grammar)

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


class LlamaCppEngine(LlamaCppEngineBase):
    """A GGUF model whose worker runs in this process, on the shared compute thread."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        options: EngineOptions,
        compute: ComputeThread | None = None,
    ):
        super().__init__()
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
        handle.cancel()

    def _grammar_parses(self, grammar: str) -> bool:
        return self.core.grammar_parses(grammar)

    def tokenize_many(self, texts: list[str], *, add_special: bool = True) -> list[list[int]]:
        return self.core.tokenize_many(texts, add_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.core.detokenize(tokens)

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
