"""Newline-delimited JSON streams (Ollama's progress format) through a pure ASGI response.

Like the SSE response, it cancels the work behind the stream when the client disconnects; an
error after the stream started is one `{"error": {...}}` line in OpenAI's error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pydantic import BaseModel
from starlette.types import Send

from hearth.api.streaming import EventStreamResponse, error_body
from hearth.errors import HearthError, RequestCancelled


class NdjsonResponse(EventStreamResponse):
    """application/x-ndjson: one pydantic object per line."""

    media_type = "application/x-ndjson"

    def __init__(self, items: AsyncIterator[BaseModel]):
        super().__init__(items)
        self.raw_headers[0] = (b"content-type", b"application/x-ndjson")

    async def _send_items(self, send: Send) -> None:
        try:
            async for item in self.items:
                assert isinstance(item, BaseModel)
                body = item.model_dump_json(exclude_none=True).encode() + b"\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except RequestCancelled:
            return
        except HearthError as exc:
            line = json.dumps(error_body(exc)).encode() + b"\n"
            await send({"type": "http.response.body", "body": line, "more_body": True})
        finally:
            aclose = getattr(self.items, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
