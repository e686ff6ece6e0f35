"""Which error shape a route's clients read: Anthropic's under /v1/messages, Ollama's under
/api/, OpenAI's everywhere else. Every error response (handlers, middleware, a stream's error
line) picks its body here."""

from __future__ import annotations

from typing import Any

from hearth.api.anthropic.protocol import error_body as anthropic_error_body
from hearth.errors import HearthError, ModelNotFound


def openai_error_body(exc: HearthError) -> dict[str, Any]:
    return {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }


def ollama_error_body(exc: HearthError) -> dict[str, Any]:
    """Ollama's `{"error": "..."}` (its clients read only that string), with Hearth's `code`
    and, where one field is to blame, `param` beside it."""
    message = exc.message
    if isinstance(exc, ModelNotFound):
        message = f'model "{exc.model}" not found, try pulling it first'
    body: dict[str, Any] = {"error": message, "code": exc.code}
    if exc.param is not None:
        body["param"] = exc.param
    return body


def error_body(exc: HearthError, path: str = "") -> dict[str, Any]:
    """The body of an error response to a request for `path`."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic_error_body(exc)
    if path.startswith("/api/"):
        return ollama_error_body(exc)
    return openai_error_body(exc)
