"""The dialect-neutral output of a generation, and the whole answer gathered from it.

Per choice: `Output` (pieces of parsed text: content, reasoning, tool-call start / argument
pieces / end, with the tokens' logprobs), then one `Finished`. `Progress` while a prompt is
read (streams send keep-alives), and `Done` last, with usage and timings. A dialect renders
these; a full (non-streamed) answer is `collect` of the same events, so the two agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from hearth.chat.output import MessageParts
from hearth.chat.pieces import Piece
from hearth.engine.base import TokenLogprob, Usage

# stop: an end-of-generation token or a stop string (Finished.stop_sequence says which);
# length: max_tokens or the context; tool_calls: it stopped after calling tools; cancelled:
# the server ended it (its model was unloaded); error: the engine failed.
FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]


@dataclass(slots=True)
class Output:
    """More of one choice."""

    index: int
    pieces: list[Piece]
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class Finished:
    """One choice is complete. After `cancelled` or `error` the exception itself follows."""

    index: int
    reason: FinishReason
    completion_tokens: int = 0
    stop_sequence: str | None = None  # the stop string that ended it (reason "stop")


@dataclass(slots=True)
class Progress:
    """Part of the prompt was read."""

    processed: int
    total: int


@dataclass(slots=True)
class Timings:
    """Where the request's time went, in nanoseconds: getting the model (a load, or a wait
    for room), reading the prompt (until the first token), and generating after it."""

    load_ns: int = 0
    prompt_ns: int = 0
    generation_ns: int = 0


@dataclass(slots=True)
class Done:
    """The last event of a generation that completed."""

    usage: Usage
    timings: Timings


Event = Output | Finished | Progress | Done


class KeepAlive:
    """What a dialect's stream yields for `Progress`: its HTTP framing sends its own
    keep-alive (an SSE comment; nothing in NDJSON)."""

    __slots__ = ()


KEEP_ALIVE = KeepAlive()


@dataclass(slots=True)
class ChoiceResult:
    """One choice gathered whole."""

    parts: MessageParts = field(default_factory=MessageParts)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: Finished | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts.content)


@dataclass(slots=True)
class Result:
    """A whole answer: every choice, usage and timings."""

    choices: list[ChoiceResult]
    usage: Usage
    timings: Timings


async def collect(events: AsyncIterator[Event], choices: int) -> Result:
    """The full answer from the stream's events (an exception in the stream propagates)."""
    out = [ChoiceResult() for _ in range(choices)]
    done: Done | None = None
    async for event in events:
        if isinstance(event, Output):
            out[event.index].parts.add(event.pieces)
            if event.logprobs:
                out[event.index].logprobs.extend(event.logprobs)
        elif isinstance(event, Finished):
            out[event.index].finish = event
        elif isinstance(event, Done):
            done = event
    if done is None:  # the engine contract ends every completed generation with its usage
        raise RuntimeError("the generation ended without its usage")
    return Result(out, done.usage, done.timings)
