"""Newline-delimited JSON streams (Ollama's progress format) through a pure ASGI response.

Like the SSE response, it cancels the work behind the stream when the client disconnects; an
error after the stream started is one `{"error": "..."}` line, as Ollama's clients read it."""

from __future__ import annotations

import json

from pydantic import BaseModel

from hearth.api.shapes import ollama_error_body
from hearth.api.streaming import EventStreamResponse
from hearth.errors import HearthError


class NdjsonResponse(EventStreamResponse):
    """application/x-ndjson: one pydantic object per line, nothing after the last."""

    content_type = b"application/x-ndjson"
    terminator = b""
    keep_alive = b""

    def frame(self, item: BaseModel) -> bytes:
        return item.model_dump_json(exclude_none=True).encode() + b"\n"

    def frame_error(self, exc: HearthError) -> bytes:
        return json.dumps(ollama_error_body(exc)).encode() + b"\n"
