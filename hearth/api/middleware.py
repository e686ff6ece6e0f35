"""Pure ASGI middleware: request ids, body size limit, JSON body checks (API keys and the
Host check: api/security). Pure ASGI so that streamed responses pass through untouched and
without extra buffering."""

from __future__ import annotations

import json
import re
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.api.jsonscan import MAX_JSON_DEPTH, JsonBodyScan
from hearth.api.shapes import error_body
from hearth.errors import HearthError, InvalidRequestError, RequestTooLarge


async def send_error(
    scope: Scope, send: Send, exc: HearthError, extra: list[tuple[bytes, bytes]]
) -> None:
    """An error response from middleware, in the route's API shape (Retry-After with a 429
    or a 503, as the app's handlers add it)."""
    body = json.dumps(error_body(exc, scope["path"])).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status_code in (429, 503):
        headers.append((b"retry-after", str(getattr(exc, "retry_after", 5)).encode()))
    await send(
        {"type": "http.response.start", "status": exc.status_code, "headers": headers + extra}
    )
    await send({"type": "http.response.body", "body": body})


class BodyRejected(HTTPException):
    """Raised from `receive` while the app reads the body: FastAPI lets HTTPException through
    its body parsing (anything else there becomes a bare 400), and the app's HTTP error
    handler renders `error`."""

    def __init__(self, error: HearthError):
        super().__init__(status_code=error.status_code, detail=error.message)
        self.error = error


# Ollama's blob upload (POST /api/blobs/sha256:<hex>): a GGUF of gigabytes, not JSON. Its route
# streams the body to disk itself, so the size limit and the JSON checks skip exactly it.
_BLOB_UPLOAD = re.compile(r"/api/blobs/[^/]+")


def is_blob_upload(scope: Scope) -> bool:
    """Whether the request is the one route whose body is a model file."""
    return scope["method"] == "POST" and _BLOB_UPLOAD.fullmatch(scope["path"]) is not None


class RequestIdMiddleware:
    """Every response carries X-Request-Id: the client's own if it sent one, else a new one."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id" and 0 < len(value) <= 128:
                request_id = value
                break
        if not request_id:
            request_id = uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_blob_upload(scope):
            await self.app(scope, receive, send)
            return
        error = RequestTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_error(scope, send, error, [(b"connection", b"close")])
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside body parsing, it reaches the app's error handler as a 413.
                    raise BodyRejected(error)
            return message

        await self.app(scope, counting_receive, send)


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI reads this body as JSON: no content type, or a JSON one."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind in (b"", b"application/json") or (
                kind.startswith(b"application/") and kind.endswith(b"+json")
            )
    return True


class JsonBodyCheckMiddleware:
    """Refuses with a 400 a JSON body JsonBodyScan finds a problem in, as it streams in (no
    buffering): raised inside body parsing, so before json.loads runs, and rendered by the app."""

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_blob_upload(scope) or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        scan = JsonBodyScan(self.max_depth)

        async def checking_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                final = not message.get("more_body", False)
                problem = scan.feed(message.get("body", b""), final)
                if problem:
                    raise BodyRejected(InvalidRequestError(problem, code="invalid_json"))
            return message

        await self.app(scope, checking_receive, send)
