"""Embeddings: texts or token arrays into the model's embedding context, back as vectors
(OpenAI's objects for /v1/embeddings). No FastAPI here: the same service is the in-process
library API."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hearth.api.embeddings.protocol import (
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingUsage,
)
from hearth.engine.base import ConversationEngine, Engine, Usage
from hearth.errors import ContextLengthExceeded, InvalidRequestError
from hearth.models.keepalive import keep_alive_seconds
from hearth.models.manager import LoadedModel, ModelManager
from hearth.observe.record import current as current_record
from hearth.pipeline.prepare import prompt_items, tokenized_items

MAX_INPUTS = 2048  # OpenAI's limit per request


def tokenized_inputs(raw: Any, engine: Engine) -> list[list[int]]:
    """The input field's four shapes as token lists, one per input, checked."""
    return tokenized_items(checked_items(raw), engine, param="input", noun="input")


def checked_items(raw: Any) -> list[Any]:
    """The input field's four shapes as one item per input: none empty, at most 2048."""
    items = prompt_items(raw)
    if not items:
        raise InvalidRequestError("input must not be empty", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequestError(f"at most {MAX_INPUTS} inputs per request", param="input")
    for i, item in enumerate(items):
        if not item:
            kind = "string" if isinstance(item, str) else "token array"
            raise InvalidRequestError(f"input {i} is an empty {kind}", param="input")
    return items


def encode(vector: list[float], fmt: str | None) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


@dataclass(slots=True)
class Embedded:
    """Vectors for every input, and what it took: the tokens read, the time getting the
    model (a load, or a wait for room) in nanoseconds."""

    model: str
    vectors: list[list[float]]
    tokens: int
    load_ns: int


class EmbeddingsService:
    """Embeddings for every dialect (POST /v1/embeddings, Ollama's /api/embed), without
    HTTP."""

    def __init__(self, models: ModelManager):
        self.models = models

    async def create(self, request: EmbeddingRequest) -> CreateEmbeddingResponse:
        """Embeddings of every input as OpenAI's response; bad input raises before any work."""
        out = await self.embed(
            request.model,
            request.input,
            keep_alive=keep_alive_seconds(request.keep_alive),
            dimensions=request.dimensions,
        )
        return CreateEmbeddingResponse(
            data=[
                Embedding(embedding=encode(v, request.encoding_format), index=i)
                for i, v in enumerate(out.vectors)
            ],
            model=out.model,
            usage=EmbeddingUsage(prompt_tokens=out.tokens, total_tokens=out.tokens),
        )

    async def embed(
        self,
        model: str,
        raw: Any,
        *,
        keep_alive: float | None = None,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> Embedded:
        """Vectors of `raw` (a text, texts, token ids or lists of them). An input longer than
        the context is a 400, or with `truncate` is cut to fit."""
        start = time.monotonic_ns()
        # The lease keeps the model loaded (and out of LRU eviction) while the work runs.
        async with self.models.use(model, keep_alive) as lease:
            load_ns = time.monotonic_ns() - start
            vectors, tokens = await self._embed(lease.model, raw, dimensions, truncate)
            record = current_record()
            if record is not None:
                record.add_usage(lease.model.entry.id, Usage(tokens, 0, 0))
            return Embedded(lease.model.entry.id, vectors, tokens, load_ns)

    async def _embed(
        self, loaded: LoadedModel, raw: Any, dimensions: int | None, truncate: bool
    ) -> tuple[list[list[float]], int]:
        engine = loaded.engine
        if not engine.supports_embeddings:
            raise InvalidRequestError(
                f"the model '{loaded.entry.id}' cannot make embeddings", param="model"
            )
        if isinstance(engine, ConversationEngine):  # its server tokenizes and embeds
            items = checked_items(raw)
            result = await engine.embed_inputs(items, dimensions)
            return result.vectors, result.tokens
        # Tokenizing is CPU work (and, with engine children, a call to one): off the loop.
        inputs = await asyncio.to_thread(tokenized_inputs, raw, engine)
        limit = engine.info.ctx_size
        if truncate:
            inputs = [tokens[:limit] for tokens in inputs]
        for i, tokens in enumerate(inputs):
            if len(tokens) > limit:
                raise ContextLengthExceeded(
                    f"input {i} has {len(tokens)} tokens, more than this model's context of "
                    f"{limit} tokens; shorten it or split it",
                    param="input",
                )
        if dimensions is not None and dimensions != engine.info.n_embd:
            raise InvalidRequestError(
                f"this model's embeddings have {engine.info.n_embd} dimensions; "
                f"dimensions={dimensions} cannot be honoured",
                param="dimensions",
            )
        vectors = await engine.embed(inputs)
        return vectors, sum(len(t) for t in inputs)
