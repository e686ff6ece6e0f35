"""The engine contract the HTTP layer and the library use; llama.cpp is one backend behind it."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hearth.errors import InvalidRequestError

if TYPE_CHECKING:
    from hearth.pipeline.events import Event as OutputEvent
    from hearth.pipeline.request import ConversationRequest

FinishReason = Literal["stop", "length"]
# How a sequence drafts tokens for speculative decoding: not at all, by prompt lookup, or with
# a small draft model.
SpecMode = Literal["none", "ngram", "draft"]

DEFAULT_CTX_SIZE = 4096  # per sequence, for a model whose file does not say its trained context


def resolve_ctx_size(requested: int | None, trained: int | None) -> int:
    """Tokens one sequence may hold: as asked, else the trained context. (A server's runtime
    always asks: it plans the size against its memory budget, hearth.models.memory.)"""
    return requested or trained or DEFAULT_CTX_SIZE


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Resolved sampling settings for one sequence (no field is 'unset' here)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(slots=True)
class GenerationRequest:
    """One generation: a tokenized prompt and how to continue it."""

    prompt: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    # None: no logprobs; k >= 0: the sampled token's logprob and the k most likely alternatives.
    logprobs: int | None = None
    ignore_eos: bool = False
    # Speculative decoding; None means the server's default.
    speculative: SpecMode | None = None
    draft_max: int | None = None
    # GBNF the output must follow (root rule `root`); None: unconstrained.
    grammar: str | None = None
    # Control tokens written into the output as text (markers such as [TOOL_CALLS] that the
    # output parsers look for); other control tokens stay invisible.
    keep_special: frozenset[int] = frozenset()
    # Set by Engine.check: generate() does not check (and parse the grammar) a second time.
    checked: bool = False
    # time.monotonic() past which the generation fails with RequestTimeout (--request-timeout).
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top: list[TopLogprob]


@dataclass(slots=True)
class PromptProgress:
    """Part of the prompt was read; lets streams send keep-alives during long prompts."""

    processed: int
    total: int


@dataclass(slots=True)
class TextDelta:
    """New text for one choice (may cover several tokens, or part of one)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class ChoiceFinished:
    index: int
    finish_reason: FinishReason
    completion_tokens: int
    # The stop string that ended the choice; None with "stop" means an end-of-generation token.
    stop_sequence: str | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    draft_proposed: int = 0
    draft_accepted: int = 0


@dataclass(slots=True)
class GenerationFinished:
    """Always the last event of a successful generation."""

    usage: Usage


Event = PromptProgress | TextDelta | ChoiceFinished | GenerationFinished


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the API needs to know of a loaded model."""

    id: str
    path: str
    n_ctx_train: int
    ctx_size: int
    n_vocab: int
    n_params: int
    size_bytes: int
    architecture: str
    description: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    sampling_defaults: dict[str, float | int]
    n_embd: int = 0  # size of this model's embeddings (0: it makes none)
    # Fill-in-the-middle tokens (prefix, suffix, middle) as llama.cpp's vocabulary knows them
    # (from the GGUF's keys or the tokens' text); None: the model cannot fill in.
    fim: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class SlotStatus:
    id: int
    state: Literal["idle", "prompt", "generating"]
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """One base URL of an upstream model."""

    url: str
    up: bool
    in_flight: int
    requests: int
    errors: int
    latency_seconds: float  # to response headers, summed over `requests`
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    slots: list[SlotStatus]
    queued: int
    requests_served: int
    # Where the time goes: llama_decode vs the Python around it, per decode step.
    steps: int = 0
    decode_seconds: float = 0.0
    step_seconds: float = 0.0
    draft_proposed: int = 0
    draft_accepted: int = 0
    cache_entries: int = 0
    cache_bytes: int = 0
    cache_hits: int = 0
    embed_decodes: int = 0
    pid: int = 0  # the process that computes for this model
    decode_threads: list[int] = field(default_factory=list)  # threads that ran its decodes
    threads: int = 0  # threads its decodes use now (fewer while other engines compute too)
    upstreams: list[UpstreamStatus] = field(default_factory=list)  # an upstream model's URLs


class Engine(abc.ABC):
    """A loaded model that can generate. Backends set the capability attributes."""

    supports_embeddings: bool = False
    info: ModelInfo

    @abc.abstractmethod
    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Reject a request that cannot run (context, grammar) before any work; resolve
        max_tokens. Any n runs: choices beyond the free sequences wait for them."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream the events of one generation; cancelling the iteration cancels the work."""

    @abc.abstractmethod
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Text to token ids; special-token text is parsed as special tokens."""

    def tokenize_many(self, texts: list[str], *, add_special: bool = True) -> list[list[int]]:
        """Several texts at once (one round trip where the tokenizer is remote)."""
        return [self.tokenize(t, add_special=add_special) for t in texts]

    @abc.abstractmethod
    def detokenize(self, tokens: list[int]) -> str:
        """Token ids to text."""

    def count_text(self, text: str) -> int:
        """Tokens in a piece of output text (reasoning's share of the usage)."""
        return len(self.tokenize(text, add_special=False))

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Pooled, L2-normalised embeddings of tokenized inputs, each within info.ctx_size."""
        raise InvalidRequestError(
            f"the model '{self.info.id}' cannot make embeddings", param="model"
        )

    @abc.abstractmethod
    def status(self) -> EngineStatus:
        """A snapshot of the engine's sequences and queue."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the worker and free native memory; pending requests fail."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop that serves this engine's callers (the model manager's); an engine
        may read its results there. By default nothing changes."""
        return

    def watch(self, on_crash: Callable[[str], None]) -> None:
        """Have on_crash(reason) called, from any thread, if the engine dies by itself (at
        once if it already has). An engine in the server's own process cannot outlive it, so
        by default nothing is watched."""
        return


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    estimated: bool = False  # the backend could not count, so this is a guess


class ConversationEngine(Engine):
    """A model served by another server, which takes whole conversations: it applies its own
    chat template, tokenizer, tool-call and reasoning parsing, and answers with parsed parts.
    The pipeline hands it the request itself; token-level generation does not apply."""

    remote = True

    @abc.abstractmethod
    def converse(self, request: ConversationRequest) -> AsyncGenerator[OutputEvent, None]:
        """The request's neutral output events. The first is a `Progress` as soon as the
        server accepted the request; anything it refused raises before that."""

    @abc.abstractmethod
    async def embed_inputs(self, inputs: list[Any], dimensions: int | None) -> EmbedResult:
        """Embeddings of texts or token-id lists, L2-normalised, and the tokens read."""

    @abc.abstractmethod
    async def count(self, request: ConversationRequest) -> TokenCount:
        """The conversation's prompt tokens as the server counts them, or an estimate."""

    def check(self, request: GenerationRequest) -> GenerationRequest:
        raise InvalidRequestError(
            f"the model '{self.info.id}' runs on an upstream server: it takes conversations "
            "and prompts, not token-level generations",
            param="model",
        )

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.check(request)
        raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class EmbedResult:
    vectors: list[list[float]]
    tokens: int
