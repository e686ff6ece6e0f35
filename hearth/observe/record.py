"""The record of one request, filled in as it runs: the middleware opens it, the pipeline
and the services add the model, the token counts and the first token's time, and when the
response has ended it goes to the metrics and the request log."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

from hearth.engine.base import Usage


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    client: str | None
    started: float = field(default_factory=time.perf_counter)
    wall: float = field(default_factory=time.time)
    route: str | None = None  # the route's template, once routing has run
    model: str | None = None  # the model that served it (metrics' label: a known one only)
    asked_model: str | None = None  # what the client named, for the log when none served
    status: int = 0
    error_type: str | None = None
    error_code: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    draft_proposed: int = 0
    draft_accepted: int = 0
    ttft: float | None = None  # seconds from arrival to the first generated token
    api_key_name: str | None = None
    request_body: bytes | None = None
    output: bytes | None = None

    def add_usage(self, model: str, usage: Usage) -> None:
        """A generation's (or an embedding's) token counts; several add up."""
        self.model = model
        self.prompt_tokens = (self.prompt_tokens or 0) + usage.prompt_tokens
        self.cached_tokens = (self.cached_tokens or 0) + usage.cached_tokens
        self.completion_tokens = (self.completion_tokens or 0) + usage.completion_tokens
        self.draft_proposed += usage.draft_proposed
        self.draft_accepted += usage.draft_accepted

    def first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started

    def failed(self, error_type: str | None, code: str | None) -> None:
        """An error the client was told of (a stream's error event included)."""
        if self.error_type is None:
            self.error_type, self.error_code = error_type, code


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "hearth_request", default=None
)


def current() -> RequestRecord | None:
    """The record of the request this code runs for; None outside a request (the library)."""
    return _current.get()


def begin(record: RequestRecord) -> contextvars.Token[RequestRecord | None]:
    return _current.set(record)


def end(token: contextvars.Token[RequestRecord | None]) -> None:
    _current.reset(token)
