"""Responses: a create request continued from the store (previous_response_id or a
conversation), run on the conversation pipeline, and written to the store when it ends
(completed, incomplete, failed or cancelled). No FastAPI here: the same service is the
library's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from hearth.api.responses import items as it
from hearth.api.responses import protocol as wire
from hearth.api.responses import translate
from hearth.errors import ContextLengthExceeded, InvalidRequestError, NotFoundError
from hearth.pipeline.events import Event, KeepAlive
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.run import Pipeline
from hearth.store.store import Store, StoredResponse

log = logging.getLogger("hearth.api")

Events = AsyncIterator[wire.StreamEvent | KeepAlive]


@dataclass(slots=True)
class Created:
    """A create request's answer: the response (or its stream) and the tools left out."""

    result: wire.Response | Events
    ignored_tools: list[str]


def _missing(what: str, value: str, param: str) -> NotFoundError:
    return NotFoundError(f"no {what} with id '{value}'", param=param)


class ResponsesService:
    """POST /v1/responses and the stored responses' routes, without HTTP."""

    def __init__(self, pipeline: Pipeline, store: Store):
        self.pipeline = pipeline
        self.store = store
        self._running: dict[str, translate.Turn] = {}

    # -- create ---------------------------------------------------------------------------------

    async def create(self, request: wire.ResponseCreateRequest) -> Created:
        """A response, or (stream=True) its events. Bad requests raise here, before anything
        streams; from then on a failure is the response's own `failed` status."""
        history, conversation = await self._history(request)
        resolve = None
        if conversation is not None:
            conv_id = conversation

            def resolve(item_id: str) -> it.Item | None:
                return self.store.get_item(conv_id, item_id)

        current = it.checked(request.input, resolve=resolve)
        if not current and not history:
            raise InvalidRequestError("input must not be empty", param="input")
        plan = translate.plan(request, history, current)
        turn = translate.Turn(
            translate.skeleton(request, it.new_id("resp"), int(time.time())), plan.custom_tools
        )
        events = await self._start(request, plan, turn)
        run = self._run(request, turn, current, events)
        if request.stream:
            return Created(run, plan.ignored_tools)
        async for _ in run:  # the same events a stream sends, gathered into the object
            pass
        return Created(turn.response, plan.ignored_tools)

    async def _history(
        self, request: wire.ResponseCreateRequest
    ) -> tuple[list[it.Item], str | None]:
        """The earlier turns' items: the chain of previous responses, or the conversation's."""
        previous, conversation = request.previous_response_id, request.conversation_id
        if previous and conversation:
            raise InvalidRequestError(
                "give previous_response_id or conversation, not both", param="conversation"
            )
        if previous:
            chain = await asyncio.to_thread(self.store.chain, previous)
            if chain is None:
                raise _missing("response", previous, "previous_response_id")
            return [i for r in chain for i in (*r.input_items, *r.output_items)], None
        if conversation:
            found = await asyncio.to_thread(self.store.all_conversation_items, conversation)
            if found is None:
                raise _missing("conversation", conversation, "conversation")
            return found, conversation
        return [], None

    async def _start(
        self, request: wire.ResponseCreateRequest, plan: translate.Plan, turn: translate.Turn
    ) -> Events:
        """The pipeline's stream of this turn; with truncation `auto`, the oldest earlier
        turns are dropped until the prompt fits (never the instructions or this turn's input)."""

        def render(prepared: Prepared, events: AsyncIterator[Event]) -> Events:
            engine = prepared.model.engine

            async def count(text: str) -> int:
                return len(await asyncio.to_thread(engine.tokenize, text, add_special=False))

            return translate.stream(turn, prepared, events, count)

        messages = plan.conversation.messages
        first = 1 if request.instructions else 0
        while True:
            try:
                return await self.pipeline.stream(plan.conversation, render)
            except ContextLengthExceeded:
                if request.truncation != "auto" or plan.history == 0:
                    raise
                del messages[first]
                plan.history -= 1
                # A tool result without its call reads as nonsense: it goes with it.
                while plan.history and messages[first].role == "tool":
                    del messages[first]
                    plan.history -= 1

    async def _run(
        self,
        request: wire.ResponseCreateRequest,
        turn: translate.Turn,
        current: list[it.Item],
        events: Events,
    ) -> Events:
        """The events, then the response written to the store, whatever ended it."""
        response = turn.response
        self._running[response.id] = turn
        try:
            async for event in events:
                yield event
        finally:
            self._running.pop(response.id, None)
            if response.status == "in_progress":  # the client went away mid-answer
                response.status = "cancelled"
                response.output = list(turn.output)
                response.output_text = translate.output_text(turn.output)
            if request.store or request.conversation_id:
                # Synchronous: this may run while the task is being cancelled, and a few
                # kilobytes into SQLite take a millisecond.
                self._save(request, turn, current)

    def _save(
        self, request: wire.ResponseCreateRequest, turn: translate.Turn, current: list[it.Item]
    ) -> None:
        r = turn.response
        try:
            self.store.put_response(
                StoredResponse(
                    id=r.id,
                    created_at=r.created_at,
                    model=r.model,
                    status=r.status,
                    previous_response_id=request.previous_response_id,
                    conversation_id=request.conversation_id,
                    input_items=current,
                    output_items=turn.output_items(),
                    body=r.model_dump(mode="json"),
                    events=turn.events,
                )
            )
        except Exception:  # the answer was sent; losing its record must not break the stream
            log.exception("could not store response %s", r.id)

    # -- stored responses -----------------------------------------------------------------------

    async def _stored(self, response_id: str) -> StoredResponse:
        found = await asyncio.to_thread(self.store.get_response, response_id)
        if found is None:
            raise _missing("response", response_id, "response_id")
        return found

    async def retrieve(self, response_id: str) -> wire.Response:
        running = self._running.get(response_id)
        if running is not None:
            return running.response
        return wire.Response.model_validate((await self._stored(response_id)).body)

    async def replay(self, response_id: str) -> Events:
        """A finished response's stream, event for event as it was sent."""
        stored = await self._stored(response_id)

        async def events() -> Events:
            for event in stored.events or []:
                yield wire.StreamEvent.model_validate(event)

        return events()

    async def delete(self, response_id: str) -> wire.DeletedResponse:
        if not await asyncio.to_thread(self.store.delete_response, response_id):
            raise _missing("response", response_id, "response_id")
        return wire.DeletedResponse(id=response_id)

    async def input_items(
        self,
        response_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> wire.InputItemList:
        page = await asyncio.to_thread(
            self.store.input_items,
            response_id,
            after=after,
            before=before,
            limit=limit,
            order=order,
        )
        if page is None:
            raise _missing("response", response_id, "response_id")
        return wire.InputItemList(
            data=page.data, first_id=page.first_id, last_id=page.last_id, has_more=page.has_more
        )

    async def cancel(self, response_id: str) -> wire.Response:
        """Stop a response still generating (it ends `cancelled` with what it had); a finished
        one is returned as it is."""
        running = self._running.get(response_id)
        if running is None:
            return await self.retrieve(response_id)
        running.cancel_requested = True
        return running.response
