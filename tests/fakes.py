"""A deterministic fake engine for fast protocol tests: what the API layer makes of engine events
(wire shapes, validation, errors, SSE framing, model lifecycle). It never stands in for the
engine: generation itself (sampling, stops, n, batching, cancellation, keep-alives, errors in
one request) is tested end to end against the starter model in tests/e2e."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from hearth.engine.base import (
    ChoiceFinished,
    Engine,
    EngineStatus,
    Event,
    GenerationFinished,
    GenerationRequest,
    ModelInfo,
    PromptProgress,
    SlotStatus,
    TextDelta,
    Usage,
)
from hearth.engine.stops import StopMatcher
from hearth.errors import ContextLengthExceeded, RequestTimeout
from hearth.models.registry import ModelEntry

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


class FakeEngine(Engine):
    """Words are tokens: token i is WORDS[i % 8] followed by a space. A test may queue whole
    replies in `replies` (sent in 3-character pieces); prompts and requests are recorded."""

    supports_embeddings = True

    def __init__(self, entry: ModelEntry, ctx_size: int = 256, parallel: int = 4):
        self.parallel = parallel
        self.info = ModelInfo(
            id=entry.id,
            path=str(entry.path),
            n_ctx_train=ctx_size,
            ctx_size=ctx_size,
            n_vocab=1000,
            n_params=1,
            size_bytes=entry.size_bytes,
            architecture="fake",
            description="fake",
            chat_template=None,
            bos_token="",
            eos_token="",
            add_bos=False,
            sampling_defaults={},
            n_embd=8,
            fim=(997, 998, 999),
        )
        self.active = 0
        self.closed = False
        self.requests: list[GenerationRequest] = []  # every generation, for tests of sampling
        self.gate: asyncio.Event | None = None  # when set up, each token waits for it
        self.replies: list[str] = []  # scripted outputs, replayed in order
        self.prompts: list[str] = []  # texts tokenized as prompts (with special tokens)
        self.fail_with: Exception | None = None  # raised after the first text, when set

    async def _wait_gate(self, request: GenerationRequest) -> None:
        """The gate, until the request's deadline (as the real engines time out)."""
        assert self.gate is not None
        if request.deadline is None:
            await self.gate.wait()
            return
        try:
            await asyncio.wait_for(self.gate.wait(), max(0.0, request.deadline - time.monotonic()))
        except TimeoutError:
            raise RequestTimeout("the request took longer than the request timeout") from None

    def check(self, request: GenerationRequest) -> GenerationRequest:
        # The real engine's rule: the prompt must leave room; a cap past the room is cut
        # to it, one past the whole context is refused.
        room = self.info.ctx_size - len(request.prompt)
        if room <= 0:
            raise ContextLengthExceeded("too long", param="messages")
        if request.max_tokens is not None and request.max_tokens > self.info.ctx_size:
            raise ContextLengthExceeded("max_tokens past the context", param="max_tokens")
        request.max_tokens = min(request.max_tokens or room, room)
        return request

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.check(request)
        self.requests.append(request)
        if self.replies:
            async for event in self._replay(request, self.replies.pop(0)):
                yield event
            return
        self.active += 1
        try:
            yield PromptProgress(len(request.prompt), len(request.prompt))
            total = 0
            for index in range(request.n):
                stops = StopMatcher(request.stop)
                assert request.max_tokens is not None
                produced = 0
                reason: str = "length"
                for i in range(request.max_tokens):
                    await asyncio.sleep(0)
                    if self.gate is not None:
                        await self._wait_gate(request)
                    produced += 1
                    text, stopped = stops.feed(WORDS[(i + index) % 8] + " ")
                    if text:
                        yield TextDelta(index, text)
                        if self.fail_with is not None:
                            raise self.fail_with
                    if stopped:
                        reason = "stop"
                        break
                else:
                    tail = stops.flush()
                    if tail:
                        yield TextDelta(index, tail)
                total += produced
                matched = stops.matched if reason == "stop" else None
                yield ChoiceFinished(index, reason, produced, matched)  # type: ignore[arg-type]
            yield GenerationFinished(Usage(len(request.prompt), total, 0))
        finally:
            self.active -= 1

    async def _replay(self, request: GenerationRequest, reply: str) -> AsyncIterator[Event]:
        pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
        for index in range(request.n):
            for piece in pieces:
                await asyncio.sleep(0)
                yield TextDelta(index, piece)
            yield ChoiceFinished(index, "stop", len(pieces))
        yield GenerationFinished(Usage(len(request.prompt), len(pieces) * request.n, 0))

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        # Counts of token ids mod 8, normalised: deterministic and order-independent.
        out = []
        for tokens in inputs:
            counts = [0.0] * 8
            for t in tokens:
                counts[t % 8] += 1.0
            norm = sum(c * c for c in counts) ** 0.5
            out.append([c / norm for c in counts])
        return out

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if add_special:
            self.prompts.append(text)
        return [len(w) for w in text.split()] or [0]

    def detokenize(self, tokens: list[int]) -> str:
        return " ".join(WORDS[t % 8] for t in tokens)

    def status(self) -> EngineStatus:
        return EngineStatus(
            slots=[SlotStatus(i, "idle", 0) for i in range(self.parallel)],
            queued=0,
            requests_served=0,
        )

    def close(self) -> None:
        self.closed = True
