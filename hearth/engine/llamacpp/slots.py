"""What the worker keeps per request (Job) and per llama.cpp sequence (Slot)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from hearth.engine.base import GenerationRequest, SpecMode, TokenLogprob
from hearth.engine.detok import Utf8Stream
from hearth.engine.llamacpp.sampler import GrammarSampler
from hearth.engine.stops import StopMatcher
from hearth.engine.tokens import NgramIndex


class Job:
    """One request, or one group of its choices, inside the worker: its n choices and the
    channel back to its caller. A request with more choices than sequences is split into
    several jobs that share one queue; `first_index` is the first choice's index in the request.
    In an engine child there is no loop or queue: `key` names the job to the parent."""

    __slots__ = (
        "cached_tokens",
        "cancelled",
        "completion_tokens",
        "draft_accepted",
        "draft_proposed",
        "finished",
        "first_index",
        "key",
        "loop",
        "open_choices",
        "queue",
        "queued_at",
        "request",
    )

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop | None,
        queue: asyncio.Queue[Any] | None = None,
        first_index: int = 0,
        key: int = 0,
    ):
        self.request = request
        self.loop = loop
        self.queue = queue
        self.first_index = first_index
        self.key = key
        # Set from the event loop when the caller goes away; read by the worker every step.
        self.cancelled = False
        self.finished = False
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.open_choices = request.n
        self.draft_proposed = 0
        self.draft_accepted = 0
        self.queued_at = 0.0  # time.monotonic() when the worker took it

    def cancel(self) -> None:
        """Stop the job at the worker's next step."""
        self.cancelled = True


class Slot:
    """One llama.cpp sequence and, while busy, the choice of a job it decodes."""

    __slots__ = (
        "batch_idx",
        "cached",
        "decoder",
        "donor",
        "draft",
        "draft_len",
        "draft_max",
        "grammar",
        "index",
        "job",
        "max_tokens",
        "n_generated",
        "n_verify",
        "next_token",
        "ngram",
        "out_logprobs",
        "out_text",
        "pending_logprobs",
        "phase",
        "prompt_pos",
        "sampler",
        "seq",
        "share_at",
        "spec",
        "stops",
    )

    def __init__(self, seq: int):
        self.seq = seq
        self.cached: list[int] = []  # tokens whose KV this sequence holds, positions 0..n-1
        self.job: Job | None = None
        # wait: the prompt's start is being computed by another sequence (`donor`), whose KV
        # it copies once that one has read `share_at` tokens (see Worker._place).
        self.phase: Literal["idle", "wait", "prompt", "follow", "generating"] = "idle"
        self.donor: Slot | None = None
        self.share_at = 0
        self.index = 0
        self.prompt_pos = 0
        self.next_token = -1
        self.batch_idx = -1
        self.n_generated = 0
        self.max_tokens = 0
        self.sampler: Any = None
        self.grammar: GrammarSampler | None = None  # set when the output must follow a grammar
        self.decoder = Utf8Stream()
        self.stops = StopMatcher([])
        self.pending_logprobs: list[TokenLogprob] = []
        # Speculative decoding: drafts to verify this step, and how they are made.
        self.spec: SpecMode = "none"
        self.draft_max = 0
        self.draft_len = 0  # current window, adapted to how many drafts verify (<= draft_max)
        self.draft: list[int] = []
        self.n_verify = 1
        self.ngram = NgramIndex()
        # Text and logprobs produced this step, sent as one delta.
        self.out_text: list[str] = []
        self.out_logprobs: list[TokenLogprob] = []
