"""The messages between the server and an engine child, in one place.

Pickled over the child's stdin (server to child) and a private copy of its stdout (child to
server) with multiprocessing's length-prefixed framing. The child sends one `Events` message
per decode step, carrying every job's events of that step; the server sends each request's
work and cancellation. Answers to calls come back on a pipe of their own, so a caller waits
on it directly, whichever thread (or event loop) reads the events. Both sides run the same
installed Hearth, and the child checks the version in `Load` before anything else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hearth.engine.base import GenerationRequest, ModelInfo

if TYPE_CHECKING:
    from hearth.engine.llamacpp.common import EngineOptions

VERSION = 2

# -- server to child ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """The first message: which model to load, and how."""

    version: int
    model_id: str
    path: Path
    options: EngineOptions
    log_level: int


@dataclass(frozen=True, slots=True)
class Generate:
    key: int
    request: GenerationRequest
    first_index: int


@dataclass(frozen=True, slots=True)
class Cancel:
    key: int


@dataclass(frozen=True, slots=True)
class Embed:
    key: int
    inputs: list[list[int]]


# What the server asks of the child and waits for; the child's command thread answers at
# once, even while the compute thread is inside a decode.
CallName = Literal["tokenize", "detokenize", "grammar_parses", "status"]


@dataclass(frozen=True, slots=True)
class Call:
    key: int
    name: CallName
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Share:
    """Decode with 1/share of the configured threads (share = engines computing at once)."""

    share: int


@dataclass(frozen=True, slots=True)
class Handover:
    """Asks for `HandedOver` on the events pipe: the server's reader thread stops at it and
    an event loop reads the events from there on."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Fail what is running, free everything, exit."""


# -- child to server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    info: ModelInfo


@dataclass(frozen=True, slots=True)
class LoadFailed:
    error: Exception  # a HearthError where the child knew what went wrong


@dataclass(frozen=True, slots=True)
class Events:
    """One decode step: (job key, event or HearthError) in the order they happened."""

    items: list[tuple[int, Any]]


@dataclass(frozen=True, slots=True)
class Embedded:
    key: int
    result: list[list[float]] | Exception


@dataclass(frozen=True, slots=True)
class HandedOver:
    """The reply to Handover, after every event sent before it."""


@dataclass(frozen=True, slots=True)
class Answer:
    key: int
    result: Any  # the call's result, or the Exception it raised
