"""Conversations API wire models, named as OpenAI's API reference names them.

Items are the Responses API's input items (messages, function calls and their outputs,
custom tool calls, reasoning); they are checked by hearth.api.responses.items, the one
checker both APIs share, which names the item a problem is in (`items.3`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from hearth.api.protocol import OpenAIRequest, WireModel
from hearth.api.responses.protocol import InputItemList

MAX_ITEMS = 20  # items one request may add, as in OpenAI's API


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 key-value pairs")
    for key, text in value.items():
        if len(key) > 64:
            raise ValueError(f"key {key[:64]!r}... is longer than 64 characters")
        if len(text) > 512:
            raise ValueError(f"the value of {key!r} is longer than 512 characters")
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_metadata)]
# Raw JSON here: the item checker gives each problem its index, where a pydantic union would
# list every member's complaint.
RawItems = Annotated[list[Any], Field(max_length=MAX_ITEMS)]


class ConversationCreateParams(OpenAIRequest):
    """POST /v1/conversations."""

    items: RawItems | None = None
    metadata: Metadata = None


class ConversationUpdateParams(OpenAIRequest):
    """POST /v1/conversations/{conversation_id}: the metadata replaces the old one."""

    metadata: Metadata


class ItemCreateParams(OpenAIRequest):
    """POST /v1/conversations/{conversation_id}/items."""

    items: RawItems


class Conversation(WireModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]


class ConversationList(WireModel):
    """Hearth's own listing (OpenAI's API has none), shaped like its other cursor lists."""

    object: Literal["list"] = "list"
    data: list[Conversation]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationDeletedResource(WireModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


# The same page of items as a response's input_items.
ConversationItemList = InputItemList
