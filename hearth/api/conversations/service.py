"""The Conversations API over the store: no HTTP here, so the library calls the same code."""

from __future__ import annotations

import asyncio
from typing import Any

from hearth.api.conversations.protocol import (
    Conversation,
    ConversationCreateParams,
    ConversationDeletedResource,
    ConversationItemList,
    ConversationList,
    ConversationUpdateParams,
    ItemCreateParams,
)
from hearth.api.responses.items import ID_PREFIX, checked, new_id
from hearth.errors import InvalidRequestError, NotFoundError
from hearth.store import Conversation as StoredConversation
from hearth.store import Item, Page, Store

ORDERS = ("asc", "desc")


def _wire(conv: StoredConversation) -> Conversation:
    return Conversation(id=conv.id, created_at=conv.created_at, metadata=conv.metadata)


def _list(page: Page) -> ConversationItemList:
    return ConversationItemList(
        data=page.data, first_id=page.first_id, last_id=page.last_id, has_more=page.has_more
    )


def _no_conversation(conversation_id: str) -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.")


class ConversationsService:
    """Conversations and their items, kept in the store."""

    def __init__(self, store: Store):
        self.store = store

    def _items(self, raw: list[Any], conversation_id: str | None = None) -> list[Item]:
        """Checked items with ids; an `item_reference` copies an item of this conversation
        (under a new id, so ids stay unique in it)."""

        def resolve(item_id: str) -> Item | None:
            found = (
                None if conversation_id is None else self.store.get_item(conversation_id, item_id)
            )
            if found is None:
                return None
            return {**found, "id": new_id(ID_PREFIX.get(found["type"], "item"))}

        return checked(raw, where="items", resolve=resolve)

    async def create(self, params: ConversationCreateParams) -> Conversation:
        items = self._items(params.items or [])
        conv = await asyncio.to_thread(self.store.create_conversation, params.metadata or {}, items)
        return _wire(conv)

    async def list(self, *, limit: int = 20, after: str | None = None) -> ConversationList:
        """Conversations, most recently used first (a turn or an edit counts as a use)."""
        convs, more = await asyncio.to_thread(
            lambda: self.store.list_conversations(limit=limit, after=after)
        )
        data = [_wire(c) for c in convs]
        return ConversationList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    async def retrieve(self, conversation_id: str) -> Conversation:
        conv = await asyncio.to_thread(self.store.get_conversation, conversation_id)
        if conv is None:
            raise _no_conversation(conversation_id)
        return _wire(conv)

    async def update(self, conversation_id: str, params: ConversationUpdateParams) -> Conversation:
        metadata = params.metadata or {}
        conv = await asyncio.to_thread(self.store.update_conversation, conversation_id, metadata)
        if conv is None:
            raise _no_conversation(conversation_id)
        return _wire(conv)

    async def delete(self, conversation_id: str) -> ConversationDeletedResource:
        if not await asyncio.to_thread(self.store.delete_conversation, conversation_id):
            raise _no_conversation(conversation_id)
        return ConversationDeletedResource(id=conversation_id)

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: str = "desc",
    ) -> ConversationItemList:
        """One page of items, newest first unless `order` is asc."""
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100", param="limit")
        if order not in ORDERS:
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
        page = await asyncio.to_thread(
            self.store.conversation_items,
            conversation_id,
            after=after,
            limit=limit,
            order="asc" if order == "asc" else "desc",
        )
        if page is None:
            raise _no_conversation(conversation_id)
        return _list(page)

    async def create_items(
        self, conversation_id: str, params: ItemCreateParams
    ) -> ConversationItemList:
        """Append items; the list holds them as stored, with their ids."""

        def add() -> list[Item] | None:
            return self.store.add_items(conversation_id, self._items(params.items, conversation_id))

        added = await asyncio.to_thread(add)
        if added is None:
            raise _no_conversation(conversation_id)
        return _list(
            Page(
                added, added[0]["id"] if added else None, added[-1]["id"] if added else None, False
            )
        )

    async def retrieve_item(self, conversation_id: str, item_id: str) -> Item:
        item = await asyncio.to_thread(self.store.get_item, conversation_id, item_id)
        if item is None:
            raise await self._not_found(conversation_id, item_id)
        return item

    async def delete_item(self, conversation_id: str, item_id: str) -> Conversation:
        """Delete an item; the answer is the conversation, as in OpenAI's API."""
        if not await asyncio.to_thread(self.store.delete_item, conversation_id, item_id):
            raise await self._not_found(conversation_id, item_id)
        return await self.retrieve(conversation_id)

    async def _not_found(self, conversation_id: str, item_id: str) -> NotFoundError:
        if await asyncio.to_thread(self.store.get_conversation, conversation_id) is None:
            return _no_conversation(conversation_id)
        return NotFoundError(f"Item with id '{item_id}' not found.")
