"""An error body's fields in the shape its route's clients read (hearth/api/shapes.py):
Anthropic's under /v1/messages (`type: error` and an object of type and message), Ollama's
under /api/ (a message string with `code` and `param` beside it), OpenAI's elsewhere (one
object under `error`)."""

from __future__ import annotations

from typing import Any


def error_fields(body: Any, path: str) -> dict[str, Any]:
    """{"message", "code", "param"} of an error body, checking its shape on the way (Anthropic's
    has neither code nor param: None)."""
    assert isinstance(body, dict) and "error" in body, body
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"type", "message"}, body
        assert isinstance(error["type"], str) and error["type"], body
        assert isinstance(error["message"], str) and error["message"], body
        return {"message": error["message"], "code": None, "param": None}
    if path.startswith("/api/"):
        assert isinstance(body["error"], str) and body["error"], body
        assert set(body) <= {"error", "code", "param"}, body
        return {"message": body["error"], "code": body.get("code"), "param": body.get("param")}
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    return {"message": error["message"], "code": error["code"], "param": error["param"]}
