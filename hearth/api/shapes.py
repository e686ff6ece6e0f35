"""Which error shape a route's clients read: Anthropic's under /v1/messages, OpenAI's
everywhere else. Every error response (handlers, middleware) picks its body here."""

from __future__ import annotations

from typing import Any

from hearth.api.anthropic.protocol import error_body as anthropic_error_body
from hearth.errors import HearthError


def openai_error_body(exc: HearthError) -> dict[str, Any]:
    return {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }


def error_body(exc: HearthError, path: str = "") -> dict[str, Any]:
    """The body of an error response to a request for `path`."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic_error_body(exc)
    return openai_error_body(exc)
