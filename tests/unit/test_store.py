"""The store: responses, chains, input items, conversations, retention, migrations, and that
nothing is half-written when the process is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hearth.errors import ConfigError, Conflict, NotFoundError
from hearth.store import Item, Store, StoredResponse
from hearth.store.db import MIGRATIONS, _statements, open_database
from hearth.store.retention import parse_ttl, retention_interval, start_retention

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "hearth.db", ttl_seconds=3600, archive_dir=tmp_path / "logs")
    yield s
    s.close()


def msg(item_id: str, text: str = "hi", role: str = "user") -> Item:
    return {"type": "message", "id": item_id, "role": role, "content": text}


def response(
    rid: str,
    inputs: list[Item],
    outputs: list[Item],
    *,
    previous: str | None = None,
    conversation: str | None = None,
    events: list[dict[str, Any]] | None = None,
) -> StoredResponse:
    return StoredResponse(
        id=rid,
        created_at=int(time.time()),
        model="m",
        status="completed",
        previous_response_id=previous,
        conversation_id=conversation,
        input_items=inputs,
        output_items=outputs,
        body={"id": rid, "object": "response", "output": outputs},
        events=events,
    )


def ids(items: list[Item]) -> list[str]:
    return [item["id"] for item in items]


# -- the database -------------------------------------------------------------------------------


def test_new_database_settings_and_version(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "sub" / "hearth.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 3
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    conn.close()


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    old = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[0]):
        old.execute(statement)
    old.execute(
        "INSERT INTO responses VALUES ('resp_old', 1000, 'm', 'completed', NULL, NULL,"
        ' \'{"id": "resp_old"}\', NULL)'
    )
    item = json.dumps(msg("msg_1", "from v1"))
    old.execute("INSERT INTO response_items VALUES ('resp_old', 0, 'input', 'msg_1', ?)", (item,))
    old.execute("INSERT INTO conversations VALUES ('conv_old', 1000, '{\"k\": \"v\"}')")
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()

    s = Store(path, ttl_seconds=None, archive_dir=tmp_path / "logs")
    stored = s.get_response("resp_old")
    assert stored is not None and stored.input_items == [msg("msg_1", "from v1")]
    conv = s.get_conversation("conv_old")
    assert conv is not None and conv.metadata == {"k": "v"}
    s.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 3
    # v2's column, filled from created_at so old rows age from when they were made
    assert check.execute("SELECT last_used_at FROM responses").fetchone()[0] == 1000
    check.close()


def test_a_database_from_a_newer_hearth_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        Store(path, ttl_seconds=None, archive_dir=tmp_path)


def test_a_file_that_is_no_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot open"):
        Store(path, ttl_seconds=None, archive_dir=tmp_path)


# -- responses ----------------------------------------------------------------------------------


def test_response_round_trip_and_delete(store: Store) -> None:
    events = [{"type": "response.created", "sequence_number": 0}]
    r = response("resp_1", [msg("msg_1")], [msg("msg_2", "hello", "assistant")], events=events)
    store.put_response(r)
    assert store.get_response("resp_1") == r
    with pytest.raises(Conflict):
        store.put_response(r)
    assert store.delete_response("resp_1") is True
    assert store.get_response("resp_1") is None
    assert store.delete_response("resp_1") is False
    assert store.input_items("resp_1") is None


def test_an_item_without_id_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="id"):
        store.put_response(response("resp_1", [{"type": "message", "role": "user"}], []))
    assert store.get_response("resp_1") is None


def three_turns(store: Store) -> None:
    store.put_response(response("resp_1", [msg("in_1")], [msg("out_1", role="assistant")]))
    store.put_response(
        response("resp_2", [msg("in_2")], [msg("out_2", role="assistant")], previous="resp_1")
    )
    store.put_response(
        response("resp_3", [msg("in_3a"), msg("in_3b")], [msg("out_3")], previous="resp_2")
    )


def test_chain_oldest_first_and_broken_chains(store: Store) -> None:
    three_turns(store)
    chain = store.chain("resp_3")
    assert chain is not None and [r.id for r in chain] == ["resp_1", "resp_2", "resp_3"]
    assert store.chain("resp_nope") is None
    store.delete_response("resp_2")
    assert store.chain("resp_3") is None
    chain = store.chain("resp_1")
    assert chain is not None and [r.id for r in chain] == ["resp_1"]


def test_input_items_are_the_whole_input_the_model_saw(store: Store) -> None:
    three_turns(store)
    everything = ["in_1", "out_1", "in_2", "out_2", "in_3a", "in_3b"]
    page = store.input_items("resp_3", order="asc", limit=100)
    assert page is not None and ids(page.data) == everything and not page.has_more
    page = store.input_items("resp_3")  # desc by default
    assert page is not None and ids(page.data) == everything[::-1]
    assert (page.first_id, page.last_id) == ("in_3b", "in_1")


def test_input_items_pagination(store: Store) -> None:
    items = [msg(f"m{i}") for i in range(7)]
    store.put_response(response("resp_1", items, []))

    def listed(**kw: Any) -> tuple[list[str], bool, str | None, str | None]:
        page = store.input_items("resp_1", **kw)
        assert page is not None
        return ids(page.data), page.has_more, page.first_id, page.last_id

    assert listed(order="asc", limit=3) == (["m0", "m1", "m2"], True, "m0", "m2")
    assert listed(order="asc", limit=3, after="m2") == (["m3", "m4", "m5"], True, "m3", "m5")
    assert listed(order="asc", limit=3, after="m5") == (["m6"], False, "m6", "m6")
    assert listed(order="asc", limit=3, after="m6") == ([], False, None, None)
    assert listed(order="desc", limit=2) == (["m6", "m5"], True, "m6", "m5")
    assert listed(order="desc", limit=2, after="m5") == (["m4", "m3"], True, "m4", "m3")
    # before: the page right before the cursor, in the listing's order
    assert listed(order="asc", limit=2, before="m5") == (["m3", "m4"], True, "m3", "m4")
    assert listed(order="asc", limit=9, before="m2") == (["m0", "m1"], False, "m0", "m1")
    assert listed(order="desc", limit=2, before="m2") == (["m4", "m3"], True, "m4", "m3")
    assert listed(order="asc", after="m1", before="m4") == (["m2", "m3"], False, "m2", "m3")
    with pytest.raises(NotFoundError) as err:
        store.input_items("resp_1", after="nope")
    assert err.value.param == "after"


def test_a_conversation_turn_appends_input_then_output(store: Store) -> None:
    conv = store.create_conversation({"topic": "t"}, [msg("c0", "context")])
    store.put_response(
        response("resp_1", [msg("in_1")], [msg("out_1", role="assistant")], conversation=conv.id)
    )
    store.put_response(response("resp_2", [msg("in_2")], [msg("out_2")], conversation=conv.id))
    assert ids(store.all_conversation_items(conv.id) or []) == [
        "c0",
        "in_1",
        "out_1",
        "in_2",
        "out_2",
    ]
    page = store.input_items("resp_2", order="asc")
    assert page is not None and ids(page.data) == ["c0", "in_1", "out_1", "in_2"]


def test_a_turn_in_an_unknown_conversation_writes_nothing(store: Store) -> None:
    with pytest.raises(NotFoundError) as err:
        store.put_response(response("resp_1", [msg("a")], [], conversation="conv_nope"))
    assert err.value.param == "conversation"
    assert store.get_response("resp_1") is None


# -- conversations ------------------------------------------------------------------------------


def test_conversation_crud(store: Store) -> None:
    conv = store.create_conversation({"a": "1"}, [msg("i1"), msg("i2")])
    assert conv.id.startswith("conv_") and conv.metadata == {"a": "1"}
    assert store.get_conversation(conv.id) == conv
    updated = store.update_conversation(conv.id, {"b": "2"})
    assert updated is not None and updated.metadata == {"b": "2"}
    assert updated.created_at == conv.created_at
    assert store.update_conversation("conv_nope", {}) is None
    assert store.delete_conversation(conv.id) is True
    assert store.get_conversation(conv.id) is None
    assert store.all_conversation_items(conv.id) is None
    assert store.delete_conversation(conv.id) is False


def test_conversation_items(store: Store) -> None:
    conv = store.create_conversation({}, [msg(f"i{i}") for i in range(5)])
    assert store.add_items(conv.id, [msg("i5"), msg("i6")]) == [msg("i5"), msg("i6")]
    assert store.add_items("conv_nope", [msg("x")]) is None
    assert store.get_item(conv.id, "i3") == msg("i3")
    assert store.get_item(conv.id, "nope") is None
    assert store.get_item("conv_nope", "i3") is None

    page = store.conversation_items(conv.id, limit=3)  # newest first
    assert page is not None and ids(page.data) == ["i6", "i5", "i4"] and page.has_more
    page = store.conversation_items(conv.id, limit=3, after="i4")
    assert page is not None and ids(page.data) == ["i3", "i2", "i1"] and page.has_more
    page = store.conversation_items(conv.id, limit=3, after="i1")
    assert page is not None and ids(page.data) == ["i0"] and not page.has_more
    assert (page.first_id, page.last_id) == ("i0", "i0")
    page = store.conversation_items(conv.id, order="asc", limit=4, after="i2")
    assert page is not None and ids(page.data) == ["i3", "i4", "i5", "i6"]
    assert not page.has_more
    with pytest.raises(NotFoundError):
        store.conversation_items(conv.id, after="nope")
    assert store.conversation_items("conv_nope") is None

    assert store.delete_item(conv.id, "i3") is True
    assert store.delete_item(conv.id, "i3") is False
    assert ids(store.all_conversation_items(conv.id) or []) == [
        "i0",
        "i1",
        "i2",
        "i4",
        "i5",
        "i6",
    ]


def test_a_deleted_conversation_leaves_its_responses(store: Store) -> None:
    conv = store.create_conversation({}, [])
    store.put_response(response("resp_1", [msg("a")], [msg("b")], conversation=conv.id))
    store.delete_conversation(conv.id)
    stored = store.get_response("resp_1")
    assert stored is not None and ids(stored.input_items) == ["a"]


# -- retention ----------------------------------------------------------------------------------


def age(path: Path, table: str, row_id: str, seconds: float) -> None:
    """Pretend a row was last used `seconds` ago."""
    conn = sqlite3.connect(path)
    conn.execute(
        f"UPDATE {table} SET last_used_at = last_used_at - ? WHERE id = ?", (seconds, row_id)
    )
    conn.commit()
    conn.close()


def test_expire_archives_conversations_and_deletes_old_responses(tmp_path: Path) -> None:
    db, logs = tmp_path / "hearth.db", tmp_path / "logs"
    s = Store(db, ttl_seconds=100, archive_dir=logs)
    old = s.create_conversation({"k": "v"}, [msg("c0")])
    s.put_response(response("resp_c", [msg("in")], [msg("out")], conversation=old.id))
    fresh = s.create_conversation({}, [msg("f0")])
    s.put_response(response("resp_old", [msg("x")], []))
    s.put_response(response("resp_new", [msg("y")], []))
    for table, row in [
        ("conversations", old.id),
        ("responses", "resp_c"),
        ("responses", "resp_old"),
    ]:
        age(db, table, row, 500)

    assert s.expire() == 3  # the conversation, its response, the old standalone one
    assert s.get_conversation(old.id) is None and s.get_response("resp_c") is None
    assert s.get_response("resp_old") is None
    assert s.get_response("resp_new") is not None and s.get_conversation(fresh.id) is not None
    archive = json.loads((logs / f"{old.id}.json").read_text())
    assert archive["conversation"] == {
        "object": "conversation",
        "id": old.id,
        "created_at": old.created_at,
        "metadata": {"k": "v"},
    }
    assert ids(archive["items"]) == ["c0", "in", "out"]
    assert [r["id"] for r in archive["responses"]] == ["resp_c"]
    assert ids(archive["responses"][0]["output_items"]) == ["out"]
    assert list(logs.iterdir()) == [logs / f"{old.id}.json"]  # no temporary files left
    assert s.expire() == 0
    assert s.expire(now=time.time() + 1000) == 2  # later, the rest
    s.close()


def test_a_conversation_in_use_does_not_expire(tmp_path: Path) -> None:
    db = tmp_path / "hearth.db"
    s = Store(db, ttl_seconds=100, archive_dir=tmp_path / "logs")
    conv = s.create_conversation({}, [])
    age(db, "conversations", conv.id, 500)
    s.add_items(conv.id, [msg("new")])  # written to: used now
    assert s.expire() == 0
    s.close()


def test_continuing_a_chain_keeps_its_ancestors(tmp_path: Path) -> None:
    db = tmp_path / "hearth.db"
    s = Store(db, ttl_seconds=100, archive_dir=tmp_path / "logs")
    s.put_response(response("resp_1", [msg("a")], []))
    s.put_response(response("resp_2", [msg("b")], [], previous="resp_1"))
    age(db, "responses", "resp_1", 500)
    age(db, "responses", "resp_2", 500)
    s.put_response(response("resp_3", [msg("c")], [], previous="resp_2"))
    assert s.expire() == 0
    assert s.chain("resp_3") is not None
    s.close()


def test_no_ttl_keeps_everything(tmp_path: Path) -> None:
    s = Store(tmp_path / "hearth.db", ttl_seconds=None, archive_dir=tmp_path / "logs")
    s.create_conversation({}, [])
    assert s.expire(now=time.time() + 1e9) == 0
    s.close()


def test_the_retention_task_archives_with_a_short_ttl(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    s = Store(tmp_path / "hearth.db", ttl_seconds=0.2, archive_dir=logs)
    conv = s.create_conversation({}, [msg("a")])
    s.put_response(response("resp_1", [msg("b")], []))

    async def run() -> None:
        task = start_retention(s, 0.05)
        for _ in range(200):  # up to 10 s
            if s.get_response("resp_1") is None:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert s.get_conversation(conv.id) is None and s.get_response("resp_1") is None
    assert (logs / f"{conv.id}.json").is_file()
    s.close()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("12h", 43200.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("3600", 3600.0),
        (60, 60.0),
        (0, None),
        ("0", None),
        ("forever", None),
    ],
)
def test_parse_ttl(value: str | float, seconds: float | None) -> None:
    assert parse_ttl(value) == seconds


@pytest.mark.parametrize("value", ["", "10x", "-1d", "d", "1.5.5h", -5])
def test_parse_ttl_refuses(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_ttl(value)


def test_retention_interval() -> None:
    assert retention_interval(30 * 86400) == 3600
    assert retention_interval(0.2) == 1
    assert retention_interval(None) == 3600


# -- concurrency and crashes --------------------------------------------------------------------


def test_writers_and_readers_from_threads(store: Store) -> None:
    conv = store.create_conversation({}, [])
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                rid = f"resp_{n}_{i}"
                store.put_response(response(rid, [msg(f"in_{n}_{i}")], [msg(f"out_{n}_{i}")]))
                store.add_items(conv.id, [msg(f"c_{n}_{i}")])
                got = store.get_response(rid)
                assert got is not None and got.id == rid
                assert store.conversation_items(conv.id, limit=5) is not None
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items = store.all_conversation_items(conv.id) or []
    assert len(items) == 240 and len(set(ids(items))) == 240
    assert all(store.get_response(f"resp_{n}_39") is not None for n in range(6))


WRITER = """
import sys, time
from pathlib import Path
from hearth.store import Store, StoredResponse

store = Store(Path(sys.argv[1]), ttl_seconds=None, archive_dir=Path(sys.argv[2]))
conv = store.create_conversation({}, [])
print("conv", conv.id, flush=True)
for i in range(100000):
    items = [{"type": "message", "id": f"msg_{i}_{j}", "role": "user", "content": "x" * 200}
             for j in range(50)]
    r = StoredResponse(f"resp_{i}", int(time.time()), "m", "completed", None,
                       conv.id if i % 2 else None, items, items[:5], {"n": i, "pad": "y" * 5000})
    store.put_response(r)
    print("wrote", r.id, flush=True)
"""


def test_kill_9_mid_write_leaves_every_written_response(tmp_path: Path) -> None:
    db = tmp_path / "hearth.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    conv_id = proc.stdout.readline().split()[1]
    written = []
    for line in proc.stdout:
        written.append(line.split()[1])
        if len(written) >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)  # most likely inside the next write's transaction
    proc.wait()
    written += [line.split()[1] for line in proc.stdout.read().splitlines() if line]

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    s = Store(db, ttl_seconds=None, archive_dir=tmp_path / "logs")
    for rid in written:
        stored = s.get_response(rid)
        assert stored is not None, rid
        assert len(stored.input_items) == 50 and len(stored.output_items) == 5
    # A response is in the conversation whole (55 items) or not at all.
    items = s.all_conversation_items(conv_id) or []
    assert len(items) % 55 == 0
    n_conv = sum(1 for rid in written if int(rid.split("_")[1]) % 2)
    assert len(items) >= 55 * n_conv
    s.close()


def test_the_request_log_keeps_what_its_limits_allow(tmp_path: Path) -> None:
    s = Store(tmp_path / "h.db", ttl_seconds=None, archive_dir=tmp_path / "logs")
    row = {"request_id": "r", "method": "POST", "route": "/v1/x", "path": "/v1/x"}
    rows = [
        {**row, "time": t, "api": "openai", "status": 200, "latency_ms": 1.0} for t in range(10)
    ]
    s.add_requests(rows)
    assert s.prune_requests(older_than=3, keep_rows=100) == 3  # times 0, 1, 2
    assert s.prune_requests(older_than=0, keep_rows=4) == 3  # the newest 4 stay
    listed, more = s.list_requests(limit=10)
    assert [r["time"] for r in listed] == [9, 8, 7, 6] and not more
    first, more = s.list_requests(limit=2)
    assert more and [r["time"] for r in first] == [9, 8]
    rest, more = s.list_requests(limit=2, before=first[-1]["seq"])
    assert [r["time"] for r in rest] == [7, 6] and not more
    s.close()
