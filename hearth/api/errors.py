"""The one place errors become HTTP responses, in the shape of the route's API (api/shapes)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from hearth.api.middleware import BodyRejected
from hearth.api.shapes import error_body
from hearth.errors import (
    HearthError,
    InvalidRequestError,
    MethodNotAllowed,
    NotFoundError,
    RequestTooLarge,
)

log = logging.getLogger("hearth.api")


def error_response(
    exc: HearthError, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    return JSONResponse(error_body(exc, path), status_code=exc.status_code, headers=headers)


# Pydantic names the member of a union a value failed in ('str', 'list[int]'); not a field.
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict"}


def _param(loc: tuple[Any, ...], body: Any = None) -> str | None:
    parts = [
        p
        for p in loc
        if p not in ("body", "query", "path")
        and not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))
    ]
    if loc[:1] == ("body",) and isinstance(body, dict | list):
        parts = _in_body(parts, body)
    return ".".join(str(p) for p in parts) or None


def _in_body(parts: list[Any], body: Any) -> list[Any]:
    """The steps of `parts` that are in the body the client sent. A tagged union's tag
    ('json_schema' in response_format.json_schema.json_schema.schema) is not; a field
    missing from an object, the last step, is kept."""
    kept: list[Any] = []
    node = body
    for k, part in enumerate(parts):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif k < len(parts) - 1 or not isinstance(node, dict):
            continue
        kept.append(part)
    return kept


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    """FastAPI's 422 becomes a 400 naming the first offending parameter."""
    errors = list(exc.errors())
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return InvalidRequestError(
            f"the request body is not valid JSON: {detail}".strip(), code="invalid_json"
        )
    param = _param(tuple(first.get("loc", ())), exc.body)
    if first.get("type") == "missing":
        message = f"missing required parameter '{param}'"
    elif param:
        # Our own validators' messages, without pydantic's "Value error, " in front.
        error = first.get("ctx", {}).get("error") if first.get("type") == "value_error" else None
        message = f"invalid value for '{param}': {error or first.get('msg')}"
    else:
        message = str(first.get("msg", "invalid request"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidRequestError(message, param=param)


def install_error_handlers(app: FastAPI) -> None:
    async def on_hearth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HearthError)
        retry_after = getattr(exc, "retry_after", 5)
        headers = {"retry-after": str(retry_after)} if exc.status_code in (429, 503) else None
        return error_response(exc, headers, request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc), path=request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        err: HearthError
        if isinstance(exc, BodyRejected):
            err = exc.error
        elif exc.status_code == 404:
            err = NotFoundError("no such route")
        elif exc.status_code == 413:
            err = RequestTooLarge("the request body is over the size limit")
        elif exc.status_code == 405:
            err = MethodNotAllowed("this route does not accept that HTTP method")
        elif exc.status_code == 400:
            # FastAPI's bare 400 for a body its JSON parser raised on (a number past Python's
            # 4300-digit limit): the client's doing, so never a 500.
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            err = InvalidRequestError(
                f"the request body could not be read{cause}", code="invalid_json"
            )
        elif exc.status_code < 500:
            err = InvalidRequestError(str(exc.detail))
            err.status_code = exc.status_code
        else:
            err = HearthError(str(exc.detail))
        return error_response(err, dict(exc.headers) if exc.headers else None, request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(HearthError("internal server error"), path=request.url.path)

    app.add_exception_handler(HearthError, on_hearth_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
