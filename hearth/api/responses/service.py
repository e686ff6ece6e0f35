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
from hearth.api.responses import mcp, translate
from hearth.api.responses import protocol as wire
from hearth.api.streaming import closing
from hearth.errors import ContextLengthExceeded, HearthError, InvalidRequestError, NotFoundError
from hearth.mcp.manager import McpManager
from hearth.pipeline.events import Event, KeepAlive
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.run import Pipeline
from hearth.store.store import Store, StoredResponse

log = logging.getLogger("hearth.api")

Events = AsyncIterator[wire.StreamEvent | KeepAlive]
MAX_TOOL_CALLS = 8  # MCP calls one response runs unless max_tool_calls says otherwise


@dataclass(slots=True)
class Created:
    """A create request's answer: the response (or its stream) and the tools left out."""

    result: wire.Response | Events
    ignored_tools: list[str]


def _missing(what: str, value: str, param: str) -> NotFoundError:
    return NotFoundError(f"no {what} with id '{value}'", param=param)


class ResponsesService:
    """POST /v1/responses and the stored responses' routes, without HTTP."""

    def __init__(self, pipeline: Pipeline, store: Store, mcp_manager: McpManager):
        self.pipeline = pipeline
        self.store = store
        self.mcp = mcp_manager
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
                found = self.store.get_item(conv_id, item_id)
                # A copy under an id of its own: ids stay unique in the conversation.
                prefix = it.ID_PREFIX.get(found["type"], "item") if found else ""
                return {**found, "id": it.new_id(prefix)} if found else None

        current = it.checked(request.input, resolve=resolve)
        if not current and not history:
            raise InvalidRequestError("input must not be empty", param="input")
        plan = translate.plan(request, history, current)
        taken = {t.name for t in plan.conversation.tools}
        tools = await mcp.setup(request, self.mcp, taken, history + current)
        plan.conversation.tools += tools.tools()
        turn = translate.Turn(
            translate.skeleton(request, it.new_id("resp"), int(time.time())),
            plan.custom_tools,
            tools.bindings,
        )
        approved = self._approved(history, current, tools)
        first = None if approved else await self._generate(request, plan, turn)
        run = self._run(request, plan, turn, current, tools, approved, first)
        if request.stream:
            return Created(run, plan.ignored_tools)
        async for _ in run:  # the same events a stream sends, gathered into the object
            pass
        return Created(turn.response, plan.ignored_tools)

    def _approved(
        self, history: list[it.Item], current: list[it.Item], tools: mcp.Setup
    ) -> list[tuple[mcp.Binding, it.Item]]:
        """The approval requests this input approves, with the tool each runs."""
        requests = {i["id"]: i for i in history if i["type"] == "mcp_approval_request"}
        out = []
        for i, item in enumerate(current):
            if item["type"] != "mcp_approval_response" or not item["approve"]:
                continue
            asked = requests.get(item["approval_request_id"])
            if asked is None:
                raise InvalidRequestError(
                    f"no approval request '{item['approval_request_id']}' in this conversation",
                    param=f"input.{i}.approval_request_id",
                )
            binding = tools.bindings.get(asked["name"])
            if binding is None:
                raise InvalidRequestError(
                    f"the tool '{asked['name']}' is not among this request's MCP tools",
                    param=f"input.{i}",
                )
            out.append((binding, asked))
        return out

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

    async def _generate(
        self, request: wire.ResponseCreateRequest, plan: translate.Plan, turn: translate.Turn
    ) -> Events:
        """One generation's events; with truncation `auto`, the oldest earlier turns are
        dropped until the prompt fits (never the instructions or this turn's input)."""

        def render(prepared: Prepared, events: AsyncIterator[Event]) -> Events:
            engine = prepared.model.engine

            async def count(text: str) -> int:
                return await asyncio.to_thread(engine.count_text, text)

            return translate.run_round(turn, events, count)

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
        plan: translate.Plan,
        turn: translate.Turn,
        current: list[it.Item],
        tools: mcp.Setup,
        approved: list[tuple[mcp.Binding, it.Item]],
        events: Events | None,
    ) -> Events:
        """The whole response: created, the MCP listings, then rounds of generation, each
        followed by the MCP calls it made (run here, their results read by the next round),
        and one terminal event; then the response is written to the store, whatever ended
        it."""
        response = turn.response
        self._running[response.id] = turn
        limit = request.max_tool_calls or MAX_TOOL_CALLS
        calls = 0
        saved = False
        try:
            for event in turn.start():
                yield event
            for label, listed, error in tools.listings:
                for event in turn.listing(
                    mcp.listing_item(it.new_id("mcpl"), label, listed, error)
                ):
                    yield event
            try:
                round_start = len(turn.output)
                for binding, asked in approved:  # calls approved in this input run first
                    _, opened = turn.approved_call(
                        binding.label, asked["name"], asked["arguments"], asked["id"]
                    )
                    for event in opened:
                        yield event
                while True:
                    if events is not None:
                        # Closed here, not by the garbage collector: the lease and the
                        # engine job end with the round, even when the client leaves.
                        async with closing(events) as round_events:
                            async for sent in round_events:
                                yield sent
                        events = None
                        if turn.client_calls or turn.awaiting_approval or not turn.pending:
                            break
                    # The round's MCP calls run here; the next round reads their results.
                    for index in turn.pending:
                        call = turn.output[index]
                        assert isinstance(call, wire.McpCallItem)
                        binding = tools.bindings[call.name]
                        output, failure = await mcp.call(self.mcp, binding, call.arguments)
                        for event in turn.complete_call(index, output, failure):
                            yield event
                    calls += len(turn.pending)
                    done = [i.model_dump(mode="json") for i in turn.output[round_start:]]
                    plan.conversation.messages += it.turns(done)
                    # A forced call was made: the answer after it is free (or, past the
                    # limit, makes no more calls).
                    plan.conversation.tool_choice = "none" if calls >= limit else "auto"
                    plan.conversation.tool_name = None
                    round_start = len(turn.output)
                    events = await self._generate(request, plan, turn)
                terminal = turn.finish()
            except HearthError as exc:
                terminal = turn.fail(exc)
            except Exception as exc:  # a bug: the client still gets the terminal event
                log.exception("a response failed")
                terminal = turn.fail(HearthError(f"the response failed: {exc}"))
            # Stored before the client hears it ended: its next request may continue it.
            saved = self._save(request, turn, current)
            for event in terminal:
                yield event
        finally:
            self._running.pop(response.id, None)
            if not saved:  # the client went away mid-answer: it ends cancelled
                if response.status == "in_progress":
                    response.status = "cancelled"
                    response.output = list(turn.output)
                    response.output_text = translate.output_text(turn.output)
                self._save(request, turn, current)

    def _save(
        self, request: wire.ResponseCreateRequest, turn: translate.Turn, current: list[it.Item]
    ) -> bool:
        """Write the response if it is to be kept. Synchronous: this may run while the task
        is being cancelled, and a few kilobytes into SQLite take a millisecond."""
        if not (request.store or request.conversation_id):
            return True
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
                    events=[e.model_dump(mode="json") for e in turn.events],
                )
            )
        except Exception:  # losing its record must not break the answer itself
            log.exception("could not store response %s", r.id)
        return True

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

    def cancel_all(self) -> None:
        """Every running response ends `cancelled` at its next event (server shutdown)."""
        for running in self._running.values():
            running.cancel_requested = True

    async def cancel(self, response_id: str) -> wire.Response:
        """Stop a response still generating (it ends `cancelled` with what it had); a finished
        one is returned as it is."""
        running = self._running.get(response_id)
        if running is None:
            return await self.retrieve(response_id)
        running.cancel_requested = True
        return running.response.model_copy(update={"status": "cancelled"})
