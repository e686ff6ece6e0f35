"""The in-process library: what the HTTP server does, callable without HTTP.

    async with Hearth(models_dir="~/models") as h:
        reply = await h.chat.completions.create(model="smollm2-135m-instruct.q4_1",
                                                messages=[{"role": "user", "content": "Hi"}])

Return values are the same pydantic objects the server sends on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from hearth.api.anthropic.protocol import Message as AnthropicMessage
from hearth.api.anthropic.protocol import (
    MessageCountTokensParams,
    MessageCreateParams,
    MessageTokensCount,
    StreamEvent,
)
from hearth.api.chat.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from hearth.api.completions.protocol import Completion, CompletionRequest
from hearth.api.conversations.protocol import (
    Conversation,
    ConversationCreateParams,
    ConversationDeletedResource,
    ConversationItemList,
    ConversationUpdateParams,
    ItemCreateParams,
)
from hearth.api.embeddings.protocol import CreateEmbeddingResponse, EmbeddingRequest
from hearth.api.lifecycle import service as lifecycle
from hearth.api.lifecycle.protocol import (
    DeleteRequest,
    DeleteResponse,
    LoadRequest,
    LoadResponse,
    ProcessList,
    UnloadRequest,
    UnloadResponse,
)
from hearth.api.mcp import service as mcp_service
from hearth.api.mcp.protocol import McpServerInfo, McpServerList
from hearth.api.models.protocol import Model, ModelList
from hearth.api.models.service import get_model, list_models
from hearth.api.ollama import protocol as ollama
from hearth.api.protocol import validated
from hearth.api.pull import service as pulling
from hearth.api.pull.protocol import PullRequest, PullStatus
from hearth.api.responses.protocol import (
    DeletedResponse,
    InputItemList,
    Response,
    ResponseCreateRequest,
)
from hearth.api.responses.protocol import StreamEvent as ResponseStreamEvent
from hearth.models.manager import EngineFactory
from hearth.pipeline.events import KeepAlive
from hearth.runtime import Runtime, build_runtime
from hearth.session import Session
from hearth.settings import Settings, load_settings

T = TypeVar("T")


_request = validated


async def _without_keepalives(items: AsyncIterator[T | KeepAlive]) -> AsyncIterator[T]:
    async for item in items:
        if not isinstance(item, KeepAlive):
            yield item


class _ChatCompletions:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def create(self, **fields: Any) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """Same fields as POST /v1/chat/completions; stream=True gives an async iterator."""
        result = await self._rt.chat.create(_request(ChatCompletionRequest, fields))
        if isinstance(result, ChatCompletion):
            return result
        return _without_keepalives(result)


class _Chat:
    def __init__(self, rt: Runtime):
        self.completions = _ChatCompletions(rt)


class _Completions:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def create(self, **fields: Any) -> Completion | AsyncIterator[Completion]:
        """Same fields as POST /v1/completions; stream=True gives an async iterator."""
        result = await self._rt.completions.create(_request(CompletionRequest, fields))
        if isinstance(result, Completion):
            return result
        return _without_keepalives(result)


class _Embeddings:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def create(self, **fields: Any) -> CreateEmbeddingResponse:
        """Same fields as POST /v1/embeddings."""
        return await self._rt.embeddings.create(_request(EmbeddingRequest, fields))


class _Messages:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def create(self, **fields: Any) -> AnthropicMessage | AsyncIterator[StreamEvent]:
        """Same fields as POST /v1/messages; stream=True gives an async iterator of events."""
        result = await self._rt.messages.create(_request(MessageCreateParams, fields))
        if isinstance(result, AnthropicMessage):
            return result
        return _without_keepalives(result)

    async def count_tokens(self, **fields: Any) -> MessageTokensCount:
        """Same fields as POST /v1/messages/count_tokens."""
        return await self._rt.messages.count_tokens(_request(MessageCountTokensParams, fields))


RawItems = list[Any]  # named outside the class, whose `list` method hides the builtin
Order = Literal["asc", "desc"]


class _ResponseInputItems:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def list(
        self,
        response_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> InputItemList:
        """As GET /v1/responses/{id}/input_items: the input the model saw, a page of it."""
        return await self._rt.responses.input_items(
            response_id, after=after, before=before, limit=limit, order=order
        )


class _Responses:
    """The Responses API, stored in the same database as the server's."""

    def __init__(self, rt: Runtime):
        self._rt = rt
        self.input_items = _ResponseInputItems(rt)

    async def create(self, **fields: Any) -> Response | AsyncIterator[ResponseStreamEvent]:
        """Same fields as POST /v1/responses; stream=True gives an async iterator of events."""
        created = await self._rt.responses.create(_request(ResponseCreateRequest, fields))
        if isinstance(created.result, Response):
            return created.result
        return _without_keepalives(created.result)

    async def retrieve(self, response_id: str) -> Response:
        return await self._rt.responses.retrieve(response_id)

    async def delete(self, response_id: str) -> DeletedResponse:
        return await self._rt.responses.delete(response_id)

    async def cancel(self, response_id: str) -> Response:
        """Stop a response still generating."""
        return await self._rt.responses.cancel(response_id)


class _ConversationItems:
    def __init__(self, rt: Runtime):
        self._rt = rt

    async def list(
        self,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: str = "desc",
    ) -> ConversationItemList:
        """As GET /v1/conversations/{id}/items: newest first unless order="asc"."""
        return await self._rt.conversations.list_items(
            conversation_id, after=after, limit=limit, order=order
        )

    async def create(self, conversation_id: str, *, items: RawItems) -> ConversationItemList:
        """Append up to 20 items (Responses input items)."""
        params = _request(ItemCreateParams, {"items": items})
        return await self._rt.conversations.create_items(conversation_id, params)

    async def retrieve(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        return await self._rt.conversations.retrieve_item(conversation_id, item_id)

    async def delete(self, conversation_id: str, item_id: str) -> Conversation:
        """Delete an item; returns the conversation."""
        return await self._rt.conversations.delete_item(conversation_id, item_id)


class _Conversations:
    """The Conversations API: conversations kept in the store, and their items."""

    def __init__(self, rt: Runtime):
        self._rt = rt
        self.items = _ConversationItems(rt)

    async def create(self, **fields: Any) -> Conversation:
        """Same fields as POST /v1/conversations (items, metadata)."""
        return await self._rt.conversations.create(_request(ConversationCreateParams, fields))

    async def retrieve(self, conversation_id: str) -> Conversation:
        return await self._rt.conversations.retrieve(conversation_id)

    async def update(self, conversation_id: str, *, metadata: dict[str, str]) -> Conversation:
        """Replace the conversation's metadata."""
        params = _request(ConversationUpdateParams, {"metadata": metadata})
        return await self._rt.conversations.update(conversation_id, params)

    async def delete(self, conversation_id: str) -> ConversationDeletedResource:
        return await self._rt.conversations.delete(conversation_id)


OllamaLine = ollama.ChatResponse | ollama.GenerateResponse


class _Ollama:
    """Ollama's generation routes: the same objects its /api/ routes send."""

    def __init__(self, rt: Runtime):
        self._rt = rt

    async def chat(self, **fields: Any) -> OllamaLine | AsyncIterator[OllamaLine]:
        """Same fields as POST /api/chat; streams (an async iterator) unless stream=False."""
        result = await self._rt.ollama.chat(_request(ollama.ChatRequest, fields))
        return result if isinstance(result, BaseModel) else _without_keepalives(result)

    async def generate(self, **fields: Any) -> OllamaLine | AsyncIterator[OllamaLine]:
        """Same fields as POST /api/generate; streams unless stream=False."""
        result = await self._rt.ollama.generate(_request(ollama.GenerateRequest, fields))
        return result if isinstance(result, BaseModel) else _without_keepalives(result)

    async def embed(self, **fields: Any) -> ollama.EmbedResponse:
        """Same fields as POST /api/embed."""
        return await self._rt.ollama.embed(_request(ollama.EmbedRequest, fields))


class _Models:
    def __init__(self, rt: Runtime):
        self._rt = rt

    def list(self) -> ModelList:
        return list_models(self._rt)

    def retrieve(self, model: str) -> Model:
        return get_model(self._rt, model)

    def ps(self) -> ProcessList:
        """The loaded models, their memory and idle timers (as GET /api/ps)."""
        return lifecycle.list_processes(self._rt)

    async def load(self, model: str, keep_alive: str | float | None = None) -> LoadResponse:
        """Load now; keep_alive as in a request ('5m', 0, -1)."""
        request = _request(LoadRequest, {"model": model, "keep_alive": keep_alive})
        return await lifecycle.load(self._rt, request)

    async def unload(self, model: str, *, force: bool = False) -> UnloadResponse:
        """Unload now, or once its requests end (force: now anyway)."""
        request = _request(UnloadRequest, {"model": model, "force": force})
        return await lifecycle.unload(self._rt, request)

    async def delete(self, model: str, *, force: bool = False) -> DeleteResponse:
        """Remove the model's files from the models directory."""
        request = _request(DeleteRequest, {"model": model, "force": force})
        return await lifecycle.delete(self._rt, request)

    async def pull(self, model: str, **fields: Any) -> AsyncIterator[PullStatus]:
        """Download a model (as POST /api/pull): progress objects, the last one `success`."""
        request = _request(PullRequest, {"model": model, **fields})
        plan = await pulling.plan(self._rt, request)
        return pulling.progress(self._rt, plan)


class _Mcp:
    """The MCP servers of --mcp-config (as /v1/mcp/...)."""

    def __init__(self, rt: Runtime):
        self._rt = rt

    async def tools(self) -> McpServerList:
        """Every configured server with its status and tools (starting the enabled ones)."""
        return await mcp_service.list_servers(self._rt.mcp)

    async def restart(self, name: str) -> McpServerInfo:
        """Stop one server and start it again."""
        return await mcp_service.restart(self._rt.mcp, name)


class Hearth:
    """A Hearth runtime in this process. Settings as for `hearth serve` (same names)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        factory: EngineFactory | None = None,
        **fields: Any,
    ):
        self.settings = settings or load_settings(fields)
        self.runtime = build_runtime(self.settings, factory)
        self.chat = _Chat(self.runtime)
        self.completions = _Completions(self.runtime)
        self.embeddings = _Embeddings(self.runtime)
        self.messages = _Messages(self.runtime)  # Anthropic's Messages API
        self.ollama = _Ollama(self.runtime)  # Ollama's /api/chat, generate, embed
        self.responses = _Responses(self.runtime)
        self.models = _Models(self.runtime)
        self.conversations = _Conversations(self.runtime)
        self.mcp = _Mcp(self.runtime)

    async def close(self) -> None:
        """Stop the MCP servers, unload every model and stop their worker threads."""
        await self.runtime.close()

    def session(
        self,
        *,
        model: str,
        instructions: str | None = None,
        mcp: Literal["all"] | list[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Session:
        """A multi-turn conversation on the Responses API: each send continues the last
        response; `mcp` names servers of mcp.json (or "all") whose tools Hearth runs."""
        return Session(self.runtime, model=model, instructions=instructions, mcp=mcp, tools=tools)

    async def __aenter__(self) -> Hearth:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
