"""Small helpers routers share: the runtime from app state, JSON responses from models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from hearth.runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    # pydantic serialises straight to bytes; no second pass through json.dumps.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
