"""/v1/conversations: listed (Hearth's extension), created, retrieved, updated, deleted; their
items listed, added, read and deleted."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from hearth.api.conversations.protocol import (
    Conversation,
    ConversationCreateParams,
    ConversationDeletedResource,
    ConversationItemList,
    ConversationList,
    ConversationUpdateParams,
    ItemCreateParams,
)
from hearth.api.deps import json_response, runtime

router = APIRouter(prefix="/v1/conversations")


@router.post("", response_model=Conversation)
async def create_conversation(body: ConversationCreateParams, request: Request) -> Response:
    """A new conversation, with up to 20 items to start it."""
    return json_response(await runtime(request).conversations.create(body))


@router.get("", response_model=ConversationList)
async def list_conversations(
    request: Request,
    after: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """Hearth's extension: the stored conversations, most recently used first (OpenAI's API
    lists none; the web UI's sidebar needs them)."""
    service = runtime(request).conversations
    return json_response(await service.list(limit=limit, after=after))


@router.get("/{conversation_id}", response_model=Conversation)
async def retrieve_conversation(conversation_id: str, request: Request) -> Response:
    return json_response(await runtime(request).conversations.retrieve(conversation_id))


@router.post("/{conversation_id}", response_model=Conversation)
async def update_conversation(
    conversation_id: str, body: ConversationUpdateParams, request: Request
) -> Response:
    """Replace the conversation's metadata."""
    return json_response(await runtime(request).conversations.update(conversation_id, body))


@router.delete("/{conversation_id}", response_model=ConversationDeletedResource)
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    return json_response(await runtime(request).conversations.delete(conversation_id))


@router.get("/{conversation_id}/items", response_model=ConversationItemList)
async def list_items(
    conversation_id: str,
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,  # accepted
) -> Response:
    """The conversation's items, newest first unless `order=asc`."""
    service = runtime(request).conversations
    page = await service.list_items(conversation_id, after=after, limit=limit, order=order)
    return json_response(page)


@router.post("/{conversation_id}/items", response_model=ConversationItemList)
async def create_items(conversation_id: str, body: ItemCreateParams, request: Request) -> Response:
    """Append up to 20 items."""
    return json_response(await runtime(request).conversations.create_items(conversation_id, body))


@router.get("/{conversation_id}/items/{item_id}")
async def retrieve_item(conversation_id: str, item_id: str, request: Request) -> Response:
    item = await runtime(request).conversations.retrieve_item(conversation_id, item_id)
    return JSONResponse(item)


@router.delete("/{conversation_id}/items/{item_id}", response_model=Conversation)
async def delete_item(conversation_id: str, item_id: str, request: Request) -> Response:
    """Delete an item; the answer is the conversation."""
    service = runtime(request).conversations
    return json_response(await service.delete_item(conversation_id, item_id))
