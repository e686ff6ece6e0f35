"""A model served by an OpenAI-compatible server upstream (vLLM, SGLang, llama.cpp's server,
another Hearth): the `ConversationEngine` that the pipeline hands conversations to. Hearth
keeps the store, MCP tools, policy and logs; the upstream templates, tokenizes and generates.

Every generation is a streamed Chat Completions (or Completions, for raw prompts) request, so a
non-streamed answer is gathered from the same chunks a stream would pass through."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import numpy as np

from hearth.engine.base import (
    ConversationEngine,
    EmbedResult,
    EngineStatus,
    ModelInfo,
    TokenCount,
    UpstreamStatus,
)
from hearth.engine.upstream.pool import HEALTH_TIMEOUT, UpstreamPool
from hearth.engine.upstream.wire import ChunkReader, chat_body, completion_body, error_from
from hearth.errors import (
    HearthError,
    InvalidRequestError,
    ModelUnloaded,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from hearth.models.config import ModelConfig
from hearth.pipeline.events import Done, Event, Progress, Timings
from hearth.pipeline.request import ConversationRequest

log = logging.getLogger("hearth.upstream")

MAX_ERROR_BODY = 64 * 1024  # bytes of an upstream's error answer that are read
CHARS_PER_TOKEN = 4  # the estimate when the upstream cannot count


def probe(cfg: ModelConfig, api_key: str | None) -> dict[str, Any]:
    """The upstream's `/v1/models` entry for the configured model (its context length, where
    the server reports one), from the first base URL that answers."""
    name = cfg.upstream_model or cfg.id
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    problems = []
    for url in cfg.base_url:
        try:
            response = httpx.get(url + "/v1/models", headers=headers, timeout=HEALTH_TIMEOUT * 2)
        except httpx.HTTPError as exc:
            problems.append(f"{url}: {type(exc).__name__}")
            continue
        if response.status_code != 200:
            problems.append(f"{url}: HTTP {response.status_code}")
            continue
        try:
            data = response.json().get("data") or []
        except (ValueError, AttributeError):
            problems.append(f"{url}: /v1/models is not JSON")
            continue
        served = [m for m in data if isinstance(m, dict)]
        for model in served:
            if model.get("id") == name:
                return model
        if cfg.upstream_model is None and len(served) == 1:
            return served[0]  # `--upstream NAME=URL` of a server with one model: that one
        names = ", ".join(str(m.get("id")) for m in served[:10]) or "none"
        raise UpstreamError(
            f"the upstream server {url} serves no model '{name}' (it serves: {names}); "
            "set upstream_model",
            param="model",
        )
    raise UpstreamUnreachable(
        f"cannot reach the upstream of model '{cfg.id}': {'; '.join(problems)}", param="model"
    )


def _context_of(model: dict[str, Any]) -> int | None:
    """The context length a /v1/models entry reports: vLLM's `max_model_len`, Hearth's
    `context_window`, llama.cpp's `meta.n_ctx_train`."""
    meta = model.get("meta") if isinstance(model.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    fields = (model.get("max_model_len"), model.get("context_window"), meta.get("n_ctx_train"))
    for value in fields:
        if isinstance(value, int) and value > 0:
            return value
    return None


class UpstreamEngine(ConversationEngine):
    """One upstream model: its base URLs, concurrency limit and connection pool."""

    supports_embeddings = True

    def __init__(self, cfg: ModelConfig, api_key: str | None, *, health_interval: float = 5.0):
        assert cfg.id is not None
        self.cfg = cfg
        listed = probe(cfg, api_key)
        self.name = cfg.upstream_model or str(listed.get("id") or cfg.id)
        context = cfg.ctx_size or _context_of(listed) or 0
        self.info = ModelInfo(
            id=cfg.id,
            path=cfg.base_url[0],
            n_ctx_train=_context_of(listed) or context,
            ctx_size=context,
            n_vocab=0,
            n_params=0,
            size_bytes=0,
            architecture="upstream",
            description=f"{self.name} at {', '.join(cfg.base_url)}",
            chat_template=None,
            bos_token="",
            eos_token="",
            add_bos=False,
            sampling_defaults={},
        )
        self.pool = UpstreamPool(
            cfg.base_url,
            api_key=api_key,
            timeout_s=cfg.timeout_s,
            balance=cfg.balance,
            health_interval=health_interval,
        )
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # --max-queue counts the requests beyond these as queued (Pipeline.admit).
        self.parallel = cfg.max_concurrency or 1 << 16
        self._slots = asyncio.Semaphore(self.parallel)
        self._waiting = 0
        self._served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._can_tokenize: bool | None = None  # learnt on the first /tokenize
        self._closed = False
        self._sampling = cfg.sampling.as_dict()  # once, not per request

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.pool.start()

    # -- generating -----------------------------------------------------------------------------

    async def converse(self, request: ConversationRequest) -> AsyncGenerator[Event, None]:
        cfg = self.cfg
        sampling = self._sampling
        chat = request.prompts is None
        if chat:
            body = chat_body(request, self.name, sampling, cfg.max_output_tokens, cfg.system_prompt)
            path = "/v1/chat/completions"
        else:
            body = completion_body(request, self.name, sampling, cfg.max_output_tokens)
            path = "/v1/completions"
        choices = request.n * (1 if chat else len(request.prompts or []))
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            if self._closed:  # unloaded while this request waited for a slot
                raise ModelUnloaded(f"the model '{self.info.id}' was unloaded")
            async with self.pool.stream(path, body) as (target, response):
                if response.status_code != 200:
                    raise error_from(response.status_code, await _error_body(response), target.url)
                self._served += 1
                yield Progress(0, 0)  # accepted: the caller's stream may begin
                reader = ChunkReader(choices, chat=chat, url=target.url)
                finished = False
                try:
                    events = _sse(response)
                    async for data in events:
                        if data == b"[DONE]":
                            finished = True
                            break
                        try:
                            out = reader.feed(json.loads(data))
                        except (ValueError, TypeError, AttributeError):
                            raise UpstreamError(
                                f"the upstream server ({target.url}) sent an event that is "
                                "not a chunk of the API"
                            ) from None
                        for event in out:
                            yield event
                except httpx.TimeoutException:
                    target.errors += 1
                    raise UpstreamTimeout(
                        f"the upstream server ({target.url}) sent nothing for "
                        f"{cfg.timeout_s or 600:g}s"
                    ) from None
                except (httpx.HTTPError, UpstreamError) as exc:
                    target.errors += 1
                    if isinstance(exc, UpstreamError):
                        raise
                    raise UpstreamError(
                        f"the upstream server ({target.url}) broke off the stream: "
                        f"{type(exc).__name__}"
                    ) from None
                if not finished:
                    target.errors += 1
                    raise UpstreamError(
                        f"the upstream server ({target.url}) ended the stream before it was done"
                    )
                for event in reader.finish_all():
                    yield event
                yield Done(reader.final_usage(), Timings())
                # The body's last bytes (the end of its chunked encoding), so the connection
                # goes back to the pool instead of being closed: no new connection per request.
                # Bounded: a server that holds the body open only loses the connection.
                with contextlib.suppress(httpx.HTTPError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        async for _ in events:
                            pass
        finally:
            self._slots.release()

    # -- embeddings and counting ----------------------------------------------------------------

    async def embed_inputs(self, inputs: list[Any], dimensions: int | None) -> EmbedResult:
        body: dict[str, Any] = {"model": self.name, "input": inputs}
        if dimensions is not None:
            body["dimensions"] = dimensions
        payload = await self._post_json("/v1/embeddings", body)
        try:
            vectors, tokens = _embeddings(payload, len(inputs))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UpstreamError(
                "the upstream server's embeddings answer has the wrong shape"
            ) from None
        return EmbedResult(vectors, tokens)

    async def count(self, request: ConversationRequest) -> TokenCount:
        """vLLM's (and Hearth's) POST /tokenize with the messages; without one, ~4
        characters a token, marked as estimated."""
        body: dict[str, Any] = {"model": self.name}
        if request.prompts is None:
            body["messages"] = chat_body(request, self.name, {}, None, self.cfg.system_prompt)[
                "messages"
            ]
            if request.tools:
                body["tools"] = [tool.for_template() for tool in request.tools]
        else:
            body["prompt"] = request.prompts[0] if request.prompts else ""
        if self._can_tokenize is not False:
            try:
                payload = await self._post_json("/tokenize", body)
                count = payload.get("count") if isinstance(payload, dict) else None
                if count is None and isinstance(payload, dict):
                    count = len(payload.get("tokens") or [])
                if isinstance(count, int) and count > 0:  # llama.cpp's: [] for no `content`
                    self._can_tokenize = True
                    return TokenCount(count)
            except UpstreamUnreachable:
                raise
            except UpstreamError as exc:
                # No /tokenize (404, 405), or one of another shape (llama.cpp's, SGLang's).
                if exc.status_code in (404, 405):
                    self._can_tokenize = False
                log.info("%s: /tokenize failed (%s); the count is estimated", self.name, exc)
        text = json.dumps(body.get("messages") or body.get("prompt"), ensure_ascii=False)
        return TokenCount(math.ceil(len(text) / CHARS_PER_TOKEN), estimated=True)

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        async with self.pool.stream(path, body) as (target, response):
            if response.status_code != 200:
                raise error_from(response.status_code, await _error_body(response), target.url)
            try:
                return json.loads(await response.aread())
            except (ValueError, httpx.HTTPError):
                raise UpstreamError(
                    f"the upstream server ({target.url}) answered no JSON"
                ) from None

    # -- the token-level calls, for the few places that need them -------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        # vLLM's and Hearth's names, and llama.cpp's (`content`, `add_special`).
        fields = {"prompt": text, "content": text}
        payload = self._call(
            "/tokenize", {**fields, "add_special_tokens": add_special, "add_special": add_special}
        )
        tokens = payload.get("tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, list):
            raise UpstreamError("the upstream server's /tokenize answer has no tokens")
        return [int(t) for t in tokens]

    def detokenize(self, tokens: list[int]) -> str:
        payload = self._call("/detokenize", {"tokens": tokens})
        return str(payload.get("prompt", "")) if isinstance(payload, dict) else ""

    def count_text(self, text: str) -> int:
        if self._can_tokenize is not False:
            try:
                return len(self.tokenize(text, add_special=False))
            except InvalidRequestError:  # it has no /tokenize: not asked again
                self._can_tokenize = False
            except HearthError:  # this time only: estimated
                pass
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def _call(self, path: str, body: dict[str, Any]) -> Any:
        """A blocking call (from a worker thread) to the first healthy base URL."""
        target = self.pool.order()[0]
        try:
            response = httpx.post(
                target.url + path,
                json={"model": self.name, **body},
                headers=self._headers,
                timeout=self.cfg.timeout_s or 60.0,
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"{target.url}{path}: {type(exc).__name__}") from None
        if response.status_code != 200:
            try:
                payload = response.json()
            except ValueError:
                payload = response.text[:500]
            if response.status_code in (404, 405):
                raise InvalidRequestError(
                    f"the upstream server ({target.url}) has no {path}", param="model"
                )
            raise error_from(response.status_code, payload, target.url)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"the upstream server ({target.url}) answered no JSON") from None

    # -- state ----------------------------------------------------------------------------------

    def status(self) -> EngineStatus:
        return EngineStatus(
            slots=[],
            queued=self._waiting,
            requests_served=self._served,
            upstreams=[
                UpstreamStatus(
                    t.url, t.up, t.in_flight, t.requests, t.errors, t.latency_sum, t.last_error
                )
                for t in self.pool.targets
            ],
        )

    def close(self) -> None:
        """Called from a worker thread: the client's connections belong to the loop."""
        self._closed = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.pool.close(), loop)
        try:
            future.result(timeout=5)
        except Exception:  # the loop is stopping: its connections go with it
            log.debug("closing the upstream client of %s", self.info.id, exc_info=True)


def _embeddings(payload: Any, n: int) -> tuple[list[list[float]], int]:
    """The vectors of an embeddings answer, in input order and L2-normalised (as Hearth's own
    are), and its token count; ValueError (or a lookup error) when it is not that."""
    data = payload["data"]
    if not isinstance(data, list) or len(data) != n:
        raise ValueError("not one embedding per input")
    vectors = []
    for item in sorted(data, key=lambda d: int(d.get("index", 0))):
        vector = np.asarray(item["embedding"], dtype=np.float64)
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise ValueError("not a vector of numbers")
        norm = float(np.linalg.norm(vector))
        vectors.append((vector / norm if norm > 0 else vector).tolist())
    return vectors, int((payload.get("usage") or {}).get("prompt_tokens") or 0)


async def _error_body(response: httpx.Response) -> Any:
    """An error answer's JSON (bounded), or its text."""
    raw = b""
    with contextlib.suppress(httpx.HTTPError):
        async for part in response.aiter_bytes():
            raw += part
            if len(raw) > MAX_ERROR_BODY:
                break
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:500].decode(errors="replace").strip() or None


async def _sse(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event stream (comments and other fields
    skipped; one payload per event, its lines joined). Split as bytes: a token's event is
    read, split and parsed without a text decoding pass (json takes UTF-8 bytes)."""
    data: list[bytes] = []
    rest = b""
    async for part in response.aiter_bytes():
        lines = (rest + part).split(b"\n")
        rest = lines.pop()
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
    if rest.startswith(b"data:"):
        data.append(rest[5:].removeprefix(b" "))
    if data:
        yield b"\n".join(data)
