"""Embeddings: a llama context of their own on the same model (embeddings on). The model's
worker drives it between generation steps, on the process's one compute thread, so embeddings
never touch the generation context and never start a second OpenMP team.

llama.cpp runs with pooling off and Hearth pools each sequence's own token rows (mean, first
or last) in float64: llama.cpp's mean pooling sums across the whole batch and rounds
differently depending on what else is in it, and the same text must give the same vector
whatever it is batched with. (The projections some models apply after pooling are linear, so
pooling their per-token outputs is the same thing.)"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Literal

import llama_cpp
import numpy as np

from hearth.engine.llamacpp.native import NativeModel
from hearth.errors import EngineError

Pooling = Literal["mean", "cls", "last"]
# GGUF `<arch>.pooling_type` values (llama.cpp's enum) that name a pooling we do.
_GGUF_POOLING: dict[str, Pooling] = {"1": "mean", "2": "cls", "3": "last"}
MAX_SEQS_PER_DECODE = 32


def model_pooling(model: NativeModel, requested: str = "auto") -> Pooling:
    """The pooling to use: as requested, else the model's own, else mean (generative models
    declare none, and the mean of their token states is the usual choice)."""
    if requested in ("mean", "cls", "last"):
        return requested  # type: ignore[return-value]
    arch = model.meta("general.architecture") or ""
    return _GGUF_POOLING.get(model.meta(f"{arch}.pooling_type") or "", "mean")


class EmbedTask:
    """One embeddings request inside the worker: its inputs, the vectors so far, and the
    callback (from the compute thread) that gets the vectors or the error."""

    __slots__ = ("done", "inputs", "next", "out")

    def __init__(
        self, inputs: list[list[int]], done: Callable[[list[list[float]] | Exception], None]
    ):
        self.inputs = inputs
        self.done = done
        self.next = 0  # first input not yet embedded
        self.out: list[list[float]] = []


class Embedder:
    """Embeds tokenized inputs, packing many into each decode. Compute thread only."""

    def __init__(self, model: NativeModel, *, ctx_size: int, threads: int, pooling: str):
        self.model = model
        self.ctx_size = ctx_size
        self.pooling = model_pooling(model, pooling)
        self.dim: int = llama_cpp.llama_model_n_embd_out(model.ptr) or model.n_embd
        self.ctx = model.new_context(
            n_ctx=ctx_size,
            n_batch=ctx_size,
            n_ubatch=ctx_size,  # a sequence must sit in one ubatch for non-causal models
            n_seq_max=MAX_SEQS_PER_DECODE,
            n_threads=threads,
            n_threads_batch=threads,
            embeddings=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
            kv_unified=True,
            no_perf=True,
        )
        self._batch = llama_cpp.llama_batch_init(ctx_size, 0, 1)

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def step(self, task: EmbedTask, budget: int) -> bool:
        """Embed the task's next inputs, up to `budget` tokens (at least one input) in one
        decode. True when the task has every vector."""
        group: list[list[int]] = []
        used = 0
        inputs = task.inputs
        while task.next < len(inputs) and len(group) < MAX_SEQS_PER_DECODE:
            tokens = inputs[task.next]
            if group and used + len(tokens) > min(budget, self.ctx_size):
                break
            group.append(tokens)
            used += len(tokens)
            task.next += 1
        task.out += self._decode(group)
        return task.next == len(inputs)

    def _decode(self, group: list[list[int]]) -> list[list[float]]:
        b = self._batch
        n = 0
        spans = []
        for seq, tokens in enumerate(group):
            spans.append((n, n + len(tokens)))
            for pos, token in enumerate(tokens):
                b.token[n] = token
                b.pos[n] = pos
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq
                b.logits[n] = 1
                n += 1
        b.n_tokens = n
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise EngineError(f"embedding decode failed (llama_decode returned {rc})")
        ptr = llama_cpp.llama_get_embeddings(self.ctx)
        rows = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n, self.dim)
        )
        out = []
        for start, end in spans:
            if self.pooling == "cls":
                vec = rows[start].astype(np.float64)
            elif self.pooling == "last":
                vec = rows[end - 1].astype(np.float64)
            else:
                vec = rows[start:end].astype(np.float64).mean(axis=0)
            norm = float(np.linalg.norm(vec))
            out.append((vec / norm if norm > 0 else vec).astype(np.float32).tolist())
        return out
