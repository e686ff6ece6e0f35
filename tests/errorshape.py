"""An error body's fields in either shape a test meets: Ollama's under /api/ (a message
string with `code` and `param` beside it) or OpenAI's (one object under `error`)."""

from __future__ import annotations

from typing import Any


def error_fields(body: Any, path: str) -> dict[str, Any]:
    """{"message", "code", "param"} of an error body, checking its shape on the way."""
    assert isinstance(body, dict) and "error" in body, body
    if path.startswith("/api/"):
        assert isinstance(body["error"], str) and body["error"], body
        assert set(body) <= {"error", "code", "param"}, body
        return {"message": body["error"], "code": body.get("code"), "param": body.get("param")}
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    return {"message": error["message"], "code": error["code"], "param": error["param"]}
