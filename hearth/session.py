"""A multi-turn conversation in the library: each message continues the last response (its
`previous_response_id`), with the same instructions and the MCP servers from mcp.json.

    session = h.session(model="...", instructions="Be brief.", mcp="all")
    reply = await session.send("What is 2 + 3?")
    async for event in session.stream("And 4 + 4?"): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from hearth.api.protocol import validated
from hearth.api.responses.protocol import Response, ResponseCreateRequest, StreamEvent
from hearth.pipeline.events import KeepAlive

if TYPE_CHECKING:
    from hearth.runtime import Runtime

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class Session:
    """One conversation through the Responses service; it remembers where it is."""

    def __init__(
        self,
        rt: Runtime,
        *,
        model: str,
        instructions: str | None = None,
        mcp: Literal["all"] | list[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ):
        self._rt = rt
        self.model = model
        self.instructions = instructions
        self.mcp = mcp
        self.tools = list(tools or [])
        self.previous_response_id: str | None = None

    async def _request(self, text: str | list[Any], extra: dict[str, Any]) -> ResponseCreateRequest:
        servers = self.mcp
        if servers == "all":
            servers = [s.name for s in await self._rt.mcp.states()]
        tools = [
            *self.tools,
            *(
                {"type": "mcp", "server_label": n, "require_approval": "never"}
                for n in servers or []
            ),
        ]
        fields: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "instructions": self.instructions,
            "previous_response_id": self.previous_response_id,
            **({"tools": tools} if tools else {}),
            **extra,
        }
        return validated(ResponseCreateRequest, fields)

    async def send(self, text: str | list[Any], **extra: Any) -> Response:
        """The next turn, whole."""
        created = await self._rt.responses.create(await self._request(text, extra))
        assert isinstance(created.result, Response)
        self.previous_response_id = created.result.id
        return created.result

    async def stream(self, text: str | list[Any], **extra: Any) -> AsyncIterator[StreamEvent]:
        """The next turn's events."""
        request = await self._request(text, {**extra, "stream": True})
        created = await self._rt.responses.create(request)
        assert not isinstance(created.result, Response)
        async for event in created.result:
            if isinstance(event, KeepAlive):
                continue
            if event.type in TERMINAL:
                self.previous_response_id = (event.model_extra or {})["response"]["id"]
            yield event
