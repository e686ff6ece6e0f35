"""The store: stored responses (with their items and stream events), conversations and their
items, and retention. Synchronous and thread-safe; async callers use asyncio.to_thread.

One writer (a lock around each write transaction), readers concurrent (WAL, a small pool of
connections). Every write is one transaction, so a killed process leaves each response and
conversation either whole or absent."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.errors import Conflict, NotFoundError, ServiceUnavailable
from hearth.store.db import connect, open_database

Item = dict[str, Any]  # one Responses/Conversations item as JSON, always with an "id"
Order = Literal["asc", "desc"]
# A request-log row for the charts: time, status, completion tokens, TTFT ms, latency ms.
Sample = tuple[float, int, int, float | None, float]


@dataclass
class StoredResponse:
    """A finished response as stored: its turn's items, the object sent, the stream's events."""

    id: str  # "resp_..."
    created_at: int  # unix seconds
    model: str
    status: str  # completed | incomplete | failed | cancelled
    previous_response_id: str | None
    conversation_id: str | None
    input_items: list[Item]  # this turn's input items (ids assigned by the caller)
    output_items: list[Item]  # this turn's output items
    body: dict[str, Any]  # the whole response object as returned to the client
    # The events as a stream sent them (every response is made through the same events),
    # for GET ?stream=true; None for records written without them.
    events: list[dict[str, Any]] | None = None


@dataclass
class Page:
    """One page of a list, as OpenAI's cursor lists describe it."""

    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool


@dataclass
class Conversation:
    id: str  # "conv_..."
    created_at: int
    metadata: dict[str, str]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _item_id(item: Item) -> str:
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ValueError("every stored item needs an 'id'")
    return item_id


def _page(data: list[Item], has_more: bool) -> Page:
    return Page(
        data=data,
        first_id=data[0]["id"] if data else None,
        last_id=data[-1]["id"] if data else None,
        has_more=has_more,
    )


def paginate(
    items: list[Item], *, after: str | None, before: str | None, limit: int, order: Order
) -> Page:
    """A page of `items` (oldest first): `after`/`before` are item ids in the listing's order;
    with `before` alone the page is the `limit` items right before it (the previous page)."""
    listed = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in listed]
    start, end = 0, len(listed)
    if after is not None:
        if after not in ids:
            raise NotFoundError(f"No item with id '{after}' in this list.", param="after")
        start = ids.index(after) + 1
    if before is not None:
        if before not in ids:
            raise NotFoundError(f"No item with id '{before}' in this list.", param="before")
        end = ids.index(before)
    window = listed[start:end]
    if before is not None and after is None:
        return _page(window[max(0, len(window) - limit) :], len(window) > limit)
    return _page(window[:limit], len(window) > limit)


# The request log's columns, as the rows handed to add_requests name them.
REQUEST_COLUMNS = (
    "time",
    "request_id",
    "method",
    "route",
    "path",
    "api",
    "model",
    "status",
    "error_type",
    "error_code",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "ttft_ms",
    "latency_ms",
    "client",
    "api_key_name",
    "request_body",
    "output",
)


class Store:
    """Hearth's SQLite store. `ttl_seconds` None keeps everything; `expire` archives expired
    conversations as JSON under `archive_dir`."""

    def __init__(self, path: Path, *, ttl_seconds: float | None, archive_dir: Path):
        self.path = path
        self.ttl_seconds = ttl_seconds
        self.archive_dir = archive_dir
        self._writer = open_database(path)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    def close(self) -> None:
        """Close every connection; later calls fail with 503."""
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._writer.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole."""
        with self._write_lock:
            if self._closed:
                raise ServiceUnavailable("the store is closed")
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one snapshot however many queries it runs."""
        with self._pool_lock:
            if self._closed:
                raise ServiceUnavailable("the store is closed")
            db = self._readers.pop() if self._readers else None
        if db is None:
            db = connect(self.path)
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("ROLLBACK")
            with self._pool_lock:
                if self._closed:
                    db.close()
                else:
                    self._readers.append(db)

    # -- responses ------------------------------------------------------------------------------

    def put_response(self, r: StoredResponse) -> None:
        """Store a finished response and its items; with a conversation, append the turn's
        input then output items to it. Its ancestors count as used now (retention)."""
        rows = [
            (r.id, i, kind, _item_id(item), _dumps(item))
            for i, (kind, item) in enumerate(
                [("input", x) for x in r.input_items] + [("output", x) for x in r.output_items]
            )
        ]
        now = time.time()
        with self._write() as db:
            if r.conversation_id is not None and not _exists(db, r.conversation_id):
                raise _no_conversation(r.conversation_id, param="conversation")
            try:
                db.execute(
                    "INSERT INTO responses (id, created_at, model, status, previous_response_id,"
                    " conversation_id, body, events, last_used_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.id,
                        r.created_at,
                        r.model,
                        r.status,
                        r.previous_response_id,
                        r.conversation_id,
                        _dumps(r.body),
                        None if r.events is None else _dumps(r.events),
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a response with id '{r.id}' is already stored") from None
            db.executemany("INSERT INTO response_items VALUES (?, ?, ?, ?, ?)", rows)
            if r.previous_response_id is not None:
                # A chain is only as alive as its newest turn: keep every ancestor with it.
                db.execute(
                    "WITH RECURSIVE up(id) AS (SELECT ? UNION"
                    " SELECT r.previous_response_id FROM responses r JOIN up ON r.id = up.id"
                    " WHERE r.previous_response_id IS NOT NULL)"
                    " UPDATE responses SET last_used_at = ? WHERE id IN up",
                    (r.previous_response_id, now),
                )
            if r.conversation_id is not None:
                _append(db, r.conversation_id, r.input_items + r.output_items, r.id, now)

    def get_response(self, response_id: str) -> StoredResponse | None:
        with self._read() as db:
            return _load_response(db, response_id)

    def delete_response(self, response_id: str) -> bool:
        """Delete a response and its items (items it added to a conversation stay there)."""
        with self._write() as db:
            return db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def input_items(
        self,
        response_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> Page | None:
        """The response's whole input as the model saw it: in a conversation, the items it
        held before this turn; in a chain, every earlier turn's input and output; then this
        turn's input. None: no such response."""
        with self._read() as db:
            r = _load_response(db, response_id)
            if r is None:
                return None
            prefix: list[Item] = []
            if r.conversation_id is not None:
                prefix = [
                    json.loads(row[0])
                    for row in db.execute(
                        "SELECT item FROM conversation_items WHERE conversation_id = ? AND seq <"
                        " (SELECT MIN(seq) FROM conversation_items WHERE response_id = ?)"
                        " ORDER BY seq",
                        (r.conversation_id, r.id),
                    )
                ]
            elif r.previous_response_id is not None:
                # An ancestor deleted since: what is left of the chain.
                for earlier in _walk(db, r.previous_response_id)[0]:
                    prefix += earlier.input_items + earlier.output_items
        items = prefix + r.input_items
        return paginate(items, after=after, before=before, limit=limit, order=order)

    def chain(self, response_id: str) -> list[StoredResponse] | None:
        """The response and its ancestors, oldest first; None if it or an ancestor is gone."""
        with self._read() as db:
            found, whole = _walk(db, response_id)
        return found if whole else None

    # -- conversations --------------------------------------------------------------------------

    def create_conversation(self, metadata: dict[str, str], items: list[Item]) -> Conversation:
        conv = Conversation(f"conv_{uuid.uuid4().hex}", int(time.time()), dict(metadata))
        for item in items:
            _item_id(item)
        with self._write() as db:
            db.execute(
                "INSERT INTO conversations (id, created_at, metadata, last_used_at)"
                " VALUES (?, ?, ?, ?)",
                (conv.id, conv.created_at, _dumps(conv.metadata), time.time()),
            )
            _append(db, conv.id, items, None, time.time())
        return conv

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        with self._read() as db:
            return _load_conversation(db, conversation_id)

    def list_conversations(
        self, *, limit: int, after: str | None = None
    ) -> tuple[list[Conversation], bool]:
        """Conversations, most recently used first; `after` resumes past that one."""
        with self._read() as db:
            where: str = ""
            args: tuple[Any, ...] = ()
            if after is not None:
                row = db.execute(
                    "SELECT last_used_at FROM conversations WHERE id = ?", (after,)
                ).fetchone()
                if row is None:
                    raise _no_conversation(after, param="after")
                # (last use, id) orders ties the same way on every page.
                where, args = " WHERE (last_used_at, id) < (?, ?)", (row[0], after)
            rows = db.execute(
                f"SELECT id, created_at, metadata FROM conversations{where}"
                " ORDER BY last_used_at DESC, id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        found = [Conversation(r[0], r[1], json.loads(r[2])) for r in rows[:limit]]
        return found, len(rows) > limit

    def update_conversation(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> Conversation | None:
        """Replace the conversation's metadata."""
        with self._write() as db:
            db.execute(
                "UPDATE conversations SET metadata = ?, last_used_at = ? WHERE id = ?",
                (_dumps(metadata), time.time(), conversation_id),
            )
            return _load_conversation(db, conversation_id)

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and its items; its responses stay, as standalone ones."""
        with self._write() as db:
            deleted = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return deleted.rowcount > 0

    def conversation_items(
        self,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> Page | None:
        """One page of the conversation's items; None: no such conversation."""
        asc = order == "asc"
        with self._read() as db:
            if not _exists(db, conversation_id):
                return None
            bound = None
            if after is not None:
                # An id a client reused twice: resume at the occurrence that repeats rather
                # than skips items.
                row = db.execute(
                    f"SELECT {'MIN' if asc else 'MAX'}(seq) FROM conversation_items"
                    " WHERE conversation_id = ? AND item_id = ?",
                    (conversation_id, after),
                ).fetchone()
                if row[0] is None:
                    raise NotFoundError(f"Item with id '{after}' not found.", param="after")
                bound = row[0]
            where = "conversation_id = ?" + (
                "" if bound is None else f" AND seq {'>' if asc else '<'} ?"
            )
            args: tuple[Any, ...] = (
                (conversation_id,) if bound is None else (conversation_id, bound)
            )
            rows = db.execute(
                f"SELECT item FROM conversation_items WHERE {where}"
                f" ORDER BY seq {'ASC' if asc else 'DESC'} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        data = [json.loads(row[0]) for row in rows[:limit]]
        return _page(data, len(rows) > limit)

    def all_conversation_items(self, conversation_id: str) -> list[Item] | None:
        """Every item, oldest first (to build a prompt); None: no such conversation."""
        with self._read() as db:
            if not _exists(db, conversation_id):
                return None
            return _conversation_items(db, conversation_id)

    def add_items(self, conversation_id: str, items: list[Item]) -> list[Item] | None:
        """Append items; None: no such conversation."""
        for item in items:
            _item_id(item)
        with self._write() as db:
            if not _exists(db, conversation_id):
                return None
            _append(db, conversation_id, items, None, time.time())
        return items

    def get_item(self, conversation_id: str, item_id: str) -> Item | None:
        with self._read() as db:
            row = db.execute(
                "SELECT item FROM conversation_items WHERE conversation_id = ? AND item_id = ?"
                " ORDER BY seq DESC LIMIT 1",
                (conversation_id, item_id),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def delete_item(self, conversation_id: str, item_id: str) -> bool:
        with self._write() as db:
            deleted = db.execute(
                "DELETE FROM conversation_items WHERE conversation_id = ? AND item_id = ?",
                (conversation_id, item_id),
            ).rowcount
            if deleted:
                _touch(db, conversation_id, time.time())
            return deleted > 0

    # -- retention ------------------------------------------------------------------------------

    # -- the request log ---------------------------------------------------------------------

    def add_requests(self, rows: list[dict[str, Any]]) -> None:
        """Append request-log rows (REQUEST_COLUMNS) in one transaction."""
        if not rows:
            return
        sql = (
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})"
        )
        with self._write() as db:
            db.executemany(sql, [tuple(r.get(c) for c in REQUEST_COLUMNS) for r in rows])

    def request_samples(self, since: float) -> list[Sample]:
        """(time, status, completion tokens, TTFT ms, latency ms) of the requests that asked
        for work (not GETs: the UI's own reads would swamp them) since then, oldest first:
        what the UI's charts are drawn from."""
        with self._read() as db:
            rows = db.execute(
                "SELECT time, status, COALESCE(completion_tokens, 0), ttft_ms, latency_ms"
                " FROM requests WHERE time >= ? AND method != 'GET' ORDER BY time",
                (since,),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def list_requests(
        self,
        *,
        limit: int,
        before: int | None = None,
        model: str | None = None,
        status: int | None = None,
        route: str | None = None,
        since: float | None = None,
        errors: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; `before` is a row's `seq` (the next page starts below it). Returns
        the rows and whether more match."""
        where, args = [], []
        for clause, value in (
            ("seq < ?", before),
            ("model = ?", model),
            ("status = ?", status),
            ("route = ?", route),
            ("time >= ?", since),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        if errors:
            where.append("status >= 400")
        sql = f"SELECT seq, {', '.join(REQUEST_COLUMNS)} FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._read() as db:
            rows = db.execute(sql, (*args, limit + 1)).fetchall()
        names = ("seq", *REQUEST_COLUMNS)
        return [dict(zip(names, row, strict=True)) for row in rows[:limit]], len(rows) > limit

    def prune_requests(self, *, older_than: float, keep_rows: int) -> int:
        """Drop rows from before `older_than` and all but the newest `keep_rows`."""
        with self._write() as db:
            gone = db.execute("DELETE FROM requests WHERE time < ?", (older_than,)).rowcount
            gone += db.execute(
                "DELETE FROM requests WHERE seq <= "
                "(SELECT seq FROM requests ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (keep_rows,),
            ).rowcount
        return int(gone)

    def expire(self, now: float | None = None) -> int:
        """Remove what was last used more than the TTL ago: each expired conversation is first
        written to `<archive_dir>/<id>.json` (metadata, items, its responses), then removed with
        its responses; standalone responses are deleted. Returns how many conversations and
        responses were removed. Use: created, written to, or continued (a later turn)."""
        if self.ttl_seconds is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.ttl_seconds
        with self._read() as db:
            expired = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM conversations WHERE last_used_at < ?", (cutoff,)
                )
            ]
        removed = 0
        for conversation_id in expired:  # one transaction each: the lock is held briefly
            with self._write() as db:
                removed += self._archive(db, conversation_id, cutoff)
        with self._write() as db:
            removed += db.execute(
                "DELETE FROM responses WHERE last_used_at < ? AND (conversation_id IS NULL"
                " OR conversation_id NOT IN (SELECT id FROM conversations))",
                (cutoff,),
            ).rowcount
        return removed

    def _archive(self, db: sqlite3.Connection, conversation_id: str, cutoff: float) -> int:
        row = db.execute(
            "SELECT last_used_at FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        conv = _load_conversation(db, conversation_id)
        if row is None or conv is None or row[0] >= cutoff:
            return 0  # deleted or used again since the scan
        response_ids = [
            r[0]
            for r in db.execute(
                "SELECT id FROM responses WHERE conversation_id = ? ORDER BY created_at, rowid",
                (conversation_id,),
            )
        ]
        responses = []
        for response_id in response_ids:
            stored = _load_response(db, response_id)
            if stored is not None:
                record = asdict(stored)
                record.pop("events")  # a replay of the stream; the body says it all
                responses.append(record)
        archive = {
            "object": "conversation.archive",
            "archived_at": int(time.time()),
            "conversation": {"object": "conversation", **asdict(conv)},
            "last_used_at": row[0],
            "items": _conversation_items(db, conversation_id),
            "responses": responses,
        }
        # The file is on disk (fsync'd, renamed into place) before the rows go.
        _write_json(self.archive_dir / f"{conversation_id}.json", archive)
        db.execute("DELETE FROM responses WHERE conversation_id = ?", (conversation_id,))
        db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        return 1 + len(response_ids)


# -- queries on a connection inside a transaction ---------------------------------------------


def _no_conversation(conversation_id: str, param: str | None = None) -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.", param=param)


def _exists(db: sqlite3.Connection, conversation_id: str) -> bool:
    query = "SELECT 1 FROM conversations WHERE id = ?"
    return db.execute(query, (conversation_id,)).fetchone() is not None


def _touch(db: sqlite3.Connection, conversation_id: str, now: float) -> None:
    db.execute("UPDATE conversations SET last_used_at = ? WHERE id = ?", (now, conversation_id))


def _append(
    db: sqlite3.Connection,
    conversation_id: str,
    items: list[Item],
    response_id: str | None,
    now: float,
) -> None:
    db.executemany(
        "INSERT INTO conversation_items (conversation_id, item_id, item, response_id)"
        " VALUES (?, ?, ?, ?)",
        [(conversation_id, _item_id(item), _dumps(item), response_id) for item in items],
    )
    _touch(db, conversation_id, now)


def _conversation_items(db: sqlite3.Connection, conversation_id: str) -> list[Item]:
    rows = db.execute(
        "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY seq",
        (conversation_id,),
    )
    return [json.loads(row[0]) for row in rows]


def _load_conversation(db: sqlite3.Connection, conversation_id: str) -> Conversation | None:
    row = db.execute(
        "SELECT id, created_at, metadata FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    return None if row is None else Conversation(row[0], row[1], json.loads(row[2]))


def _load_response(db: sqlite3.Connection, response_id: str) -> StoredResponse | None:
    row = db.execute(
        "SELECT id, created_at, model, status, previous_response_id, conversation_id, body,"
        " events FROM responses WHERE id = ?",
        (response_id,),
    ).fetchone()
    if row is None:
        return None
    inputs: list[Item] = []
    outputs: list[Item] = []
    for kind, item in db.execute(
        "SELECT kind, item FROM response_items WHERE response_id = ? ORDER BY position",
        (response_id,),
    ):
        (inputs if kind == "input" else outputs).append(json.loads(item))
    return StoredResponse(
        id=row[0],
        created_at=row[1],
        model=row[2],
        status=row[3],
        previous_response_id=row[4],
        conversation_id=row[5],
        input_items=inputs,
        output_items=outputs,
        body=json.loads(row[6]),
        events=None if row[7] is None else json.loads(row[7]),
    )


def _walk(db: sqlite3.Connection, response_id: str) -> tuple[list[StoredResponse], bool]:
    """The response and the ancestors found, oldest first, and whether none was missing."""
    found: list[StoredResponse] = []
    seen: set[str] = set()
    current: str | None = response_id
    while current is not None and current not in seen:
        seen.add(current)
        stored = _load_response(db, current)
        if stored is None:
            return found[::-1], False
        found.append(stored)
        current = stored.previous_response_id
    return found[::-1], True


def _write_json(path: Path, value: Any) -> None:
    """Write a file whole or not at all: a temporary file, fsync'd, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
