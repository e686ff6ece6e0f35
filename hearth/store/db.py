"""Opening Hearth's SQLite database: connection settings and numbered migrations.

Every table belongs to hearth.store.store; nothing else opens the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hearth.errors import ConfigError

# Migration N (1-based) takes a database from user_version N-1 to N. Never edit a shipped
# step: add one. Each runs in one transaction with its user_version bump.
MIGRATIONS: list[str] = [
    # 1: responses with their items, conversations with theirs.
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        previous_response_id TEXT,      -- no foreign key: a parent may be deleted
        conversation_id TEXT,           -- nor here: a response outlives its conversation
        body TEXT NOT NULL,             -- the response object as sent (JSON)
        events TEXT                     -- the stream's events (JSON list) or NULL
    );
    CREATE TABLE response_items (
        response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (response_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX responses_by_conversation ON responses(conversation_id);
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE TABLE conversation_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the conversation's order
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        response_id TEXT                -- the response whose turn added it, if any
    );
    CREATE INDEX conversation_items_by_id ON conversation_items(conversation_id, item_id);
    """,
    # 2: retention counts from the last use, not from creation.
    """
    ALTER TABLE responses ADD COLUMN last_used_at REAL NOT NULL DEFAULT 0;
    UPDATE responses SET last_used_at = created_at;
    ALTER TABLE conversations ADD COLUMN last_used_at REAL NOT NULL DEFAULT 0;
    UPDATE conversations SET last_used_at = created_at;
    CREATE INDEX responses_by_last_use ON responses(last_used_at);
    CREATE INDEX conversations_by_last_use ON conversations(last_used_at);
    """,
    # 3: the request log, one row per API request.
    """
    CREATE TABLE requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the log's order and its page cursor
        time REAL NOT NULL,                     -- when the request arrived (Unix seconds)
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT NOT NULL,                    -- the route's template, /v1/responses/{id}
        path TEXT NOT NULL,
        api TEXT NOT NULL,                      -- openai, ollama, anthropic or hearth
        model TEXT,
        status INTEGER NOT NULL,
        error_type TEXT,
        error_code TEXT,
        prompt_tokens INTEGER,
        cached_tokens INTEGER,
        completion_tokens INTEGER,
        ttft_ms REAL,
        latency_ms REAL NOT NULL,
        client TEXT,
        api_key_name TEXT,                      -- the key's name, never the key
        request_body TEXT,                      -- only with --request-log-bodies
        output TEXT
    );
    CREATE INDEX requests_by_time ON requests(time);
    """,
]


def connect(path: Path) -> sqlite3.Connection:
    """One connection with Hearth's settings. Autocommit mode: transactions are explicit
    (BEGIN IMMEDIATE for writes), so nothing commits behind the caller's back."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    # WAL: readers never block the writer nor each other. NORMAL: a commit survives a
    # crashed or killed process (the WAL is in the OS's cache); only power loss may lose it.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks, each in its own transaction; returns the
    version it is at now. A database from a newer Hearth is refused, never downgraded."""
    while True:
        conn.execute("BEGIN IMMEDIATE")  # another process may be migrating: read under lock
        try:
            version = schema_version(conn)
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"the database is at schema version {version}, newer than this Hearth "
                    f"knows ({len(MIGRATIONS)}); upgrade Hearth or use another --data-dir"
                )
            if version == len(MIGRATIONS):
                conn.execute("COMMIT")
                return version
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """A script split into statements (executescript would commit the open transaction)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def open_database(path: Path) -> sqlite3.Connection:
    """The database at `path`, created or upgraded in place to the current schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = connect(path)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"cannot open the database {path}: {exc}") from exc
    try:
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"cannot open the database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn
