"""An upstream model's base URLs: which one takes the next request (round-robin or least
busy, healthy ones first), retries on the next when a connection fails (only then: once the
upstream has answered, nothing is sent twice), and a health check that marks each down and
up again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from hearth.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger("hearth.upstream")

CONNECT_TIMEOUT = 5.0
HEALTH_INTERVAL = 5.0
HEALTH_TIMEOUT = 2.0
ATTEMPTS = 3  # connection attempts per request, each on the next base URL
BACKOFF = 0.1  # seconds before the second attempt, doubling

Balance = Literal["round-robin", "least-busy"]

# A connection that failed before the upstream received the request (or before it
# answered a byte: a pooled connection it had closed meanwhile).
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


@dataclass(slots=True)
class Target:
    """One base URL and what is known of it."""

    url: str
    up: bool = True
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0  # seconds to response headers, summed over `requests`
    last_error: str | None = None
    checked_at: float = field(default=0.0)

    def down(self, why: str) -> None:
        if self.up:
            log.warning("upstream %s is down: %s", self.url, why)
        self.up, self.last_error = False, why


class UpstreamPool:
    """The base URLs of one upstream model, with one HTTP client (connection pool) for all."""

    def __init__(
        self,
        urls: list[str],
        *,
        api_key: str | None,
        timeout_s: float | None,
        balance: Balance = "round-robin",
        health_interval: float = HEALTH_INTERVAL,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.targets = [Target(url) for url in urls]
        self.balance = balance
        self.health_interval = health_interval
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # `read` is the longest silence between two bytes: `timeout_s`, or ten minutes.
        timeout = httpx.Timeout(timeout_s or 600.0, connect=CONNECT_TIMEOUT, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(
            headers=headers, timeout=timeout, limits=limits, transport=transport
        )
        self._next = 0
        self._health: asyncio.Task[None] | None = None

    # -- choosing ------------------------------------------------------------------------------

    def order(self) -> list[Target]:
        """The targets in the order to try them: healthy first (by the balance policy), then
        the ones marked down (a stale mark must not fail a request that could succeed)."""
        n = len(self.targets)
        start = self._next % n
        self._next += 1
        ring = [self.targets[(start + i) % n] for i in range(n)]
        if self.balance == "least-busy":
            ring.sort(key=lambda t: t.in_flight)  # stable: ties stay round-robin
        return [t for t in ring if t.up] + [t for t in ring if not t.up]

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[tuple[Target, httpx.Response]]:
        """POST `body` to `path` on the first target that accepts the connection; yields
        the response once its headers are in (its body still to read). Retries on the next
        target with backoff when a connection fails; never after a response has begun."""
        order = self.order()
        last: str = "no base URL"
        for attempt in range(ATTEMPTS if order else 0):
            target = order[attempt % len(order)]
            if attempt:
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
            request = self.client.build_request("POST", target.url + path, json=body)
            started = time.monotonic()
            target.in_flight += 1
            try:
                try:
                    response = await self.client.send(request, stream=True)
                except _CONNECT_ERRORS as exc:
                    last = f"{target.url}: {_describe(exc)}"
                    target.errors += 1
                    target.down(_describe(exc))
                    continue
                except httpx.TimeoutException:
                    target.errors += 1
                    raise UpstreamTimeout(
                        f"the upstream server ({target.url}) did not answer within the "
                        "model's timeout_s"
                    ) from None
                except httpx.HTTPError as exc:  # the request may have reached it: no retry
                    target.errors += 1
                    raise UpstreamError(
                        f"the upstream server ({target.url}) failed: {_describe(exc)}"
                    ) from None
                target.requests += 1
                target.latency_sum += time.monotonic() - started
                try:
                    yield target, response
                finally:
                    await response.aclose()  # mid-way: closes the connection (the upstream aborts)
                return
            finally:
                target.in_flight -= 1
        raise UpstreamUnreachable(f"no upstream server answered: {last}")

    # -- health --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic health check on the running loop (once)."""
        if self._health is None or self._health.done():
            self._health = asyncio.get_running_loop().create_task(
                self._check_forever(), name="upstream health"
            )

    async def _check_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.check(t) for t in self.targets))
            await asyncio.sleep(self.health_interval)

    async def check(self, target: Target) -> bool:
        """GET /health (vLLM, SGLang, llama.cpp, Hearth), else /v1/models: up when it is
        200."""
        target.checked_at = time.time()
        why = "no answer"
        for path in ("/health", "/v1/models"):
            try:
                response = await self.client.get(target.url + path, timeout=HEALTH_TIMEOUT)
            except httpx.HTTPError as exc:
                why = _describe(exc)
                break  # not reachable: the other path would not be either
            if response.status_code == 200:
                if not target.up:
                    log.info("upstream %s is up again", target.url)
                target.up, target.last_error = True, None
                return True
            why = f"{path}: HTTP {response.status_code}"
        target.down(why)
        return False

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._health
        await self.client.aclose()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
