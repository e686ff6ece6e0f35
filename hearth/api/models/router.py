"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hearth.api.deps import json_response, runtime
from hearth.api.models.protocol import Model, ModelList
from hearth.api.models.service import get_model, list_models

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def list_all(request: Request) -> Response:
    return json_response(list_models(runtime(request)))


@router.get("/v1/models/{model_id:path}", response_model=Model)
async def retrieve(model_id: str, request: Request) -> Response:
    return json_response(get_model(runtime(request), model_id))
