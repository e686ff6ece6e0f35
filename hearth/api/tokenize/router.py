"""POST /tokenize, /detokenize (vLLM's routes, beside /v1 as vLLM has them)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from hearth.api.deps import json_response, runtime
from hearth.api.streaming import cancel_on_disconnect
from hearth.api.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)

router = APIRouter()


@router.post("/tokenize", response_model=TokenizeResponse)
async def tokenize(body: TokenizeRequest, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).tokenize.tokenize(body))
    return json_response(result)


@router.post("/detokenize", response_model=DetokenizeResponse)
async def detokenize(body: DetokenizeRequest, request: Request) -> Response:
    result = await cancel_on_disconnect(request, runtime(request).tokenize.detokenize(body))
    return json_response(result)
