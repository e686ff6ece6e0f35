"""The middleware around every request that watches and limits: the request record (for the
metrics and the request log), the rate limit, and the 503s while the server drains.

Pure ASGI (see api/middleware): a stream passes through as it is sent."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.api.middleware import send_error
from hearth.errors import RateLimited, ServiceUnavailable
from hearth.observe import record as rec
from hearth.observe.metrics import Metrics
from hearth.observe.record import RequestRecord
from hearth.observe.requestlog import BODY_LIMIT, RequestLog

# Polled by monitors and the UI: counted nowhere, or they would drown the log.
QUIET = frozenset(
    {"/health", "/metrics", "/status", "/api/requests", "/api/stats", "/api/ps", "/favicon.ico"}
)
QUIET_PREFIX = "/ui/"  # the web UI's own files
# Hearth's own routes under /api/ (the rest of /api/ is Ollama's API).
HEARTH_API = frozenset(
    {"/api/requests", "/api/stats", "/api/settings", "/api/load", "/api/unload", "/api/shutdown"}
)
ERROR_BODY_LIMIT = 16 * 1024


def api_of(path: str) -> str:
    """Which API a path belongs to, for the log and the metrics' labels."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/") and path not in HEARTH_API:
        return "ollama"
    return "hearth"


def error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(type, code) from an error body in any of the three shapes."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    err = data.get("error")
    if isinstance(err, dict):  # OpenAI's and Anthropic's
        kind, code = err.get("type"), err.get("code")
    else:  # Ollama's: the message is the error, Hearth's code beside it
        kind, code = None, data.get("code")
    return (
        kind if isinstance(kind, str) else None,
        code if isinstance(code, str) else None,
    )


class ObserveMiddleware:
    """Opens the request's record (hearth.observe.record) for the code below to fill in, and
    hands it to the metrics and the request log once the response has ended."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics | None, log: RequestLog | None, bodies: bool
    ):
        self.app = app
        self.metrics = metrics
        self.log = log
        self.bodies = bodies and log is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if (
            scope["type"] != "http"
            or path in QUIET
            or path.startswith(QUIET_PREFIX)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        client = scope.get("client")
        record = RequestRecord(
            request_id=state.get("request_id", ""),
            method=scope["method"],
            path=path,
            client=client[0] if client else None,
        )
        bodies = self.bodies
        error_body = bytearray()
        inbound = bytearray()
        outbound = bytearray()

        async def watching_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(inbound) <= BODY_LIMIT:
                inbound.extend(message.get("body", b""))
            return message

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if record.status >= 400 and len(error_body) < ERROR_BODY_LIMIT:
                    error_body.extend(chunk)
                if bodies and len(outbound) <= BODY_LIMIT:
                    outbound.extend(chunk)
            await send(message)

        token = rec.begin(record)
        try:
            await self.app(scope, watching_receive if bodies else receive, watching_send)
        except BaseException:
            if record.status == 0:
                record.status = 500
            raise
        finally:
            rec.end(token)
            self._done(scope, record, bytes(error_body), inbound, outbound)

    def _done(
        self,
        scope: Scope,
        record: RequestRecord,
        error_body: bytes,
        inbound: bytearray,
        outbound: bytearray,
    ) -> None:
        latency = time.perf_counter() - record.started
        route_obj = scope.get("route")
        # The template keeps the labels few; a path no route matched is one label.
        route = getattr(route_obj, "path", None) or "unmatched"
        api = api_of(record.path)
        if record.status >= 400 and record.error_type is None:
            record.failed(*error_fields(error_body))
        record.api_key_name = scope.get("state", {}).get("api_key_name")
        if self.metrics is not None:
            self.metrics.request_done(record, api, route, latency)
        if self.log is not None:
            if self.bodies:
                record.request_body = bytes(inbound)
                record.output = bytes(outbound)
            self.log.add(record, api, route, latency)


class RateLimitMiddleware:
    """--rate-limit: at most `count` requests per `window` seconds for each API key (by its
    name) or, without keys, each client address. Fixed windows: cheap, and Retry-After is
    exactly when the window turns."""

    EXEMPT = frozenset({"/health", "/metrics"})
    MAX_TRACKED = 100_000  # identities remembered; the oldest windows go first

    def __init__(
        self,
        app: ASGIApp,
        *,
        count: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.count = count
        self.window = window
        self.clock = clock
        self._windows: dict[str, list[Any]] = {}  # identity -> [window start, requests]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        state = scope.get("state", {})
        client = scope.get("client")
        who = state.get("api_key_name") or (client[0] if client else "?")
        now = self.clock()
        slot = self._windows.get(who)
        if slot is None or now - slot[0] >= self.window:
            if len(self._windows) >= self.MAX_TRACKED:
                self._forget(now)
            slot = self._windows[who] = [now, 0]
        if slot[1] >= self.count:
            wait = max(1, math.ceil(slot[0] + self.window - now))
            err = RateLimited(
                f"rate limit of {self.count} requests per {self.window:g}s exceeded; "
                f"retry in {wait}s",
                retry_after=wait,
            )
            await send_error(scope, send, err, [])
            return
        slot[1] += 1
        await self.app(scope, receive, send)

    def _forget(self, now: float) -> None:
        for who in [w for w, s in self._windows.items() if now - s[0] >= self.window]:
            del self._windows[who]
        while len(self._windows) >= self.MAX_TRACKED:
            del self._windows[next(iter(self._windows))]


class DrainMiddleware:
    """While the server shuts down, new requests get 503 (running ones go on)."""

    def __init__(self, app: ASGIApp, draining: Callable[[], bool]):
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.draining() and scope["path"] != "/health":
            err = ServiceUnavailable("the server is shutting down")
            await send_error(scope, send, err, [(b"connection", b"close")])
            return
        await self.app(scope, receive, send)
