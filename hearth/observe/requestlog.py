"""The request log: one row per API request in the store's `requests` table.

Requests never wait for it: a finished request's row goes on a queue, and a writer thread
inserts what has gathered in one transaction, twice a second. When the database is busy
(another process holding a lock) the batch is kept and retried; past MAX_PENDING rows the
oldest are dropped with a warning rather than growing without bound."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from typing import Any

from hearth.errors import HearthError
from hearth.observe.record import RequestRecord
from hearth.store.store import Store

log = logging.getLogger("hearth.requestlog")

FLUSH_SECONDS = 0.5
PRUNE_SECONDS = 60.0
MAX_PENDING = 10_000
BODY_LIMIT = 64 * 1024  # bytes of a body or an output kept with --request-log-bodies


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    cut = data[:BODY_LIMIT]
    return cut.decode("utf-8", "replace") + ("…" if len(data) > BODY_LIMIT else "")


class RequestLog:
    def __init__(self, store: Store, *, days: float, rows: int, bodies: bool):
        self.store = store
        self.days = days
        self.rows = rows
        self.bodies = bodies
        self._pending: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._last_prune = 0.0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="hearth-request-log", daemon=True)
        self._thread.start()

    def add(self, record: RequestRecord, api: str, route: str, latency: float) -> None:
        """Queue a finished request's row (called on the event loop; never blocks)."""
        row = {
            "time": record.wall,
            "request_id": record.request_id,
            "method": record.method,
            "route": route,
            "path": record.path[:2048],
            "api": api,
            "model": record.model or record.asked_model,
            "status": record.status,
            "error_type": record.error_type,
            "error_code": record.error_code,
            "prompt_tokens": record.prompt_tokens,
            "cached_tokens": record.cached_tokens,
            "completion_tokens": record.completion_tokens,
            "ttft_ms": None if record.ttft is None else round(record.ttft * 1000, 2),
            "latency_ms": round(latency * 1000, 2),
            "client": record.client,
            "api_key_name": record.api_key_name,
            "request_body": _text(record.request_body) if self.bodies else None,
            "output": _text(record.output) if self.bodies else None,
        }
        with self._lock:
            self._pending.append(row)
            if len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.warning("the request log is behind; %d rows dropped", self.dropped)

    def flush(self) -> None:
        """Write what is queued now (tests, shutdown)."""
        self._write_pending()

    def close(self) -> None:
        """Write the rest and stop the writer (before the store closes)."""
        self._stop = True
        self._wake.set()
        self._thread.join(10)
        self._write_pending()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(FLUSH_SECONDS)
            if self._stop:
                return
            self._write_pending()
            if time.monotonic() - self._last_prune > PRUNE_SECONDS:
                self._prune()

    def _write_pending(self) -> None:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        if not batch:
            return
        try:
            self.store.add_requests(batch)
        except (sqlite3.Error, HearthError) as exc:  # locked, or closed: kept for the next try
            log.warning("request log write postponed: %s", exc)
            with self._lock:
                self._pending.extendleft(reversed(batch))
                while len(self._pending) > MAX_PENDING:
                    self._pending.popleft()
                    self.dropped += 1

    def _prune(self) -> None:
        self._last_prune = time.monotonic()
        try:
            gone = self.store.prune_requests(
                older_than=time.time() - self.days * 86400, keep_rows=self.rows
            )
        except (sqlite3.Error, HearthError) as exc:
            log.warning("request log pruning postponed: %s", exc)
            return
        if gone:
            log.debug("request log: %d old rows removed", gone)
