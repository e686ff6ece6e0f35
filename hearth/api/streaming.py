"""Server-sent events through a pure ASGI response that notices a client leaving.

When the client disconnects, the stream's iterator is cancelled at once, which cancels the
generation and frees its sequence within one decode step."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hearth.api.shapes import openai_error_body
from hearth.errors import HearthError, RequestCancelled
from hearth.observe.record import current as current_record
from hearth.pipeline.events import KeepAlive

T = TypeVar("T")
log = logging.getLogger("hearth.api")


DONE = b"data: [DONE]\n\n"
KEEP_ALIVE_COMMENT = b": keep-alive\n\n"


class EventStreamResponse(Response):
    """text/event-stream of pydantic objects, ending with `data: [DONE]`. A dialect with other
    framing (NDJSON, named SSE events) overrides `frame`, `frame_error` and `terminator`."""

    content_type = b"text/event-stream; charset=utf-8"
    terminator = DONE
    keep_alive = KEEP_ALIVE_COMMENT

    def __init__(self, items: AsyncIterator[BaseModel | KeepAlive]):
        # Not Response.__init__: that would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", self.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.items = items

    def frame(self, item: BaseModel) -> bytes:
        return b"data: " + item.model_dump_json().encode() + b"\n\n"

    def frame_error(self, exc: HearthError) -> bytes:
        return b"data: " + json.dumps(openai_error_body(exc)).encode() + b"\n\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        sender = asyncio.ensure_future(self._send_items(send))
        try:
            await _race(sender, receive)
        except (RequestCancelled, OSError):  # the client left, or its socket did mid-send
            # Nothing to answer (the response has started, and nobody reads it); the
            # request log says why it ended.
            record = current_record()
            if record is not None:
                record.failed("cancelled", "client_disconnected")

    async def _send_items(self, send: Send) -> None:
        try:
            async for item in self.items:
                body = self.keep_alive if isinstance(item, KeepAlive) else self.frame(item)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except RequestCancelled:
            return
        except HearthError as exc:
            await self._send_error(send, exc)
        except Exception as exc:  # a bug: the client still gets an error and the end of stream
            log.exception("a stream failed")
            await self._send_error(send, HearthError(f"the stream failed: {exc}"))
        finally:
            aclose = getattr(self.items, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": self.terminator, "more_body": False})

    async def _send_error(self, send: Send, exc: HearthError) -> None:
        await send({"type": "http.response.body", "body": self.frame_error(exc), "more_body": True})


def stream_responses(stream: type[EventStreamResponse]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the OpenAPI document: its 200 may also be `stream`'s media
    type (with `stream: true`), documented loosely as text, not event by event."""
    media_type = stream.content_type.split(b";", 1)[0].decode()
    return {200: {"content": {media_type: {"schema": {"type": "string"}}}}}


@contextlib.asynccontextmanager
async def closing(items: AsyncIterator[Any]) -> AsyncIterator[AsyncIterator[Any]]:
    """`items`, closed on the way out (an async generator's `aclose`): the work behind it
    ends now, not when the garbage collector finds it."""
    try:
        yield items
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


class NamedEventStream(EventStreamResponse):
    """SSE with an `event: <type>` line before each data line (Anthropic's and the Responses
    API's framing), no terminator: the stream ends after its last event."""

    terminator = b""

    def frame(self, item: BaseModel) -> bytes:
        kind = getattr(item, "type", "message")
        return f"event: {kind}\ndata: ".encode() + item.model_dump_json().encode() + b"\n\n"


async def _watch_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _race(work: asyncio.Future[T], receive: Receive) -> T:
    """Await work unless the client disconnects first; then cancel it and raise."""
    watcher: asyncio.Future[None] = asyncio.ensure_future(_watch_disconnect(receive))
    try:
        tasks: list[asyncio.Future[Any]] = [work, watcher]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(work, watcher, return_exceptions=True)
    if work.cancelled():
        raise RequestCancelled("the client disconnected")
    return work.result()


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run work; if the client disconnects first, cancel it (and the generation behind it)."""
    return await _race(asyncio.ensure_future(work), request.receive)
